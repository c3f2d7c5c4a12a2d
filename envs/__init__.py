"""Real environments behind one Gymnasium interface: 64x64x3 uint8 frames, flat float model actions.

Beside them what acts in an env or stands in for one: the random and baseline policies, the controller's
fit to each env's actions, and the dream (M played as an env).
"""

from envs.registry import NAMED_ENVS, EnvSpec, get_spec, known_env_names, make_env

__all__ = ["NAMED_ENVS", "EnvSpec", "get_spec", "known_env_names", "make_env"]

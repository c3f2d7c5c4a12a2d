"""Real environments behind one Gymnasium interface: 64x64x3 uint8 frames, flat float model actions."""

from envs.registry import NAMED_ENVS, EnvSpec, get_spec, known_env_names, make_env

__all__ = ["NAMED_ENVS", "EnvSpec", "get_spec", "known_env_names", "make_env"]

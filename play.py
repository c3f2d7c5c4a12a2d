#!/usr/bin/env python
"""Play the dream (M as simulator, decoded by V) or a real env yourself, with the keyboard.

Examples:
  python play.py dream --logdir runs/doom            # LEFT/RIGHT; +/- change tau live
  python play.py real doom                           # the real game: full frame | 64x64 model input
  python play.py real carracing --record drive.gif   # LEFT/RIGHT steer, UP gas, DOWN brake
  python play.py real binpacking                     # type a level (0 = new bag), Enter plays it
Keys: R restart, Esc/Q quit. Each episode's score is printed when it ends, the average at the end.
Needs a display (on a server: `xvfb-run -a python play.py ...`).
"""

from __future__ import annotations

from common.cli import (
    MAX_STEPS,
    MAX_TEMPERATURE,
    ArgumentParser,
    dream_temperature,
    float_in,
    int_in,
    json_object,
    non_negative_float,
    non_negative_int,
    output_file,
    positive_int,
    run_main,
)
from common.device import DEVICE_HELP, resolve_device
from common.folders import require_dir
from common.recorder import save_video, video_file
from envs.registry import EnvSpec, get_spec, known_env_names

DEFAULT_FPS = {"doom": 35.0, "carracing": 50.0}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="world", required=True, metavar="{dream,real}")
    dream = sub.add_parser("dream", help="play inside the world model (V + M)",
                           description="Play inside the world model: M dreams, V draws. +/- change tau.")
    dream.add_argument("--logdir", required=True, help="experiment folder with vae/, mdnrnn/, series/")
    dream.add_argument("--vae", default=None, help="VAE checkpoint (default: <logdir>/vae/best.pt, else last.pt)")
    dream.add_argument("--mdnrnn", default=None,
                       help="MDN-RNN checkpoint (default: <logdir>/mdnrnn/best.pt, else last.pt)")
    dream.add_argument("--initial_z", default=None,
                       help="initial latents for resets (default: <logdir>/series/initial_z.npz)")
    dream.add_argument("--temperature", type=dream_temperature, default=None,
                       help="starting tau (default: the env's; 1.15 for doom)")
    dream.add_argument("--tau_step", type=float_in(0, MAX_TEMPERATURE), default=0.05, help="how much +/- change tau")
    dream.add_argument("--device", default="cpu", help=DEVICE_HELP)
    real = sub.add_parser("real", help="play the real env", description="Play the real env, seeing what the "
                          "model sees beside the full frame.")
    real.add_argument("env", help=f"env name: {known_env_names()}")
    real.add_argument("--env_kwargs", type=json_object, default=None,
                      help="JSON options for the env, e.g. '{\"resolution\": \"640x480\"}' for doom")
    for q in (dream, real):
        q.add_argument("--scale", type=int_in(1, 64), default=8, help="window pixels per 64x64 pixel (8 -> 512 px)")
        q.add_argument("--fps", type=non_negative_float, default=None,
                       help="steps per second, also of --record (default: 35 doom, 50 carracing; 0 = unpaced)")
        q.add_argument("--seed", type=non_negative_int, default=0, help="episode i (restarts included) uses seed + i")
        q.add_argument("--episodes", type=positive_int, default=None, help="quit after this many finished episodes")
        q.add_argument("--max_steps", type=int_in(1, MAX_STEPS), default=None,
                       help="episode cap (default: the env's; 2100 doom, 1000 carracing)")
        q.add_argument("--record", type=video_file, default=None, metavar="FILE.gif",
                       help="save the played frames (.gif, or .mp4 with imageio-ffmpeg)")
        q.add_argument("--screenshot", type=output_file(".png"), default=None, metavar="FILE.png",
                       help="save the window at exit")
    return p


def main() -> None:
    args = build_parser().parse_args()
    from control import play  # pygame

    play.check_display()
    if args.world == "dream":
        env, spec, max_steps = make_dream(args)
        title, panels = f"World Models: dream of {spec.name}", play.dream_panels
    else:
        spec = get_spec(args.env)
        max_steps = args.max_steps or spec.episode_steps(args.env_kwargs)
        from envs.render import create_with_frames

        env = create_with_frames(spec, args.env_kwargs)
        # bin packing's full frame is its 64x64 picture upscaled: show that once
        title, panels = f"World Models: {spec.name}", (play.model_panels if spec.name == "binpacking"
                                                       else play.real_panels)

    fps = args.fps if args.fps is not None else DEFAULT_FPS.get(spec.name, env.metadata.get("render_fps") or 30.0)
    window = play.Window(title, 64 * args.scale)
    try:
        result = play.play_loop(env, play.controls_for(spec), panels, window, seed=args.seed, episodes=args.episodes,
                                max_steps=max_steps, fps=fps, tau_step=getattr(args, "tau_step", 0.05),
                                record=args.record is not None)
        if args.screenshot:
            window.screenshot(args.screenshot)
            print(f"saved the window to {args.screenshot}")
    finally:
        window.close()
        env.close()
    if args.record:
        save_video(result.frames, args.record, fps or 30.0)
        print(f"recorded {len(result.frames)} frames to {args.record}")


def make_dream(args) -> tuple:
    from control.options import env_kwargs_of_run
    from control.world import WorldPaths, load_world
    from envs.dream import DreamEnv

    logdir = require_dir(args.logdir, "--logdir", "train V and M first: stages 02-04")
    world = load_world(WorldPaths.from_logdir(logdir, args.vae, args.mdnrnn, args.initial_z),
                       resolve_device(args.device), with_vae=True)
    spec: EnvSpec = world.spec
    max_steps = args.max_steps or spec.episode_steps(env_kwargs_of_run(logdir))
    return DreamEnv(world, args.temperature, max_steps, render_mode="rgb_array"), spec, max_steps


if __name__ == "__main__":
    run_main(main)

"""Episode recordings: GIF through Pillow, MP4 when imageio-ffmpeg happens to be installed."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from common.atomic import atomic_path
from common.errors import UserError
from common.folders import output_file_error

VIDEO_SUFFIXES = (".gif", ".mp4")
MP4_HINT = "MP4 needs `pip install imageio imageio-ffmpeg`; or record a .gif"


def upscale(frame: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize to `height` rows, keeping the aspect ratio."""
    width = round(frame.shape[1] * height / frame.shape[0])
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.NEAREST))


def side_by_side(frames: Sequence[np.ndarray], height: int = 256, gap: int = 4) -> np.ndarray:
    """Panels (e.g. real frame | 64x64 input | reconstruction) scaled to one height, separated by a gap."""
    panels = [upscale(f, height) for f in frames]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    out = [panels[0]]
    for panel in panels[1:]:
        out += [spacer, panel]
    return np.concatenate(out, axis=1)


def save_video(frames: Sequence[np.ndarray], path: str | Path, fps: float = 30.0) -> Path:
    """Write frames (H, W, 3) uint8 as .gif (Pillow) or .mp4 (needs the optional imageio-ffmpeg)."""
    path = Path(path)
    if not frames:
        raise UserError(f"{path}: nothing to record (no frames)")
    suffix = path.suffix.lower()
    if suffix == ".gif":
        images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
        with atomic_path(path) as tmp:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=max(20, round(1000 / fps)), loop=0)
        return path
    if suffix == ".mp4":
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise UserError(f"{path}: {MP4_HINT}") from None
        with atomic_path(path) as tmp:
            writer = imageio.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=16)
            for f in frames:
                writer.append_data(np.ascontiguousarray(f))
            writer.close()
        return path
    raise UserError(f"{path}: record to a .gif or .mp4 file")


def video_file(text: str) -> str:
    """argparse type for --record: a .gif, or an .mp4 if imageio-ffmpeg is installed, in a folder that exists and
    takes files; checked before the episodes are played, not after."""
    problem = output_file_error(text, VIDEO_SUFFIXES)
    if not problem and Path(text).suffix.lower() == ".mp4" and not all(
            importlib.util.find_spec(m) for m in ("imageio", "imageio_ffmpeg")):
        problem = f"{text}: {MP4_HINT}"
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text

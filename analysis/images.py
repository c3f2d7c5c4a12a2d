"""Picture building blocks with Pillow: labelled frame grids, a heat map with axes, stacking, saving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.atomic import atomic_path
from common.plot import PALETTE, nice_ticks

FONT = ImageFont.load_default()
LABEL_WIDTH = 110


def frame_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]], columns: Sequence[str] = (), cell: int = 96,
               gap: int = 3, title: str = "") -> Image.Image:
    """Rows of frames (each row labelled on the left), optional column labels on top, optional title."""
    ncols = max(len(frames) for _, frames in rows)
    top = (18 if title else 4) + (14 if columns else 0)
    width = LABEL_WIDTH + ncols * (cell + gap) + gap
    height = top + len(rows) * (cell + gap) + gap
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((width / 2, 4), title, fill="black", font=FONT, anchor="mt")
    for j, label in enumerate(columns):
        draw.text((LABEL_WIDTH + gap + j * (cell + gap) + cell / 2, top - 3), label, fill="black", font=FONT,
                  anchor="mb")
    for i, (label, frames) in enumerate(rows):
        y = top + gap + i * (cell + gap)
        draw.multiline_text((6, y + cell / 2), label, fill="black", font=FONT, anchor="lm")
        for j, frame in enumerate(frames):
            tile = Image.fromarray(np.ascontiguousarray(frame)).resize((cell, cell), Image.NEAREST)
            image.paste(tile, (LABEL_WIDTH + gap + j * (cell + gap), y))
    return image


def stack(images: Sequence[Image.Image], gap: int = 6) -> Image.Image:
    """Images one under another, left-aligned, on white."""
    width = max(im.width for im in images)
    height = sum(im.height for im in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, height), "white")
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + gap
    return out


def component_heatmap(weights: np.ndarray, title: str, size: tuple[int, int] = (900, 360),
                      steps: np.ndarray | None = None) -> Image.Image:
    """Mixture weights (T, Z, K) as a dims x time map: colour = the most likely component, saturation = its
    weight (white = uniform 1/K, full colour = 1)."""
    t, z, k = weights.shape
    best = weights.argmax(-1).T  # (Z, T)
    strength = ((weights.max(-1).T - 1.0 / k) / (1.0 - 1.0 / k)).clip(0, 1)[..., None]
    colours = np.array([PALETTE[i % len(PALETTE)] for i in range(k)], np.float32)[best]
    pixels = (255 * (1 - strength) + colours * strength).round().astype(np.uint8)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    plot = (70, 34, size[0] - 20, size[1] - 70)
    image.paste(Image.fromarray(pixels).resize((plot[2] - plot[0], plot[3] - plot[1]), Image.NEAREST), plot[:2])
    draw.rectangle(plot, outline="black")
    draw.text((size[0] / 2, 10), title, fill="black", font=FONT, anchor="mt")
    steps = np.arange(t) if steps is None else steps
    for tick in nice_ticks(float(steps[0]), float(steps[-1])):
        if steps[0] <= tick <= steps[-1]:
            px = plot[0] + (tick - steps[0] + 0.5) / t * (plot[2] - plot[0])
            draw.line([(px, plot[3]), (px, plot[3] + 4)], fill="black")
            draw.text((px, plot[3] + 8), f"{tick:g}", fill="black", font=FONT, anchor="mt")
    for tick in nice_ticks(0, z - 1):
        if tick <= z - 1 and tick == int(tick):
            py = plot[1] + (tick + 0.5) / z * (plot[3] - plot[1])
            draw.line([(plot[0] - 4, py), (plot[0], py)], fill="black")
            draw.text((plot[0] - 6, py), f"{int(tick)}", fill="black", font=FONT, anchor="rm")
    draw.text(((plot[0] + plot[2]) / 2, plot[3] + 24), "step", fill="black", font=FONT, anchor="mt")
    label = Image.new("RGB", (80, 14), "white")
    ImageDraw.Draw(label).text((4, 1), "z dimension", fill="black", font=FONT)
    rotated = label.rotate(90, expand=True)
    image.paste(rotated, (6, int((plot[1] + plot[3]) / 2 - rotated.height / 2)))
    x = plot[0]
    for i in range(k):
        draw.rectangle([x, size[1] - 22, x + 14, size[1] - 10], fill=PALETTE[i % len(PALETTE)])
        draw.text((x + 20, size[1] - 16), f"component {i}", fill="black", font=FONT, anchor="lm")
        x += 110
    draw.text((x + 10, size[1] - 16), "(pale = weights near uniform, full colour = weight 1)", fill="black",
              font=FONT, anchor="lm")
    return image


def save_png(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # Frames and flat colours survive a 256-colour palette well, at a third of the size.
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)
    return path


def every(n_total: int, count: int) -> list[int]:
    """About `count` indices spread evenly over range(n_total), first and last included."""
    if n_total <= count:
        return list(range(n_total))
    return sorted({round(i * (n_total - 1) / (count - 1)) for i in range(count)})

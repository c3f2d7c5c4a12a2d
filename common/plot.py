"""Line and bar charts with Pillow alone (matplotlib is not a dependency): axes, ticks, labels, legend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from common.atomic import atomic_path

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.1e}"
    return f"{value:g}"


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str,
               xlabel: str, ylabel: str, size: tuple[int, int] = (720, 420),
               image: Image.Image | None = None, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Draw named (x, y) series; save to `path` (atomically) unless drawing into a given `image`/`box`."""
    own = image is None
    if own:
        image = Image.new("RGB", size, "white")
        box = (0, 0, *size)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top, right, bottom = box
    plot = (left + 70, top + 34, right - 20, bottom - 52)
    points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if math.isfinite(y)]
    xs = [p[0] for p in points] or [0, 1]
    ys = [p[1] for p in points] or [0, 1]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x_low, x_high = min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs))
    y_low, y_high = min(y_ticks[0], min(ys)), max(y_ticks[-1], max(ys))
    x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (plot[0] + (x - x_low) / x_span * (plot[2] - plot[0]),
                plot[3] - (y - y_low) / y_span * (plot[3] - plot[1]))

    draw.text(((left + right) / 2, top + 10), title, fill="black", font=font, anchor="mt")
    for t in y_ticks:
        _, py = to_px(x_low, t)
        draw.line([(plot[0], py), (plot[2], py)], fill=(225, 225, 225))
        draw.text((plot[0] - 6, py), _label(t), fill="black", font=font, anchor="rm")
    for t in x_ticks:
        px, _ = to_px(t, y_low)
        draw.line([(px, plot[3]), (px, plot[3] + 4)], fill="black")
        draw.text((px, plot[3] + 8), _label(t), fill="black", font=font, anchor="mt")
    draw.rectangle(plot, outline="black")
    draw.text(((plot[0] + plot[2]) / 2, bottom - 18), xlabel, fill="black", font=font, anchor="mm")
    ylabel_img = Image.new("RGB", (max(1, len(ylabel) * 7 + 8), 14), "white")
    ImageDraw.Draw(ylabel_img).text((4, 1), ylabel, fill="black", font=font)
    rotated = ylabel_img.rotate(90, expand=True)
    image.paste(rotated, (left + 6, int((plot[1] + plot[3]) / 2 - rotated.height / 2)))
    for i, (name, (sx, sy)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = [to_px(x, y) for x, y in zip(sx, sy) if math.isfinite(y)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for px, py in pts if len(pts) <= 60 else []:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
        lx, ly = plot[0] + 10, plot[1] + 8 + 14 * i
        draw.line([(lx, ly + 5), (lx + 18, ly + 5)], fill=color, width=3)
        draw.text((lx + 24, ly), name, fill="black", font=font)
    if own:
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
    return image


def bar_chart(groups: Sequence[str], series: dict[str, Sequence[float]], path: str | Path, title: str,
              ylabel: str, errors: dict[str, Sequence[float]] | None = None, size: tuple[int, int] = (760, 420),
              hline: tuple[str, float] | None = None) -> Image.Image:
    """Grouped bars: one group per label in `groups`, one bar per series, optional ± error whiskers."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    plot = (70, 34, size[0] - 20, size[1] - 70)
    errors = errors or {}
    tops = [v + (errors.get(n, [0] * len(vs))[i] if math.isfinite(v) else 0)
            for n, vs in series.items() for i, v in enumerate(vs) if math.isfinite(v)]
    if hline is not None:
        tops.append(hline[1])
    y_ticks = nice_ticks(0.0, max(tops or [1.0]))
    y_high = max(y_ticks[-1], max(tops or [1.0])) or 1.0

    def to_y(v: float) -> float:
        return plot[3] - max(0.0, v) / y_high * (plot[3] - plot[1])

    draw.text((size[0] / 2, 10), title, fill="black", font=font, anchor="mt")
    for t in y_ticks:
        draw.line([(plot[0], to_y(t)), (plot[2], to_y(t))], fill=(225, 225, 225))
        draw.text((plot[0] - 6, to_y(t)), _label(t), fill="black", font=font, anchor="rm")
    draw.rectangle(plot, outline="black")
    group_w = (plot[2] - plot[0]) / max(1, len(groups))
    bar_w = group_w * 0.8 / max(1, len(series))
    for g, name in enumerate(groups):
        x0 = plot[0] + g * group_w + group_w * 0.1
        draw.text((plot[0] + (g + 0.5) * group_w, plot[3] + 8), name, fill="black", font=font, anchor="mt")
        for s, (label, values) in enumerate(series.items()):
            v = values[g]
            if not math.isfinite(v):
                continue
            color = PALETTE[s % len(PALETTE)]
            left = x0 + s * bar_w
            draw.rectangle([left + 1, to_y(v), left + bar_w - 1, plot[3]], fill=color)
            err = errors.get(label, [0] * len(values))[g]
            if err:
                cx = left + bar_w / 2
                draw.line([(cx, to_y(v - err)), (cx, to_y(v + err))], fill="black", width=1)
                draw.line([(cx - 4, to_y(v + err)), (cx + 4, to_y(v + err))], fill="black", width=1)
            draw.text((left + bar_w / 2, to_y(v) - 2), _label(round(v, 1)), fill="black", font=font, anchor="mb")
    if hline is not None:
        y = to_y(hline[1])
        draw.line([(plot[0], y), (plot[2], y)], fill=(120, 120, 120), width=1)
        draw.text((plot[2] - 4, y - 2), hline[0], fill=(90, 90, 90), font=font, anchor="rb")
    for s, label in enumerate(series):
        lx, ly = plot[0] + 10 + 200 * s, size[1] - 30
        draw.rectangle([lx, ly, lx + 14, ly + 10], fill=PALETTE[s % len(PALETTE)])
        draw.text((lx + 20, ly), label, fill="black", font=font)
    ylabel_img = Image.new("RGB", (max(1, len(ylabel) * 7 + 8), 14), "white")
    ImageDraw.Draw(ylabel_img).text((4, 1), ylabel, fill="black", font=font)
    rotated = ylabel_img.rotate(90, expand=True)
    image.paste(rotated, (6, int((plot[1] + plot[3]) / 2 - rotated.height / 2)))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return image

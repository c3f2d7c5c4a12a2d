"""The 64x64x3 picture of a bin-packing state used by WorldModelsDreaming (binpacking.md §2.2), and its inverse.

Drawing (black background, row 0 at the top): level l = 1..B-1 is a 3-row stripe at rows 58-2l..60-2l
(neighbouring levels share a row; the higher level is drawn later and wins it). A count c is drawn as
2-pixel-wide blocks from column 0: while c >= 29 one block in the lightest colour and c -= 15, then one
block in palette colour c. The current item is a 6x4 block at rows 60-63, columns 6s..6s+5, in colour s.
The palette is the "Blues" colour map run from light (index 29) to dark (index 0).

Reading it back is exact (while no stripe runs past column 63, i.e. up to ~490 bags per level): the
middle row 59-2l of a stripe belongs to level l alone, and every palette colour differs.
"""

from __future__ import annotations

import numpy as np

IMAGE_SHAPE = (64, 64, 3)
MAX_CAPACITY = 30  # level B-1 = 29 is the top stripe (rows 0-2); larger bags do not fit the picture
MAX_ITEM_SIZE = 9  # the item block of size 9 ends at column 59
PALETTE_SIZE = 30
SATURATED = PALETTE_SIZE - 1  # the lightest colour: one block of it stands for 15 bags
BAGS_PER_SATURATED_BLOCK = 15
BLOCK_WIDTH = 2

# ColorBrewer "Blues" (9 classes), the nodes of matplotlib's Blues colour map, light to dark.
_BLUES_NODES = np.array([
    (0xF7, 0xFB, 0xFF), (0xDE, 0xEB, 0xF7), (0xC6, 0xDB, 0xEF), (0x9E, 0xCA, 0xE1), (0x6B, 0xAE, 0xD6),
    (0x42, 0x92, 0xC6), (0x21, 0x71, 0xB5), (0x08, 0x51, 0x9C), (0x08, 0x30, 0x6B),
], np.float64) / 255.0


def _palette() -> np.ndarray:
    """P[j] = Blues(x = (30 - j) / 31) on matplotlib's 256-entry table, each channel int(255 v) (§2.2)."""
    table_x = np.linspace(0.0, 1.0, 256)
    node_x = np.linspace(0.0, 1.0, len(_BLUES_NODES))
    table = np.stack([np.interp(table_x, node_x, _BLUES_NODES[:, ch]) for ch in range(3)], axis=1)
    x = (PALETTE_SIZE - np.arange(PALETTE_SIZE)) / (PALETTE_SIZE + 1)
    index = np.minimum((x * 256).astype(int), 255)
    return (255 * table[index]).astype(np.uint8)


PALETTE = _palette()


def level_rows(level: int) -> tuple[int, int]:
    """[top, bottom) rows of a level's stripe."""
    return 58 - 2 * level, 61 - 2 * level


def count_blocks(count: int) -> list[int]:
    """Palette indices of the blocks drawn for `count` bags, left to right."""
    blocks = []
    while count >= SATURATED:
        blocks.append(SATURATED)
        count -= BAGS_PER_SATURATED_BLOCK
    if count > 0:
        blocks.append(count)
    return blocks


def encode_state(levels: np.ndarray, item: int) -> np.ndarray:
    """The picture of `levels` (counts of bags per level, index 0 unused) and the current item size."""
    capacity = len(levels)
    if capacity > MAX_CAPACITY or item > MAX_ITEM_SIZE:
        raise ValueError(f"the picture fits bags up to {MAX_CAPACITY} and items up to {MAX_ITEM_SIZE}")
    frame = np.zeros(IMAGE_SHAPE, np.uint8)
    for level in range(1, capacity):
        count = int(levels[level])
        if count <= 0:
            continue
        top, bottom = level_rows(level)
        for k, colour in enumerate(count_blocks(count)):
            left = k * BLOCK_WIDTH
            if left >= IMAGE_SHAPE[1]:
                break  # past the right edge: clipped, as in the original
            frame[top:bottom, left:left + BLOCK_WIDTH] = PALETTE[colour]
    if item > 0:
        frame[60:64, 6 * item:6 * item + 6] = PALETTE[item]
    return frame


def _nearest_palette_index(pixels: np.ndarray) -> np.ndarray:
    """Palette index of each (..., 3) pixel, -1 for black (the background)."""
    pixels = pixels.astype(np.int32)
    distance = np.abs(pixels[..., None, :] - PALETTE.astype(np.int32)).sum(-1)
    index = distance.argmin(-1)
    return np.where(pixels.sum(-1) == 0, -1, index)


def decode_state(frame: np.ndarray, capacity: int) -> tuple[np.ndarray, int]:
    """(levels, item) back from an exact picture (a real env frame, not a reconstruction)."""
    levels = np.zeros(capacity, np.int64)
    middle_rows = [59 - 2 * level for level in range(1, capacity)]
    blocks = _nearest_palette_index(frame[middle_rows, ::BLOCK_WIDTH])  # (B-1, 32)
    for level, row in zip(range(1, capacity), blocks):
        drawn = row[row >= 0]
        saturated = int((drawn == SATURATED).sum())
        rest = drawn[drawn != SATURATED]
        levels[level] = saturated * BAGS_PER_SATURATED_BLOCK + (int(rest[0]) if len(rest) else 0)
    item_row = frame[61, 6:6 * MAX_ITEM_SIZE + 6:6]  # the first column of each possible item block
    present = np.flatnonzero(item_row.sum(-1) > 0)
    item = int(present[0]) + 1 if len(present) else 0
    return levels, item


"""Frame preprocessing shared by every real env: crop, then squash to the model's 64x64x3 uint8."""

from __future__ import annotations

import numpy as np
from PIL import Image

FRAME_SIZE = 64
FRAME_SHAPE = (FRAME_SIZE, FRAME_SIZE, 3)


def to_model_frame(frame: np.ndarray, crop_rows: tuple[int, int] | None = None) -> np.ndarray:
    """Crop rows [top, bottom) and resize to 64x64 with PIL bilinear; aspect ratio is not kept (paper).

    The reference also passed frames through scipy's imresize byte-scaling and a uint8 wrap-around
    (reference_spec §9.1); we keep the plain crop + resize, as the TF2 port does, since the quirk
    only shifts colour values by one.
    """
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    if crop_rows is not None:
        frame = frame[crop_rows[0]:crop_rows[1]]
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.shape[:2] == (FRAME_SIZE, FRAME_SIZE):
        return np.ascontiguousarray(frame)
    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.array(image.resize((FRAME_SIZE, FRAME_SIZE), Image.BILINEAR))  # writable, for torch

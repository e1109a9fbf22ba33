"""A tile's fine structure: what is left of a near-flat tile once its offset and gradients are taken out.

The grey tile averaged to 64 x 64 (4 x 4-pixel blocks, which also averages JPEG
noise away), minus its Gaussian blur of sigma 2 blocks. On faint sea it is the
sensor noise and the faint waves of one acquisition: two copies of it share it
pixel for pixel, one place at another time does not. The tile stage keeps it as
flat_sig (tiledup.tiles.hashing), to find near-flat duplicates; the evidence
rule compares it where two textured tiles are both near-flat
(tiledup.scoring.overlaps.fine_structure_differs).
"""

from __future__ import annotations

import cv2
import numpy as np

FINE_SIDE = 64  # 4 x 4-pixel block means of a 256 x 256 tile


def fine_structure(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A grey tile's (64, 64) float32 block means and its fine structure (module doc). uint8 grey
    gives block means rounded to levels (flat_sig's), float32 grey exact ones."""
    small = cv2.resize(grey, (FINE_SIDE, FINE_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    return small, small - cv2.GaussianBlur(small, (0, 0), 2)

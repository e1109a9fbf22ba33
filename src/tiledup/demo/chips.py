"""Chips of a rendered pass, made to differ like separately processed real chips, and their dup_truth.

Two chips of one pass that overlap see the same pixels of the pass; in the
real set they still differ (separate radiometric processing and JPEG
encodes), so equal tile digests are no shortcut. Each chip therefore gets, at
random, a per-channel radiometric offset, an HLS shift and its own JPEG
quality. Fill values (no-data, blue border) are written after those changes,
as a product writes them, so solid fill tiles stay identical.
"""

from __future__ import annotations

import cv2
import numpy as np
import simplejpeg

from tiledup.grid import CHIP, SPAN, TILE, offset_tag
from .scene import BORDER_RGB, FILL_BORDER, FILL_NODATA, NODATA_RGB

# E|X - Y| for X, Y ~ N(0, s): 2 s / sqrt(pi); turns "mean abs diff between two chips" into s.
_MAD_PER_SIGMA = 2 / np.sqrt(np.pi)


def chip_ids(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct random 9-hex-digit image ids, like the real set's ("3fa2c09b1.jpg")."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        name = f"{int(rng.integers(0, 16 ** 9)):09x}.jpg"
        if name not in seen:
            seen.add(name)
            ids.append(name)
    return ids


def hls_shift(chip: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    """A GIMP-like hue / lightness / saturation edit of about `level` mean abs diff (uint8 RGB)."""
    hls = cv2.cvtColor(chip, cv2.COLOR_RGB2HLS_FULL).astype(np.int16)
    dh = round(rng.uniform(-0.4, 0.4) * level)
    dl = round(rng.choice([-1, 1]) * rng.uniform(0.7, 1.25) * level)
    ds = round(rng.uniform(-1.5, 1.5) * level)
    hls[..., 0] = (hls[..., 0] + dh) % 256
    hls[..., 1] = np.clip(hls[..., 1] + dl, 0, 255)
    hls[..., 2] = np.clip(hls[..., 2] + ds, 0, 255)
    return cv2.cvtColor(hls.astype(np.uint8), cv2.COLOR_HLS2RGB_FULL)


def encode_chip(img: np.ndarray, fill: np.ndarray, row: int, col: int, rng: np.random.Generator, *,
                offset_share: float, offset_level: float, hls_share: float, hls_level: float,
                quality_min: int, quality_max: int) -> bytes:
    """Cut the chip at tile (row, col) of a pass, process it like a real chip and encode it as JPEG."""
    y, x = row * TILE, col * TILE
    chip = img[y:y + CHIP, x:x + CHIP]
    if rng.random() < offset_share:
        chip = chip + rng.normal(0, offset_level / _MAD_PER_SIGMA, 3).astype(np.float32)
    chip = np.clip(np.rint(chip), 0, 255).astype(np.uint8)
    if rng.random() < hls_share:
        chip = hls_shift(chip, rng, hls_level)
    f = fill[y:y + CHIP, x:x + CHIP]
    chip[f == FILL_NODATA] = NODATA_RGB
    chip[f == FILL_BORDER] = BORDER_RGB
    quality = int(rng.integers(quality_min, quality_max + 1))
    return simplejpeg.encode_jpeg(np.ascontiguousarray(chip), quality=quality, colorspace="RGB",
                                  colorsubsampling="420")


def truth_lines(layout: list[tuple[str, int, int, int, int]]) -> list[str]:
    """dup_truth lines `img1 img2 tag is_dup` for every overlapping pair of chips of one scene.

    layout rows are (image_id, scene, pass, row, col). img1 < img2 as strings;
    the tag is that of img2's offset from img1; is_dup = same pass.
    """
    lines = []
    by_scene: dict[int, list] = {}
    for rec in layout:
        by_scene.setdefault(rec[1], []).append(rec)
    for recs in by_scene.values():
        recs = sorted(recs)
        for i, (id1, _, p1, r1, c1) in enumerate(recs):
            for id2, _, p2, r2, c2 in recs[i + 1:]:
                dr, dc = r2 - r1, c2 - c1
                if abs(dr) <= SPAN and abs(dc) <= SPAN:
                    lines.append(f"{id1} {id2} {offset_tag(dr, dc)} {int(p1 == p2)}")
    return sorted(lines)

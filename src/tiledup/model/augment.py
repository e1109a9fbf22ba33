"""Augmentations of a training tile pair: JPEG re-encoding, GIMP-like HLS shifts, dihedral transforms.

They are applied to duplicates and non-duplicates alike, so none of them can
become a shortcut for the label; what DupNet must learn is "same scene up to
JPEG noise and a colour edit", not "bit-identical".
"""

from __future__ import annotations

import cv2
import numpy as np
import simplejpeg

from tiledup.run.config import defaults
from tiledup.run.errors import TiledupError

_HUE_UNITS = 256 / 360  # OpenCV HLS_FULL hue units per degree


def hls_shift(rgb: np.ndarray, channel: str, amount: float) -> np.ndarray:
    """GIMP's Hue-Saturation tool (master range, overlap 0) on an RGB uint8 image.

    amount in GIMP units: hue in degrees (+-180), lightness and saturation in
    percent (+-100). GIMP (app/operations/gimpoperationhuesaturation.c) works in
    HSL, which is OpenCV's HLS: hue is rotated by amount/360 of a turn,
    saturation scaled by (1 + amount/100), and lightness moved by v = amount/200
    towards black (l * (1 + v), v < 0) or white (l + v * (1 - l)).
    """
    if channel not in ("H", "L", "S"):
        raise ValueError(f"hls_shift: channel must be 'H', 'L' or 'S', not {channel!r}")
    hls = cv2.cvtColor(rgb, cv2.COLOR_RGB2HLS_FULL)
    if channel == "H":
        shift = int(round(amount * _HUE_UNITS))
        hls[..., 0] = ((hls[..., 0].astype(np.int16) + shift) % 256).astype(np.uint8)
    else:
        k = 1 if channel == "L" else 2
        x = hls[..., k].astype(np.float32)
        if channel == "S":
            x *= 1 + amount / 100
        elif amount < 0:
            x *= 1 + amount / 200
        else:
            x += amount / 200 * (255 - x)
        hls[..., k] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return cv2.cvtColor(hls, cv2.COLOR_HLS2RGB_FULL)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """The tile saved as a standalone JPEG (4:2:0, like the chips) and decoded again."""
    data = simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=int(quality),
                                  colorspace="RGB", colorsubsampling="420")
    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def dihedral(rgb: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of a square tile: rotate k % 4 quarter turns, then mirror if k >= 4."""
    out = np.rot90(rgb, k % 4)
    return out[:, ::-1] if k >= 4 else out


def check_augment(options: dict) -> dict:
    """Config `train.augment` merged over its defaults (config/config.yaml; ranges are +- maxima in GIMP
    units); unknown keys and bad ranges are errors."""
    known = defaults()["train"]["augment"]
    unknown = set(options) - set(known)
    if unknown:
        raise TiledupError(f"train.augment: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    a = {**known, **options}
    q = a["jpeg_quality"]
    if not (isinstance(q, (list, tuple)) and len(q) == 2 and 1 <= q[0] <= q[1] <= 100):
        raise TiledupError(f"train.augment.jpeg_quality {a['jpeg_quality']} must be [low, high] in 1..100")
    for key, top in (("hue", 180), ("lightness", 100), ("saturation", 100)):
        if not 0 <= a[key] <= top:
            raise TiledupError(f"train.augment.{key} {a[key]} must be within 0..{top}")
    for key in ("jpeg_p", "hls_p", "offset_p"):
        if not 0 <= a[key] <= 1:
            raise TiledupError(f"train.augment.{key} {a[key]} must be a probability (0..1)")
    if a["hls_channels"] not in (1, 2, 3):
        raise TiledupError(f"train.augment.hls_channels {a['hls_channels']} must be 1, 2 or 3")
    if a["offset"] < 0:
        raise TiledupError(f"train.augment.offset {a['offset']} must be >= 0")
    return a


def channel_offset(rgb: np.ndarray, offsets) -> np.ndarray:
    """Add one offset per RGB channel (separate radiometric processing of two chips), clipped to uint8."""
    lut = np.clip(np.arange(256)[:, None] + np.rint(offsets)[None, :], 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut.reshape(256, 1, 3))


def augment_pair(t1: np.ndarray, t2: np.ndarray, rng: np.random.Generator, *, jpeg_p: float,
                 jpeg_quality, hls_p: float, hue: float, lightness: float, saturation: float,
                 offset_p: float, offset: float, hls_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Augment one tile pair (uint8 RGB, TILE x TILE x 3 each); the label is untouched by design.

    Photometric changes (offset, HLS, JPEG) hit each side independently, so the two
    tiles of a duplicate no longer match bit for bit; the geometric transform
    is shared, so a duplicate stays a duplicate; the returned order is random
    (which tile fills channels 0-2 of DupNet's input).
    """
    sides = [t1, t2]
    if rng.random() < offset_p:
        s = int(rng.integers(2))
        sides[s] = channel_offset(sides[s], rng.normal(0, offset, 3))
    if rng.random() < hls_p:
        s = int(rng.integers(2))
        # GIMP's tool sets all three at once, as a chip's processing may: 1..hls_channels of them,
        # applied in the tool's order (hue, lightness, saturation)
        k = int(rng.integers(1, hls_channels + 1)) if hls_channels > 1 else 1
        # (one channel drawn as before hls_channels existed: the default keeps its random stream)
        for channel in sorted(rng.choice(3, size=k, replace=False)) if k > 1 else [int(rng.integers(3))]:
            top = (hue, lightness, saturation)[channel]
            sides[s] = hls_shift(sides[s], "HLS"[channel], rng.uniform(-top, top))
    for s in range(2):  # last, as a chip's own JPEG save comes after its processing
        if rng.random() < jpeg_p:
            sides[s] = jpeg_roundtrip(sides[s], rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
    k = int(rng.integers(8))
    sides = [dihedral(x, k) for x in sides]
    if rng.random() < 0.5:
        sides.reverse()
    return np.ascontiguousarray(sides[0]), np.ascontiguousarray(sides[1])

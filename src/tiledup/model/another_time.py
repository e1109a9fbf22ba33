"""Same place, another time: label-free non-duplicates from one tile and an altered copy of itself.

The self-supervised non-duplicates (tile i vs tile j of one chip) are all
*different places*; a model trained on them alone learns "same structure =
duplicate" and calls the same coast seen on another day a duplicate. Here a
non-duplicate row (tile i, tile j) becomes (tile i, tile i changed with tile j
as donor) by one change that a single acquisition cannot produce, because it
is local or changes the texture itself, never a whole-tile photometric edit:

- region: a region (a random rectangle or a smooth random mask, `area` of the
  tile) replaced by the same region of the donor, often matched to the
  region's colour statistics so that only the texture differs;
- texture: the fine texture re-synthesised (the tile's high-pass with random
  phases: same spectrum, new waves) or swapped for the donor's high-pass,
  the low-pass (geography, large-scale colour) kept, over a soft mask of at
  least `area[0]` up to the whole tile;
- objects: one to three small objects (a ship-like bar or a soft cloud puff)
  painted on;
- colour: an offset and gain applied to one region only.

Masks have soft edges (random feathering), so a hard seam is not a cue that
only non-duplicates carry. Every change is checked: at least MIN_PIXELS pixels
must differ by MIN_LEVELS levels or more from the original (a non-duplicate
by construction); a change too weak to see is drawn again, and after
MAX_TRIES the donor itself is used (the plain different-place pair).
Duplicates are untouched here: they differ only by the whole-tile
photometric and JPEG augmentation that both classes get afterwards.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.fft

from tiledup.run.config import defaults
from tiledup.run.errors import TiledupError

KINDS = ("region", "texture", "objects", "colour")
MIN_LEVELS, MIN_PIXELS, MAX_TRIES = 4, 64, 4


def check_another_time(options: dict | None) -> dict:
    """Config `train.another_time` merged over its defaults (config/config.yaml); unknown keys and bad
    values are errors. share: non-duplicate rows turned into (tile, altered tile); region, texture,
    objects, colour: relative weights of the kinds of change; area: share of the tile a region /
    colour change covers (texture: area[0] .. 1)."""
    options = options or {}
    known = defaults()["train"]["another_time"]
    unknown = set(options) - set(known)
    if unknown:
        raise TiledupError(f"train.another_time: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    a = {**known, **options}
    if not 0 <= a["share"] <= 1:
        raise TiledupError(f"train.another_time.share {a['share']} must be within 0..1")
    if any(a[k] < 0 for k in KINDS) or not sum(a[k] for k in KINDS) > 0:
        raise TiledupError("train.another_time: the weights " + ", ".join(KINDS) + " must be >= 0, not all 0")
    lo_hi = a["area"]
    if not (isinstance(lo_hi, (list, tuple)) and len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1] <= 1):
        raise TiledupError(f"train.another_time.area {lo_hi} must be [low, high] with 0 < low <= high <= 1")
    return a


def changed_pixels(a: np.ndarray, b: np.ndarray, levels: int = MIN_LEVELS) -> int:
    """Pixels whose largest channel difference is at least `levels`."""
    d = cv2.split(cv2.absdiff(a, b))  # per channel: OpenCV's max beats numpy's max(axis=2) tenfold
    return int(np.count_nonzero(cv2.max(cv2.max(d[0], d[1]), d[2]) >= levels))


def another_time(tile: np.ndarray, donor: np.ndarray, rng: np.random.Generator, *, region: float,
                 texture: float, objects: float, colour: float, area, **_) -> np.ndarray:
    """`tile` (H, W, 3 uint8) changed as another acquisition of the same place would be (module docstring)."""
    weights = np.array([region, texture, objects, colour], float)
    for _ in range(MAX_TRIES):
        kind = KINDS[int(rng.choice(len(KINDS), p=weights / weights.sum()))]
        out = _CHANGES[kind](tile.astype(np.float32), donor.astype(np.float32), rng, area)
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if changed_pixels(out, tile) >= MIN_PIXELS:
            return out
    return donor.copy()


# ---------------------------------------------------------------- masks

def soft_mask(rng: np.random.Generator, shape, share: float) -> np.ndarray:
    """(H, W) float32 in [0, 1] covering about `share` of the tile: a rectangle or a smooth blob field,
    with edges feathered by 0.5-4 px so that no hard seam marks the change."""
    h, w = shape
    if rng.random() < 0.5:
        aspect = np.exp(rng.uniform(-1.2, 1.2))
        rh = int(np.clip(np.sqrt(share * h * w / aspect), 2, h))
        rw = int(np.clip(share * h * w / rh, 2, w))
        y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        mask = np.zeros((h, w), np.float32)
        mask[y:y + rh, x:x + rw] = 1
    else:
        cells = int(rng.integers(3, 9))
        field = cv2.resize(rng.standard_normal((cells, cells)).astype(np.float32), (w, h),
                           interpolation=cv2.INTER_CUBIC)
        mask = (field >= np.quantile(field, 1 - share)).astype(np.float32)
    sigma = rng.uniform(0.5, 4.0)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def _blend(tile, new, mask):
    return tile * (1 - mask[..., None]) + new * mask[..., None]


def _area(rng, area, top=None) -> float:
    return float(rng.uniform(area[0], area[1] if top is None else top))


# ---------------------------------------------------------------- the four changes

def _region(tile, donor, rng, area):
    mask = soft_mask(rng, tile.shape[:2], _area(rng, area))
    if rng.random() < 0.7:  # match the donor to the region's colour: only the texture differs
        inside = (mask > 0.5).astype(np.uint8)
        if inside.any():
            (t_mean, t_std), (d_mean, d_std) = (cv2.meanStdDev(x, mask=inside) for x in (tile, donor))
            donor = ((donor - d_mean.T) / (d_std.T + 1.0) * t_std.T + t_mean.T).astype(np.float32)
    return _blend(tile, donor, mask)


def _highpass(x, sigma):
    low = cv2.GaussianBlur(x, (0, 0), sigma)
    return low, x - low


def _phase_randomised(x: np.ndarray, rng) -> np.ndarray:
    """Same power spectrum per channel, new random phases (shared by the channels): new waves, same sea.

    Real FFTs in float32 (the half spectrum of a real tile) by scipy.fft: 13x faster than numpy's
    complex ones, which made this the loader's slowest step.
    """
    h, w = x.shape[:2]
    phase = np.exp(2j * np.pi * rng.random((h, w // 2 + 1), dtype=np.float32)).astype(np.complex64)
    out = scipy.fft.irfft2(scipy.fft.rfft2(x, axes=(0, 1)) * phase[..., None], s=(h, w), axes=(0, 1))
    return (out * (_std(x) / (_std(out) + 1e-6))).astype(np.float32)


def _std(x: np.ndarray) -> np.ndarray:
    """(3,) per-channel standard deviation of an (H, W, 3) float32 image (OpenCV: 20x numpy's)."""
    return cv2.meanStdDev(np.ascontiguousarray(x, np.float32))[1].ravel().astype(np.float32)


def _texture(tile, donor, rng, area):
    sigma = rng.uniform(1.5, 6.0)
    low, high = _highpass(tile, sigma)
    if rng.random() < 0.5:
        new = _phase_randomised(high, rng)
    else:
        _, new = _highpass(donor, sigma)
        new = new / (_std(new) + 1e-3) * (_std(high) + 0.5)
    mask = np.ones(tile.shape[:2], np.float32) if rng.random() < 0.3 else \
        soft_mask(rng, tile.shape[:2], _area(rng, area, top=1.0))
    return _blend(tile, low + new, mask)


def _objects(tile, donor, rng, area):
    h, w = tile.shape[:2]
    out = tile.copy()
    for _ in range(int(rng.integers(1, 4))):
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        alpha = np.zeros((h, w), np.float32)
        if rng.random() < 0.6:  # a ship-like bar: bright or dark against its surroundings
            length = rng.uniform(6, 40)
            width = max(2.0, length * rng.uniform(0.12, 0.3))
            box = ((x, y), (length, width), rng.uniform(0, 180))
            cv2.fillPoly(alpha, [cv2.boxPoints(box).astype(np.int32)], 1.0)
            alpha = cv2.GaussianBlur(alpha, (0, 0), 0.7)
            local = tile[int(y) % h, int(x) % w]
            level = np.clip(local + rng.choice([-1, 1]) * rng.uniform(30, 150), 0, 255)
            paint = (level * rng.uniform(0.85, 1.15, 3)).astype(np.float32)
        else:  # a soft cloud puff
            radius = rng.uniform(5, 30)
            cv2.circle(alpha, (int(x), int(y)), int(radius), 1.0, -1)
            alpha = cv2.GaussianBlur(alpha, (0, 0), radius / 2) * rng.uniform(0.4, 1.0)
            paint = np.full(3, rng.uniform(215, 255), np.float32)
        out = _blend(out, np.broadcast_to(paint, tile.shape), alpha)
    return out


def _colour(tile, donor, rng, area):
    mask = soft_mask(rng, tile.shape[:2], _area(rng, area))
    offset = rng.choice([-1, 1], 3) * rng.uniform(3, 20, 3)
    gain = 1 + rng.choice([-1, 1]) * rng.uniform(0.05, 0.25)
    mean = tile.mean(axis=(0, 1))
    return _blend(tile, (tile - mean) * gain + mean + offset, mask)


_CHANGES = {"region": _region, "texture": _texture, "objects": _objects, "colour": _colour}

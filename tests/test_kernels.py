"""The compiled pixel loops against plain NumPy on random, flat and extreme tiles."""

import numpy as np
import pytest

from tiledup.tiles import kernels


def random_tiles(seed, n=3, h=32, w=40, kind="uniform"):
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, (n, h, w, 3))
    if kind == "flat":  # one colour plus a little noise: repeated levels, counts near the band edge
        tiles = np.clip(rng.integers(0, 256, (n, 1, 1, 3)) + rng.integers(-4, 5, (n, h, w, 3)), 0, 255)
    elif kind == "extreme":  # next to 0 and 255: the band clips at both ends
        tiles = rng.choice(np.array([0, 1, 254, 255]), (n, h, w, 3))
    return tiles.astype(np.uint8)


def mean_hash_bits(channel, block):
    """BlockMeanHash bits the plain way: block means against the mean of the blocks."""
    h, w = channel.shape
    means = channel.astype(np.float64).reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    return np.packbits(means.ravel() >= means.mean(), bitorder="little")


KINDS = ["uniform", "flat", "extreme"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_block_sums(kind, channels):
    tile = np.ascontiguousarray(random_tiles(1, n=1, kind=kind)[0, ..., :channels])
    h, w, c = tile.shape
    out = np.empty((c, h // 8, w // 8), np.int32)
    kernels._block_sums(tile.reshape(h, w * c), c, 8, np.empty(w * c, np.uint16), out)
    expected = tile.astype(np.int64).reshape(h // 8, 8, w // 8, 8, c).sum(axis=(1, 3))
    assert np.array_equal(out, np.moveaxis(expected, -1, 0))


def test_block_sums_do_not_overflow_on_white_blocks():
    out = np.empty((1, 1, 1), np.int32)
    kernels._block_sums(np.full((256, 256), 255, np.uint8), 1, 256, np.empty(256, np.uint16), out)
    assert out[0, 0, 0] == 256 * 256 * 255


@pytest.mark.parametrize("kind", KINDS)
def test_block_mean_hashes(kind):
    grey = np.ascontiguousarray(random_tiles(4, w=64, kind=kind)[..., 0])
    got = kernels.block_mean_hashes(grey, 8)
    assert got.shape == (3, 4 * 8 // 8)
    for t in range(3):
        assert np.array_equal(got[t], mean_hash_bits(grey[t], 8))


@pytest.mark.parametrize("width", [64, 69])  # 69: pixels past the last group of 8
def test_histogram(width):
    grey = random_tiles(5, n=1, w=width, kind="flat")[0, ..., 0]
    out = np.empty(256, np.int64)
    kernels._histogram(grey, np.empty((8, 256), np.uint16), out)
    assert np.array_equal(out, np.bincount(grey.ravel(), minlength=256))


@pytest.mark.parametrize("kind", KINDS)
def test_scan_tiles(kind):
    tiles = random_tiles(2, w=64, kind=kind)
    grey = np.ascontiguousarray(tiles[..., 1])
    n, h, w, _ = tiles.shape
    bmh, bmh96, means, grey_std, entropy, dominant, inside = kernels.scan_tiles(
        tiles.reshape(n, h, w * 3), grey, 16, 3, 2)
    for t in range(n):
        assert np.array_equal(bmh[t], mean_hash_bits(grey[t], 16))
        assert np.array_equal(bmh96[t], np.concatenate([mean_hash_bits(tiles[t, ..., c], 16) for c in range(3)]))
        assert np.allclose(means[t], tiles[t].reshape(-1, 3).mean(0), rtol=0, atol=1e-4)
        p = np.bincount(grey[t].ravel(), minlength=256) / grey[t].size
        assert grey_std[t] == pytest.approx(grey[t].std(), abs=1e-4)
        assert entropy[t] == pytest.approx(-(p[p > 0] * np.log2(p[p > 0])).sum(), abs=1e-5)
        sample = tiles[t, ::3, ::3].reshape(-1, 3)
        assert np.array_equal(dominant[t], np.sort(sample, axis=0)[(len(sample) - 1) // 2])  # lower median
        near = (np.abs(tiles[t].astype(int) - dominant[t].astype(int)) <= 2).all(-1)
        assert inside[t] == near.sum()


@pytest.mark.parametrize("levels", [0, 3, 24, 255])
def test_band_counts_clip_at_0_and_255(levels):
    tiles = random_tiles(3, n=4, kind="extreme")
    n, h, w, _ = tiles.shape
    centres = np.array([[0, 0, 0], [255, 255, 255], [1, 254, 128], [3, 250, 0]], np.uint8)
    which = np.array([3, 0, 2])
    got = kernels.band_counts(tiles.reshape(n, h, w * 3), which, centres, levels)
    for k, t in enumerate(which):
        near = (np.abs(tiles[t].astype(int) - centres[t].astype(int)) <= levels).all(-1)
        assert got[k] == near.sum()

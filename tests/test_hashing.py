"""Tile hashes against OpenCV and xxhash, tile statistics, and the solid rule on real tiles."""

import io

import cv2
import numpy as np
import pytest
import xxhash
from PIL import Image

from tiledup.tiles.hashing import block_mean_hash, hash_tiles
from tiledup.tiles.decode import cut_tiles, decode_chip, read_chip

from configured import solid_options


def opencv_bmh(tile_rgb):
    bgr = np.ascontiguousarray(tile_rgb[..., ::-1])
    return cv2.img_hash.blockMeanHash(bgr, mode=cv2.img_hash.BLOCK_MEAN_HASH_MODE_0).ravel()


def opencv_bmh96(tile_rgb):
    return np.concatenate([
        cv2.img_hash.blockMeanHash(np.ascontiguousarray(tile_rgb[..., c]),
                                   mode=cv2.img_hash.BLOCK_MEAN_HASH_MODE_0).ravel()
        for c in range(3)])


def hashed(chip):
    tiles = cut_tiles(chip)
    return tiles, hash_tiles(tiles, **solid_options())


@pytest.fixture(scope="module")
def real(airbus_chips):
    """{image stem: (tiles, columns)} for the 24 real chips."""
    return {p.stem: hashed(read_chip(p)) for p in airbus_chips}


def test_xxh3_bmh_bmh96_equal_xxhash_and_opencv_on_all_real_tiles(real):
    assert len(real) == 24
    for name, (tiles, h) in real.items():
        assert h["xxh3_128"].shape == (9, 16) and h["bmh"].shape == (9, 32) and h["bmh96"].shape == (9, 96)
        for t in range(9):
            # the canonical (big-endian) digest of the tile's row-major H x W x 3 bytes, as xxh128sum prints it
            assert h["xxh3_128"][t].tobytes().hex() == xxhash.xxh3_128_hexdigest(tiles[t].tobytes()), (name, t)
            assert np.array_equal(h["bmh"][t], opencv_bmh(tiles[t])), (name, t)
            assert np.array_equal(h["bmh96"][t], opencv_bmh96(tiles[t])), (name, t)
            assert block_mean_hash(tiles[t]) == opencv_bmh(tiles[t]).tobytes()


@pytest.mark.parametrize("kind", ["uniform", "coarse", "gradient", "flat"])
def test_bmh_equals_opencv_on_random_chips(kind):
    rng = np.random.default_rng(["uniform", "coarse", "gradient", "flat"].index(kind))
    for _ in range(4):
        chip = rng.integers(0, 256, (768, 768, 3), dtype=np.uint8)
        if kind == "coarse":  # 4 levels: many blocks equal to the tile mean (the >= edge)
            chip = (chip // 64 * 85).astype(np.uint8)
        elif kind == "gradient":
            ramp = np.add.outer(np.arange(768), rng.integers(1, 4) * np.arange(768)) % 256
            chip = np.stack([ramp, ramp[::-1], ramp.T], axis=-1).astype(np.uint8)
        elif kind == "flat":
            chip = np.full((768, 768, 3), rng.integers(0, 256, 3), np.uint8)
        tiles, h = hashed(chip)
        for t in range(9):
            assert np.array_equal(h["bmh"][t], opencv_bmh(tiles[t])), t
            assert np.array_equal(h["bmh96"][t], opencv_bmh96(tiles[t])), t
    if kind == "flat":  # every block equals the mean: all bits set
        assert (h["bmh"] == 255).all()


def test_statistics_match_direct_computation(real):
    for name in ["2b6c7fd55", "5a70ef013", "65418dfe4", "73fec0637"]:
        tiles, h = real[name]
        for t in range(9):
            px = tiles[t].reshape(-1, 3)
            assert np.allclose([h["r_mean"][t], h["g_mean"][t], h["b_mean"][t]], px.mean(0), atol=1e-4)
            grey = cv2.cvtColor(tiles[t], cv2.COLOR_RGB2GRAY)
            assert h["grey_std"][t] == pytest.approx(grey.std(), abs=1e-3)
            counts = np.unique(grey, return_counts=True)[1] / grey.size
            assert h["entropy"][t] == pytest.approx(-(counts * np.log2(counts)).sum(), abs=1e-4)
            dom = h["dominant"][t].astype(int)
            inside = (np.abs(px.astype(int) - dom) <= 3).all(axis=1).mean()
            assert h["dominant_share"][t] == pytest.approx(inside, abs=1e-6)
    assert (real["73fec0637"][1]["entropy"] == 0).all()  # a single grey level
    assert (real["2b6c7fd55"][1]["entropy"] > 5).all()  # coast and sea


def test_dominant_is_the_median_on_near_flat_tiles(real):
    checked = 0
    for name, (tiles, h) in real.items():
        for t in range(9):
            if h["dominant_share"][t] > 0.5:
                median = np.median(tiles[t].reshape(-1, 3), axis=0)
                assert np.abs(h["dominant"][t] - median).max() <= 1, (name, t)
                checked += 1
    assert checked > 100


SOLID = {  # no-data black tiles (a few levels of JPEG noise, mostly in blue)
    "73fec0637": range(9), "e5c3b1f59": range(9), "9a2f9d347": range(9),
    "5a70ef013": [3, 6, 7, 8], "996f92939": [3, 6, 7, 8], "119d6a3d6": [5, 8],
}
NOT_SOLID = {
    "119d6a3d6": [0, 1, 2, 3, 4, 6],  # calm dark sea: faint texture over the whole tile
    "996f92939": [0, 4], "5a70ef013": [0, 1, 4], "d6e432b79": [1],  # dark sea fading to black
    "8ce769141": [0], "770c46cd4": range(9), "fc0e22a0a": range(9),  # specks on black sea
    "2b6c7fd55": range(9), "b4eba96e8": range(9), "908f11dd6": range(9),  # coast, shallow water
    "65418dfe4": [0, 1, 2, 5], "b264b0f96": [1, 3],  # clouds
}


def test_solid_on_real_tiles(real):
    for name, tiles_ in SOLID.items():
        for t in tiles_:
            assert real[name][1]["solid"][t], f"{name} tile {t} should be solid"
    for name, tiles_ in NOT_SOLID.items():
        for t in tiles_:
            assert not real[name][1]["solid"][t], f"{name} tile {t} should not be solid"


def test_calm_dark_sea_is_dark_and_quiet_yet_not_solid(real):
    _, h = real["119d6a3d6"]
    for t in [0, 3, 4]:
        assert max(h["r_mean"][t], h["g_mean"][t], h["b_mean"][t]) < 10  # darker than 10/255
        assert h["grey_std"][t] < 2.5
        assert not h["solid"][t]


def jpeg_roundtrip(chip):
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, "JPEG", quality=95)
    return decode_chip(buf.getvalue())


def test_flat_white_blue_black_bands_survive_jpeg_as_solid():
    """The 24 real chips hold no white or blue flat tile: check those colours on encoded bands."""
    rng = np.random.default_rng(0)
    chip = np.empty((768, 768, 3), np.float64)
    chip[:256] = (255, 255, 255)  # cloud white
    chip[256:512] = (20, 60, 150)  # blue acquisition border
    chip[512:] = (0, 0, 0)  # no-data black
    chip += rng.normal(0, 1.0, chip.shape)  # sensor noise before encoding
    tiles, h = hashed(jpeg_roundtrip(np.clip(chip, 0, 255).round().astype(np.uint8)))
    assert h["solid"].all(), h["dominant_share"]
    assert np.abs(h["dominant"][3:6].astype(int) - (20, 60, 150)).max() <= 2


def test_a_small_ship_on_a_flat_tile_is_content():
    chip = np.ones((768, 768, 3), np.uint8)  # no-data black as the real chips store it (1, 1, 1)
    chip[300:310, 300:308] = (180, 170, 160)  # an 80-pixel bright ship inside tile 4
    tiles, h = hashed(chip)
    assert h["dominant_share"][4] > 0.99  # the noise band alone would call it solid
    assert not h["solid"][4]
    assert h["solid"][[0, 1, 2, 3, 5, 6, 7, 8]].all()

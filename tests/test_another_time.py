"""'Same place, another time' non-duplicates and the tile pairs DupNet trains on.

The new negatives must be non-duplicates by construction (a visible, local
or texture change of the tile, never a whole-tile photometric edit), and the
positives must keep their pixels aligned through every augmentation.
"""

import numpy as np
import pytest

from tiledup.model.another_time import (KINDS, MIN_LEVELS, MIN_PIXELS, another_time,
                                  changed_pixels, check_another_time)
from tiledup.model.augment import check_augment
from tiledup.run.errors import TiledupError
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.model.loader import training_pair

from configured import options


@pytest.fixture(scope="module")
def tiles(airbus_chips):
    """Real tiles: (tile, donor) of the same chip, as the non-duplicate rows give them; no solid tiles."""
    out = []
    for path in airbus_chips[::2]:
        t = cut_tiles(read_chip(path))
        spread = [float(x.std()) for x in t]
        order = np.argsort(spread)[::-1]
        out.append((t[order[0]], t[order[1]]))
    return out


def _only(kind):
    return {k: (1.0 if k == kind else 0.0) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_every_change_is_a_visible_non_duplicate(tiles, kind):
    """By construction: at least MIN_PIXELS pixels change by MIN_LEVELS levels or more."""
    for k, (tile, donor) in enumerate(tiles):
        for draw in range(5):
            out = another_time(tile, donor, np.random.default_rng([k, draw]), **options("train.another_time", **_only(kind)))
            assert out.shape == tile.shape and out.dtype == np.uint8
            assert changed_pixels(out, tile, MIN_LEVELS) >= MIN_PIXELS


@pytest.mark.parametrize("kind", ["region", "objects", "colour"])
def test_local_changes_leave_part_of_the_tile_as_it_was(tiles, kind):
    """A local change is what one acquisition cannot produce: most draws keep much of the tile exact."""
    kept = []
    for k, (tile, donor) in enumerate(tiles):
        out = another_time(tile, donor, np.random.default_rng([k, 99]), **options("train.another_time", **_only(kind)))
        kept.append(np.mean(np.all(out == tile, axis=2)))
    assert np.median(kept) > 0.4


def test_texture_change_keeps_the_low_pass(tiles):
    """Same geography, new waves: the blurred tile barely moves while the fine texture does."""
    import cv2

    for k, (tile, donor) in enumerate(tiles):
        out = another_time(tile, donor, np.random.default_rng([k, 5]), **options("train.another_time", **_only("texture")))
        blur = lambda x: cv2.GaussianBlur(x.astype(np.float32), (0, 0), 8)  # noqa: E731
        low = np.abs(blur(out) - blur(tile)).mean()
        high = np.abs((out.astype(np.float32) - blur(out)) - (tile.astype(np.float32) - blur(tile))).mean()
        assert low < high + 0.5


def test_too_weak_a_change_falls_back_to_the_donor():
    """A flat tile cannot show a texture change: after the retries the donor (another place) is used."""
    flat = np.full((256, 256, 3), 90, np.uint8)
    donor = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    out = another_time(flat, donor, np.random.default_rng(1), **options("train.another_time", **_only("texture")))
    assert np.array_equal(out, donor)


def test_training_pairs_share_and_labels(tiles):
    """A share of the non-duplicate rows is changed, never a duplicate; same key, same pair."""
    retime = check_another_time({"share": 0.5})
    tile, donor = tiles[0]
    changed = 0
    for row in range(200):
        a, b = training_pair(tile, donor, False, np.random.default_rng([0, row]), None, retime)
        assert np.array_equal(a, tile)
        changed += not np.array_equal(b, donor)
        a, b = training_pair(tile, tile, True, np.random.default_rng([0, row]), None, retime)
        assert np.array_equal(a, b)  # a duplicate stays the same tile
    assert 70 <= changed <= 130
    again = training_pair(tile, donor, False, np.random.default_rng([0, 7]), check_augment({}), retime)
    first = training_pair(tile, donor, False, np.random.default_rng([0, 7]), check_augment({}), retime)
    assert all(np.array_equal(x, y) for x, y in zip(again, first))


def test_positives_keep_their_pixels_aligned(tiles):
    """Every augmentation of a duplicate is photometric or shared geometry: the sides stay registered.

    Without photometric changes the two sides are identical; with them (offset, HLS, JPEG
    on both sides), the correlation of the two sides on textured tiles peaks at zero shift.
    """
    none = check_augment({"jpeg_p": 0.0, "hls_p": 0.0, "offset_p": 0.0})
    full = check_augment({**options("train.augment"), "jpeg_p": 1.0, "hls_p": 1.0, "offset_p": 1.0})
    retime = check_another_time({"share": 1.0})

    def ncc(a, b):
        a, b = a - a.mean(axis=(0, 1)), b - b.mean(axis=(0, 1))
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    textured = 0
    for k, (tile, _) in enumerate(tiles):
        a, b = training_pair(tile, tile, True, np.random.default_rng([k, 1]), none, retime)
        assert np.array_equal(a, b)
        if tile.std() < 8:
            continue
        textured += 1
        a, b = training_pair(tile, tile, True, np.random.default_rng([k, 2]), full, retime)
        a, b = a[2:-2, 2:-2].astype(np.float32), b.astype(np.float32)
        shifted = [ncc(a, np.roll(b, s, axis)[2:-2, 2:-2]) for s in (-1, 1) for axis in (0, 1)]
        assert 1 - ncc(a, b[2:-2, 2:-2]) < 0.5 * (1 - max(shifted))  # at least twice as close
    assert textured >= 3


def test_options_are_checked():
    assert check_another_time(None) == options("train.another_time")
    with pytest.raises(TiledupError, match="unknown key"):
        check_another_time({"ships": 1})
    with pytest.raises(TiledupError, match="share"):
        check_another_time({"share": 1.5})
    with pytest.raises(TiledupError, match="area"):
        check_another_time({"area": [0.5, 0.2]})
    with pytest.raises(TiledupError, match="weights"):
        check_another_time({k: 0 for k in KINDS})

"""Grid geometry: the 25 overlap tags, partner tags and the tile pairs of an overlap."""

from collections import Counter

import numpy as np
import pytest

from tiledup import grid


def scene_cells(dr, dc):
    """Two chips cut from a scene of numbered tile cells, image 2 sitting (dr, dc) tiles from image 1.

    Independent of grid.py: returns {cell id: tile index} for each image.
    """
    scene = np.arange(7 * 7).reshape(7, 7)
    r1, c1 = 2, 2
    win1 = scene[r1:r1 + 3, c1:c1 + 3]
    win2 = scene[r1 + dr:r1 + dr + 3, c1 + dc:c1 + dc + 3]
    return ({int(v): i for i, v in enumerate(win1.ravel())},
            {int(v): i for i, v in enumerate(win2.ravel())})


def test_25_distinct_tags_with_the_seed_examples():
    assert len(grid.TAGS) == 25 == len(set(grid.TAGS))
    assert all(len(t) == 2 and t.isdigit() for t in grid.TAGS)
    assert grid.offset_tag(0, 0) == "08"  # full overlap
    assert grid.offset_tag(1, 0) == "38"  # image 2 one tile row further down
    assert grid.offset_tag(0, 1) == "18"
    assert grid.offset_tag(-1, 0) == "05"
    assert grid.offset_tag(2, 2) == "88"
    assert grid.offset_tag(-2, -2) == "00"
    assert grid.offset_tag(2, -2) == "66"


@pytest.mark.parametrize("tag", grid.TAGS)
def test_tile_pairs_match_a_scene_cut(tag):
    dr, dc = grid.tag_offset(tag)
    cells1, cells2 = scene_cells(dr, dc)
    expected = sorted((cells1[v], cells2[v]) for v in cells1.keys() & cells2.keys())
    pairs = grid.tag_tile_pairs(tag)
    assert pairs == expected
    # the tag is the first and the last tile of the overlap inside image 1
    assert tag == f"{pairs[0][0]}{pairs[-1][0]}"


@pytest.mark.parametrize("tag", grid.TAGS)
def test_partner_tag_is_image_2s_view_of_the_same_overlap(tag):
    partner = grid.partner_tag(tag)
    assert grid.partner_tag(partner) == tag
    assert sorted((b, a) for a, b in grid.tag_tile_pairs(tag)) == grid.tag_tile_pairs(partner)
    dr, dc = grid.tag_offset(tag)
    assert grid.tag_offset(partner) == (-dr, -dc)


def test_partner_examples_and_fixed_points():
    assert grid.partner_tag("38") == "05"
    assert grid.partner_tag("18") == "07"
    assert grid.partner_tag("00") == "88"
    assert grid.partner_tag("22") == "66"
    assert [t for t in grid.TAGS if grid.partner_tag(t) == t] == ["08"]  # only the full overlap


def test_overlap_sizes():
    sizes = Counter(len(grid.tag_tile_pairs(t)) for t in grid.TAGS)
    assert sizes == {1: 4, 2: 8, 3: 4, 4: 4, 6: 4, 9: 1}
    for t in grid.TAGS:
        dr, dc = grid.tag_offset(t)
        assert len(grid.tag_tile_pairs(t)) == (3 - abs(dr)) * (3 - abs(dc))
    assert grid.tag_tile_pairs("08") == [(i, i) for i in range(9)]
    assert grid.tag_tile_pairs("88") == [(8, 0)]


@pytest.mark.parametrize("bad", ["09", "ab", "", "808", "80", "  "])
def test_unknown_tag_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="unknown overlap tag"):
        grid.tag_tile_pairs(bad)
    with pytest.raises(ValueError, match="unknown overlap tag"):
        grid.partner_tag(bad)


def test_offsets_beyond_the_grid_do_not_overlap():
    with pytest.raises(ValueError):
        grid.offset_tag(3, 0)
    with pytest.raises(ValueError):
        grid.offset_tag(0, -3)


def test_tile_slices_cover_the_chip_row_major():
    seen = np.zeros((grid.CHIP, grid.CHIP), int)
    for t in range(grid.N_TILES):
        rows, cols = grid.tile_slice(t)
        seen[rows, cols] += 1
        r, c = grid.tile_rc(t)
        assert (rows.start, cols.start) == (r * grid.TILE, c * grid.TILE)
    assert (seen == 1).all()
    assert grid.tile_slice(1) == (slice(0, 256), slice(256, 512))

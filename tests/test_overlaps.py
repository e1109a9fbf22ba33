"""The evidence rule of tiledup.scoring.overlaps: which tile pairs count, and for which side.

Each kind of pair with a solid side is built from real JPEG round trips (the
noise a chip carries) and must give the outcome the rule states; a real
non-duplicate among the reference chips, equal except for a small object on
one flat tile, must be decided.
"""

import numpy as np
import torch
import pandas as pd
import pytest

from tiledup.model.augment import hls_shift, jpeg_roundtrip
from tiledup.run.errors import TiledupError
from tiledup.grid import TAGS, TILE, tag_tile_pairs
from tiledup.tiles.hashing import hash_tiles
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.scoring.overlaps import (METHODS, NO_EVIDENCE, NOT_DUP, SAME, SOLID, TEXTURE, ChipCache,
                                      TileTable, aggregate, certain_pairs, check_evidence, corner_pixels, expand,
                                      fine_structure_differs, residual_levels, score_overlaps, score_pairs,
                                      solid_evidence)

from configured import options, solid_options

RNG = np.random.default_rng(7)
EVIDENCE = options("evidence")


def _jpeg(x) -> np.ndarray:
    return jpeg_roundtrip(np.clip(np.rint(x), 0, 255).astype(np.uint8), 95)


def _flat(colour) -> np.ndarray:
    return _jpeg(np.broadcast_to(np.asarray(colour, np.float32), (TILE, TILE, 3)))


def _waves(level, amplitude) -> np.ndarray:
    """Near-flat sea: a base colour plus smooth texture of the given amplitude (levels)."""
    y, x = np.mgrid[0:TILE, 0:TILE]
    tex = np.sin(x / 3.1 + 2 * np.sin(y / 17.0)) * np.cos(y / 4.3)
    return np.asarray(level, np.float32) + amplitude * tex[..., None] * np.array([0.8, 1.0, 1.4])


def table_of(solid: dict, dominant: dict | None = None) -> TileTable:
    """A TileTable from (image, tile) -> solid flag and colour (black where not given); hashes zero."""
    images = sorted({i for i, _ in solid})
    n = len(images)
    return TileTable(np.array(images, object),
                     np.array([[solid[(i, t)] for t in range(9)] for i in images], bool),
                     np.array([[(dominant or {}).get((i, t), (0, 0, 0)) for t in range(9)] for i in images],
                              np.uint8).reshape(n, 9, 3),
                     np.zeros((n, 9, 32), np.uint8), np.zeros((n, 9, 96), np.uint8))


def _outcome(t1, s1, t2, s2):
    return solid_evidence(t1, s1, t2, s2, **EVIDENCE)


# ---------------------------------------------------------------- each kind of pair with a solid side

def test_two_solid_tiles_of_one_colour_are_no_evidence():
    assert _outcome(_flat((1, 1, 1)), True, _flat((1, 1, 1)), True) == NO_EVIDENCE
    assert _outcome(_flat((255, 255, 255)), True, _flat((252, 253, 255)), True) == NO_EVIDENCE
    # a radiometric offset between two chips of one acquisition is still one colour
    assert _outcome(_flat((18, 52, 128)), True, _flat((26, 60, 134)), True) == NO_EVIDENCE


@pytest.mark.parametrize("c1, c2", [((0, 0, 0), (255, 255, 255)), ((18, 52, 128), (0, 0, 0)),
                                    ((255, 255, 255), (18, 52, 128)), ((90, 110, 100), (200, 200, 200))])
def test_two_solid_tiles_of_clearly_different_colours_are_not_duplicates(c1, c2):
    assert _outcome(_flat(c1), True, _flat(c2), True) == NOT_DUP
    solid = {(i, t): (i, t) in (("a", 8), ("b", 0)) for i in "ab" for t in range(9)}
    pairs = expand(pd.DataFrame({"img1": ["a"], "img2": ["b"], "tag": ["88"]}),
                   table_of(solid, {("a", 8): c1, ("b", 0): c2}), EVIDENCE["colour_levels"])
    assert list(pairs.evidence) == [NOT_DUP]  # decided from the tile table alone


@pytest.mark.parametrize("solid", [(1, 1, 1), (255, 255, 255), (18, 52, 128), (100, 118, 96)])
def test_solid_against_textured_is_not_duplicate(solid):
    """A cloud came or went: a flat tile against sea with waves of 12 levels, at a mid level."""
    textured = _jpeg(_waves((100, 118, 96), 12))
    assert _outcome(_flat(solid), True, textured, False) == NOT_DUP
    assert _outcome(textured, False, _flat(solid), True) == NOT_DUP  # either order


def test_texture_within_the_clipping_band_is_no_evidence():
    """Near-black sea against clipped black, also when that sea was lifted by an offset, and
    faint cloud texture against saturated white: an offset plus clipping explains the difference."""
    black = _flat((0, 0, 0))
    assert _outcome(black, True, _jpeg(_waves((3, 4, 6), 4)), False) == NO_EVIDENCE
    assert _outcome(black, True, _jpeg(_waves((22, 6, 28), 5)), False) == NO_EVIDENCE  # an HLS-shifted chip
    assert _outcome(_flat((255, 255, 255)), True, _jpeg(_waves((246, 246, 248), 4)), False) == NO_EVIDENCE


def test_a_small_object_on_one_flat_tile_is_not_duplicate():
    """Two flat tiles of one colour, one of them with a ship of 8 x 3 pixels: not the same time."""
    ship = np.full((TILE, TILE, 3), 1.0, np.float32)
    ship[100:103, 60:68] = 70
    with_ship = _jpeg(ship)
    assert _outcome(_flat((1, 1, 1)), True, with_ship, True) == NOT_DUP
    assert _outcome(with_ship, True, with_ship, True) == NO_EVIDENCE  # the same ship on both: nothing to say


def test_evidence_options_are_checked():
    assert check_evidence(None) == EVIDENCE
    with pytest.raises(TiledupError, match="unknown key"):
        check_evidence({"clip": 3})
    with pytest.raises(TiledupError, match="min_pixels"):
        check_evidence({"min_pixels": 0})
    with pytest.raises(TiledupError, match="fine_max_corr"):
        check_evidence({"fine_max_corr": -0.2})
    with pytest.raises(TiledupError, match="fine_min_levels"):
        check_evidence({"fine_min_levels": -1})


def test_expand_marks_each_kind():
    solid = {("x", t): t in (0, 1, 2) for t in range(9)} | {("y", t): t in (0, 1) for t in range(9)}
    dominant = {k: np.array((0, 0, 0)) for k in solid} | {("y", 1): np.array((255, 255, 255))}
    pairs = expand(pd.DataFrame({"img1": ["x"], "img2": ["y"], "tag": ["08"]}), table_of(solid, dominant), EVIDENCE["colour_levels"])
    assert list(pairs.evidence) == [SOLID, NOT_DUP, SOLID] + [TEXTURE] * 6
    assert pairs.informative.all()


# ---------------------------------------------------------------- a real non-duplicate

def test_real_non_duplicate_with_one_small_change_is_decided(real_data):
    """73fec0637 and 9a2f9d347 overlap fully (tag 08): 8 tile pairs are equal and solid black;
    tile 1 of 9a2f9d347 holds a small bright object (976 unequal values) that 73fec0637 lacks.
    Every pair is solid on both sides, so the old rule left the overlap undecidable."""
    ids = ["73fec0637.jpg", "9a2f9d347.jpg"]
    chips = {i: read_chip(real_data / "airbus_samples" / i) for i in ids}
    h = [hash_tiles(cut_tiles(chips[i]), **solid_options()) for i in ids]
    table = TileTable(np.array(ids, object), *(np.stack([x[k] for x in h]) for k in ("solid", "dominant", "bmh", "bmh96")))
    assert table.solid.all()
    unequal = [int((cut_tiles(chips[ids[0]])[t] != cut_tiles(chips[ids[1]])[u]).sum())
               for t, u in tag_tile_pairs("08")]
    assert unequal == [0, 976, 196, 0, 0, 0, 0, 0, 0]

    overlaps = pd.DataFrame({"img1": [ids[0]], "img2": [ids[1]], "tag": ["08"]})
    pairs = expand(overlaps, table, EVIDENCE["colour_levels"])
    cache = ChipCache(real_data / "airbus_samples")
    scored = score_pairs(pairs, table, cache, model=None, batch_size=8, evidence=EVIDENCE)  # no textured pair: DupNet not needed
    assert list(scored.evidence) == [NOT_DUP] and (scored.tile1 == 1).all()
    out = aggregate(overlaps, pairs, scored)
    assert out.decidable[0] and all(out[m][0] == 0 for m in METHODS)
    assert cache.chips == {}  # every announced use was taken


# ---------------------------------------------------------------- certain evidence on real chips

SAME_OPTIONS = {k: v for k, v in EVIDENCE.items() if k.startswith("same_")}


def _real_tiles(real_data, image_id):
    return cut_tiles(read_chip(real_data / "airbus_samples" / f"{image_id}.jpg"))


def _processed(tile, offset):
    """The tile as another chip of the same acquisition holds it: a per-channel offset, then JPEG."""
    return _jpeg(tile.astype(np.float32) + np.asarray(offset, np.float32))


def test_real_duplicates_are_certain_and_their_wrong_offsets_are_not(real_data):
    """Among every overlap (25 tags) of 7 real chips, exactly the pairs equal up to JPEG noise are certain:
    908f11dd6 / c5d9bc753 (02), 4add7aa1d / 8ce769141 (05), 770c46cd4 / c2955cd21 (25), and 8d5521663,
    which overlaps both of the last two (checked by eye). Every other overlap of these chips, some
    of them one tile off inside the same scene, is not."""
    ids = ["4add7aa1d.jpg", "770c46cd4.jpg", "8ce769141.jpg", "8d5521663.jpg", "908f11dd6.jpg",
           "c2955cd21.jpg", "c5d9bc753.jpg"]
    h = [hash_tiles(cut_tiles(read_chip(real_data / "airbus_samples" / i)), **solid_options()) for i in ids]
    table = TileTable(np.array(ids, object), *(np.stack([x[k] for x in h]) for k in ("solid", "dominant", "bmh", "bmh96")))
    overlaps = pd.DataFrame([(a, b, t) for k, a in enumerate(ids) for b in ids[k + 1:] for t in TAGS],
                            columns=["img1", "img2", "tag"])
    out, _ = score_overlaps(overlaps, table, ChipCache(real_data / "airbus_samples"), None, 64, EVIDENCE,
                            methods=("pixel_mad",))
    certain = {(r.img1[:-4], r.img2[:-4], r.tag) for r in out[out.certain].itertuples()}
    assert certain == {("908f11dd6", "c5d9bc753", "02"), ("4add7aa1d", "8ce769141", "05"),
                       ("770c46cd4", "c2955cd21", "25"), ("770c46cd4", "8d5521663", "05"),
                       ("8d5521663", "c2955cd21", "28")}
    assert len(out) == 21 * 25 and out.decidable.sum() > 400  # the others were decidable, and not certain


def test_a_textured_real_tile_and_its_processed_copy_are_certain(real_data):
    """The positive control of the two tests below: real texture survives an offset and a JPEG round trip."""
    tile = _real_tiles(real_data, "908f11dd6")[4]
    assert certain_pairs(tile[None], _processed(tile, (3, -2, 5))[None], **SAME_OPTIONS).all()


def test_a_flat_real_pair_is_not_certain(real_data):
    """Near-flat real sea (tile 4 of 119d6a3d6, textured by the tile stage's rule, std about 1 level):
    its processed copy agrees within JPEG noise, but nothing in it pins the shift or the time."""
    tile = _real_tiles(real_data, "119d6a3d6")[4]
    copy = _processed(tile, (2, 2, 2))
    mean, top = residual_levels(tile[None], copy[None])
    assert mean[0] <= SAME_OPTIONS["same_mean_levels"] and top[0] <= SAME_OPTIONS["same_max_levels"]
    assert corner_pixels(tile, SAME_OPTIONS["same_corner_levels"], SAME_OPTIONS["same_corner_ratio"]) < SAME_OPTIONS["same_corners"]
    assert not certain_pairs(tile[None], copy[None], **SAME_OPTIONS).any()


def test_a_straight_edge_pair_is_not_certain(real_data):
    """Real dark sea (tile 1 of 119d6a3d6) with one straight bright edge across it (a coast, a band):
    the pixels agree, but any shift along the edge would agree as well."""
    tile = _real_tiles(real_data, "119d6a3d6")[1].astype(np.float32)
    y, x = np.mgrid[0:TILE, 0:TILE]
    tile[(x + 0.6 * y) > 180] += 90
    tile = _jpeg(tile)
    copy = _processed(tile, (-3, 1, 4))
    mean, top = residual_levels(tile[None], copy[None])
    assert mean[0] <= SAME_OPTIONS["same_mean_levels"] and top[0] <= SAME_OPTIONS["same_max_levels"]
    assert corner_pixels(tile, SAME_OPTIONS["same_corner_levels"], SAME_OPTIONS["same_corner_ratio"]) < SAME_OPTIONS["same_corners"]
    assert not certain_pairs(tile[None], copy[None], **SAME_OPTIONS).any()


# ---------------------------------------------------------------- fine structure on near-flat real sea

FINE_OPTIONS = {k: v for k, v in EVIDENCE.items() if k.startswith("fine_")}


def test_real_flat_sea_and_another_patch_of_it_differ(real_data):
    """Tiles 0 and 1 of 119d6a3d6 are one calm real sea at one time, side by side: the same level and
    statistics, as another pass over one place would show, but not the same waves and sensor noise."""
    tiles = _real_tiles(real_data, "119d6a3d6")
    assert fine_structure_differs(tiles[[0, 1]], tiles[[1, 0]], **FINE_OPTIONS).all()


@pytest.mark.parametrize("tile", [0, 1])
def test_real_flat_sea_and_its_processed_copies_do_not_differ(real_data, tile):
    """The same near-flat real sea as another chip of the acquisition holds it: an offset, a hue,
    saturation or lightness shift (which can invert a channel's share of the grey), then JPEG."""
    t = _real_tiles(real_data, "119d6a3d6")[tile]
    copies = [_processed(t, (3, -2, 5)), _processed(t, (-6, -6, -6))]
    copies += [jpeg_roundtrip(hls_shift(t, channel, amount), 95)
               for channel, amount in (("H", 30), ("H", 90), ("S", 40), ("S", -40), ("L", 20))]
    assert not fine_structure_differs(np.stack([t] * len(copies)), np.stack(copies), **FINE_OPTIONS).any()


def test_fine_structure_decides_real_overlaps_never_against_a_duplicate(real_data):
    """Every overlap (25 tags) of every pair of the 24 real chips: the fine-structure test says "not
    duplicate" for some textured pairs (near-flat sea against other sea, checked by eye), and never
    for a tile pair of the real duplicates, whose pixels agree up to JPEG noise (SAME)."""
    folder = real_data / "airbus_samples"
    ids = sorted(p.name for p in folder.glob("*.jpg"))
    tiles = {i: cut_tiles(read_chip(folder / i)) for i in ids}
    h = [hash_tiles(tiles[i], **solid_options()) for i in ids]
    table = TileTable(np.array(ids, object), *(np.stack([x[k] for x in h]) for k in ("solid", "dominant", "bmh", "bmh96")))
    overlaps = pd.DataFrame([(a, b, t) for k, a in enumerate(ids) for b in ids[k + 1:] for t in TAGS],
                            columns=["img1", "img2", "tag"])
    pairs = expand(overlaps, table, EVIDENCE["colour_levels"])
    n_same = n_differ = 0
    for _, chip_pair in pairs[pairs.evidence == TEXTURE].groupby(["img1", "img2"]):  # memory: one chip pair
        t1 = tiles[chip_pair.img1.iloc[0]][chip_pair.tile1.to_numpy()]
        t2 = tiles[chip_pair.img2.iloc[0]][chip_pair.tile2.to_numpy()]
        same = certain_pairs(t1, t2, **SAME_OPTIONS)
        differ = fine_structure_differs(t1, t2, **FINE_OPTIONS)
        assert not (same & differ).any(), chip_pair[same & differ]
        n_same, n_differ = n_same + same.sum(), n_differ + differ.sum()
    assert n_same >= 15 and n_differ >= 20


def test_aggregate_certain_and_decision():
    """An overlap of SAME pairs only is certain with decision 1 whatever DupNet scored; one SAME pair
    and one textured pair decide by the textured pair; DupNet's own column is left as scored."""
    overlaps = pd.DataFrame({"img1": ["a", "a"], "img2": ["b", "c"], "tag": ["08", "08"]})
    pairs = pd.DataFrame({"overlap": [0, 0, 1, 1]})
    scored = pd.DataFrame({"overlap": [0, 0, 1, 1], "evidence": [SAME, SAME, SAME, TEXTURE],
                           "dupnet": np.array([0.01, 0.9, 0.02, 0.7], np.float32)})
    out = aggregate(overlaps, pairs, scored)
    assert list(out.certain) == [True, False] and list(out.n_same) == [2, 1]
    assert np.allclose(out.decision, [1.0, 0.7]) and np.allclose(out.dupnet, [0.01, 0.02])


def test_decide_at_scores_only_what_the_decisions_need(real_data):
    """verify's way (decide_at): DupNet skips SAME pairs, the textured pairs of an overlap with a NOT_DUP
    pair (of a solid side, or of fine structure), and, once an overlap's most different pair falls below
    the threshold, its other pairs; every decision, and every score of an overlap decided duplicate, is
    that of the full scoring. 119d6a3d6 / 5a70ef013: near-flat real sea whose fine structure differs."""
    from tiledup.model.dupnet import DupNet

    ids = ["119d6a3d6.jpg", "5a70ef013.jpg", "908f11dd6.jpg", "c5d9bc753.jpg"]
    h = [hash_tiles(cut_tiles(read_chip(real_data / "airbus_samples" / i)), **solid_options()) for i in ids]
    table = TileTable(np.array(ids, object), *(np.stack([x[k] for x in h]) for k in ("solid", "dominant", "bmh", "bmh96")))
    overlaps = pd.DataFrame({"img1": [ids[2]] * 25 + [ids[0]] * 25, "img2": [ids[3]] * 25 + [ids[1]] * 25,
                             "tag": list(TAGS) * 2})
    torch.manual_seed(0)
    model = DupNet(**options("train.model")).eval()  # untrained: its scores are arbitrary, the decision rule is not

    def run(decide_at):
        return score_overlaps(overlaps, table, ChipCache(real_data / "airbus_samples"), model, 16, EVIDENCE,
                              decide_at=decide_at)

    full, full_pairs = run(None)
    textured_sides = ~table.solid[full_pairs.row1, full_pairs.tile1] & ~table.solid[full_pairs.row2, full_pairs.tile2]
    fine_not_dup = (full_pairs.evidence == NOT_DUP) & textured_sides  # not a solid side's: the fine structure's
    assert fine_not_dup.sum() >= 10 and (full_pairs.dupnet[full_pairs.evidence == NOT_DUP] == 0).all()
    assert not full_pairs.dupnet.isna().any()
    textured = full_pairs[full_pairs.evidence.isin([TEXTURE, SAME])]
    threshold = float(np.median(textured.dupnet))  # so that some overlaps fall on each side
    fast, fast_pairs = run(threshold)
    same = fast_pairs.evidence == SAME
    assert same.sum() == 3 and fast_pairs.dupnet[same].isna().all()
    assert fast_pairs.dupnet.notna().sum() < (~same).sum()  # pairs were skipped
    full_dup, fast_dup = full.decision >= threshold, fast.decision >= threshold
    assert (full_dup == fast_dup).all() and (full.decidable == fast.decidable).all()
    assert 0 < fast_dup.sum() < fast.decidable.sum()
    assert np.allclose(full.decision[full_dup], fast.decision[fast_dup]) and (full.certain == fast.certain).all()
    assert fast.decision[(fast.img1 == ids[2]) & (fast.tag == "02")].item() == 1.0


def test_corner_pixels_match_opencvs_structure_tensor(real_data):
    """corner_pixels computes cv2.cornerEigenValsAndVecs' eigenvalues in closed form (12x faster): same counts."""
    import cv2

    for image_id in ("908f11dd6", "119d6a3d6", "d3474ec95"):
        for tile in _real_tiles(real_data, image_id)[::2]:
            grey = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY).astype(np.float32)
            eig = cv2.cornerEigenValsAndVecs(grey, 5, 3)[8:-8, 8:-8, :2]
            small, large = eig.min(axis=2), eig.max(axis=2)
            for level, ratio in ((50, 0.1), (5, 0.0), (200, 0.3)):
                want = int(np.count_nonzero((small > level) & (small > ratio * large)))
                assert abs(corner_pixels(tile, level, ratio) - want) <= max(2, want // 1000)

"""Candidate search: vote arithmetic, the hash search on planted scenes, lattice placement and implied overlaps."""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiledup.discovery.candidates import (CANDIDATE_SCHEMA, TileHashes, candidates, candidates_table, find_candidates,
                                tile_offsets, complexity)
from tiledup.grid import GRID, N_TILES, OFFSETS, TAGS, offset_tag, partner_tag, tag_offset, tag_tile_pairs
from tiledup.discovery.lattice import TAG_BY_INDEX, canonical_offsets, offset_index
from tiledup.tiles.table import DIGEST, read_tile_hashes
from tiledup.dup_truth import canonical

from configured import options

TEXTURED = 30.0  # grey std of a tile with texture (candidates.texture_std is 8)


def flip(code, bits, rng):
    out = np.unpackbits(code.copy())
    out[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(out)


def chip_hashes(chips, rng, ground=None):
    """TileHashes for chips = [(name, scene, row, col, noise bits, solid tiles)].

    Tile (r, c) of a chip at (row, col) shows ground cell (row + r, col + c) of its scene:
    the scene's random hash there, with `noise` bits flipped per tile. Digests are unique
    per chip and tile (no two tiles pixel-identical) unless a test sets them. Every tile
    has texture (grey std TEXTURED) unless a test sets it.
    """
    ground = {} if ground is None else ground
    names = sorted(c[0] for c in chips)
    rows = []
    for name, scene, row, col, noise, solid in chips:
        for t in range(N_TILES):
            cell = (scene, row + t // GRID, col + t % GRID)
            if cell not in ground:
                ground[cell] = rng.integers(0, 256, 32, dtype=np.uint8)
            code = flip(ground[cell], noise, rng) if noise else ground[cell].copy()
            digest = np.frombuffer(hashlib.md5(f"{name}/{t}".encode()).digest(), np.uint8)
            rows.append((names.index(name), t, code, digest, t in solid))
    rows.sort(key=lambda r: (r[0], r[1]))
    return TileHashes(image_ids=np.array(names, dtype=object),
                      image=np.array([r[0] for r in rows], np.int64),
                      tile=np.array([r[1] for r in rows], np.int8),
                      bmh=np.stack([r[2] for r in rows]),
                      digest=np.stack([r[3] for r in rows]).view(np.uint64),
                      solid=np.array([r[4] for r in rows], bool),
                      grey_std=np.full(len(rows), TEXTURED, np.float32))


def found(h, **changes):
    df, stats = candidates(h, **options("candidates", **changes))
    table = candidates_table(df, h.image_ids).to_pandas()
    return {(a, b, t): how for a, b, t, how in zip(table.img1, table.img2, table.tag, table.how)}, stats


def true_overlaps(chips):
    out = set()
    for i, (a, sa, ra, ca, *_) in enumerate(chips):
        for b, sb, rb, cb, *_ in chips[i + 1:]:
            if sa == sb and abs(rb - ra) <= 2 and abs(cb - ca) <= 2:
                out.add(canonical(a, b, offset_tag(rb - ra, cb - ca)))
    return out


# ---------------------------------------------------------------- vote arithmetic

@pytest.mark.parametrize("tag", TAGS)
def test_every_tile_pair_of_an_overlap_votes_for_it_in_both_orders(tag):
    dr, dc = tag_offset(tag)
    for tile_a, tile_b in tag_tile_pairs(tag):
        # chip 0 (image "a") and chip 1 (image "b"): b sits (dr, dc) from a
        assert tuple(tile_offsets(np.array([tile_a]), np.array([tile_b]))) == (dr, dc)
        for a, b in ((0, 1), (1, 0)):  # the match seen from either chip, ids in either order
            ta, tb = (tile_a, tile_b) if a == 0 else (tile_b, tile_a)
            odr, odc = tile_offsets(np.array([ta]), np.array([tb]))
            i1, i2, r, c = canonical_offsets(np.array([a]), np.array([b]), odr, odc)
            assert (i1[0], i2[0]) == (0, 1)
            assert TAG_BY_INDEX[offset_index(r, c)[0]] == tag
            # and in the truth file's terms when the names sort the other way round
            names = {0: "z.jpg", 1: "a.jpg"}
            assert canonical(names[0], names[1], tag) == ("a.jpg", "z.jpg", partner_tag(tag))


def test_offset_index_round_trip():
    for dr, dc in OFFSETS:
        assert TAG_BY_INDEX[offset_index(dr, dc)] == offset_tag(dr, dc)


def test_complexity_is_zero_for_any_straight_edge_and_high_for_texture():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:16, 0:16] - 7.5
    edges = [np.cos(a) * x + np.sin(a) * y >= t for a in np.linspace(0, 6.2, 12) for t in (-4.0, 0.0, 3.0)]
    codes = np.array([np.packbits(e.ravel(), bitorder="little") for e in edges])
    assert (complexity(codes) == 0).all()  # a gradient or a border: same hash wherever it is
    stripe = np.zeros((16, 16), bool)
    stripe[:, 6:9] = True  # two parallel edges: each row changes twice
    assert complexity(np.packbits(stripe.ravel(), bitorder="little")[None])[0] == 16
    texture = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    bits = np.unpackbits(texture, axis=1, bitorder="little").reshape(-1, 16, 16)
    rows = (bits[:, :, 1:] != bits[:, :, :-1]).sum(2)
    cols = (bits[:, 1:, :] != bits[:, :-1, :]).sum(1)
    want = np.maximum(rows - 1, 0).sum(1) + np.maximum(cols - 1, 0).sum(1)
    assert (complexity(texture) == want).all() and want.min() > 150


# ---------------------------------------------------------------- search, placement, implied

def lattice_chips(scene, rows, cols, noise, prefix):
    return [(f"{prefix}{r}{c}.jpg", scene, r, c, noise, ()) for r in range(rows) for c in range(cols)]


def test_every_overlap_of_a_scene_is_found_and_nothing_else():
    rng = np.random.default_rng(1)
    chips = lattice_chips("s", 3, 4, 3, "a") + lattice_chips("t", 2, 2, 3, "b")
    got, stats = found(chip_hashes(chips, rng))
    assert set(got) == true_overlaps(chips)
    assert stats["placement"]["refused"] == 0


def test_an_overlap_without_any_tile_match_is_implied_by_the_lattice():
    rng = np.random.default_rng(2)
    ground = {}
    # a, b, c in a row one tile apart; the column a and c share (a's col 2 = c's col 0) is too noisy
    chips = [("a.jpg", "s", 0, 0, 0, ()), ("b.jpg", "s", 0, 1, 0, ()), ("c.jpg", "s", 0, 2, 0, ())]
    h = chip_hashes(chips, rng, ground)
    for t in (2, 5, 8):  # a's last column, far from every other hash
        row = np.flatnonzero((h.image == 0) & (h.tile == t))[0]
        h.bmh[row] = flip(h.bmh[row], 60, rng)
    got, _ = found(h)
    assert got[("a.jpg", "c.jpg", "28")] == "implied"
    assert got[("a.jpg", "b.jpg", "18")] == "hash"
    without, _ = found(h, implied=False)
    assert ("a.jpg", "c.jpg", "28") not in without


def test_two_passes_of_one_scene_on_one_lattice_imply_their_overlaps():
    rng = np.random.default_rng(3)
    ground = {}
    # pass 2 differs in every tile by 8 bits (another time) but sits on the same lattice
    first = lattice_chips("s", 2, 2, 0, "p")
    h1 = chip_hashes(first, rng, ground)
    second = lattice_chips("s", 2, 2, 8, "q")
    h = chip_hashes(first + second, rng, ground)
    got, _ = found(h)
    assert set(got) == true_overlaps(first + second)
    assert len(h1.image_ids) == 4


def test_solid_tiles_never_vote_and_common_hashes_are_capped():
    rng = np.random.default_rng(4)
    chips = [(f"x{k:03d}.jpg", f"scene{k}", 0, 0, 0, tuple(range(9))) for k in range(30)]  # all solid
    chips += [(f"y{k:03d}.jpg", f"other{k}", 0, 0, 0, ()) for k in range(120)]
    chips += [(f"z{k:03d}.jpg", f"third{k}", 0, 0, 0, ()) for k in range(100)]
    h = chip_hashes(chips, rng)
    h.bmh[h.solid] = h.bmh[0]  # every solid tile hashes alike (a flat cloud)
    same = (h.image >= 30) & (h.image < 150) & (h.tile == 4)
    h.bmh[same] = h.bmh[np.flatnonzero(same)[0]]  # one textured hash in 120 chips: exactly repeated
    family = np.flatnonzero((h.image >= 150) & (h.tile == 4))
    for row in family:  # near-identical variants of one hash in 100 chips: a common texture
        h.bmh[row] = flip(h.bmh[family[0]], 2, rng)
    got, stats = found(h, repeat_cap=64, max_matches=64)
    assert got == {}
    assert stats["repeated"] == 30 * 9 + 120  # searched not at all
    assert stats["common_tiles"] >= 100  # found, then dropped: each matches the 99 others
    # without the match cap (and keeping lone matches the chips' other tiles contradict): one overlap per pair
    few, _ = found(h, repeat_cap=64, max_matches=200, contradict_radius=256)
    assert len(few) == 100 * 99 // 2


def test_a_lone_match_that_a_textured_tile_pair_contradicts_is_no_candidate():
    """Chips of two scenes whose tile 0 and tile 8 happen to hash alike (a look-alike, not the same place):
    at that offset (b two tiles up-left of a: one tile pair) nothing contradicts the match; at offset
    (0, 0) (all nine pairs) their other tiles, textured and unrelated, do, unless they are near-flat."""
    rng = np.random.default_rng(7)
    chips = [("a.jpg", "s", 0, 0, 0, ()), ("b.jpg", "t", 0, 0, 0, ())]
    h = chip_hashes(chips, rng)
    a0, b8 = (np.flatnonzero((h.image == i) & (h.tile == t))[0] for i, t in ((0, 0), (1, 8)))
    a4, b4 = (np.flatnonzero((h.image == i) & (h.tile == 4))[0] for i in (0, 1))
    h.bmh[b8] = flip(h.bmh[a0], 6, rng)  # a's top-left tile looks like b's bottom-right
    h.bmh[b4] = flip(h.bmh[a4], 6, rng)  # and a's centre like b's centre
    corner, same = ("a.jpg", "b.jpg", offset_tag(-2, -2)), ("a.jpg", "b.jpg", offset_tag(0, 0))
    got, stats = found(h)
    assert set(got) == {corner} and stats["contradicted"] == 1
    assert set(found(h, contradict_radius=256)[0]) == {corner, same}
    h.grey_std[(h.image == 1) & (h.tile != 4)] = 3.0  # b's other tiles near-flat: hashes of noise, no say
    h.flat_sig = np.zeros((len(h.image), 1024), np.int8)  # and no fine structure to match by
    assert set(found(h)[0]) == {corner, same}


def test_equal_pixel_digests_match_even_smooth_tiles():
    rng = np.random.default_rng(5)
    chips = [("a.jpg", "s", 0, 0, 0, ()), ("b.jpg", "t", 0, 0, 0, ())]
    h = chip_hashes(chips, rng)
    smooth = np.zeros((16, 16), np.uint8)
    smooth[8:] = 1  # a horizontal edge: no structure
    for image in (0, 1):
        row = np.flatnonzero((h.image == image) & (h.tile == 7))[0]
        h.bmh[row] = np.packbits(smooth.ravel(), bitorder="little")
        h.digest[row] = 7  # pixel-identical tiles
    df, stats = candidates(h, **options("candidates"))
    assert stats["equal_digests"]["matches"] == 1
    assert df.exact_votes.tolist() == [1] and TAG_BY_INDEX[df.offset.iloc[0]] == "08"


def test_find_candidates_reads_shards_and_writes_the_table(tmp_path):
    rng = np.random.default_rng(6)
    chips = lattice_chips("s", 2, 3, 2, "c")
    h = chip_hashes(chips, rng)
    paths = []
    for shard in range(2):  # images split over two shards: the search spans both
        rows = np.flatnonzero(h.image % 2 == shard)
        table = pa.table({
            "image_id": pa.array(h.image_ids[h.image[rows]], pa.string()),
            "tile": pa.array(h.tile[rows], pa.int8()),
            DIGEST: pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(rows),
                                                       [None, pa.py_buffer(h.digest[rows].tobytes())]),
            "bmh": pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(rows),
                                                       [None, pa.py_buffer(h.bmh[rows].tobytes())]),
            "solid": pa.array(h.solid[rows]),
            "grey_std": pa.array(h.grey_std[rows], pa.float32()),
        })
        paths.append(tmp_path / f"{shard:03d}.parquet")
        pq.write_table(table, paths[-1])
    out = tmp_path / "candidates.parquet"
    table = find_candidates(paths, out, **options("candidates"))
    on_disk = pq.read_table(out)
    assert on_disk.schema == CANDIDATE_SCHEMA and on_disk.equals(table)
    rows = on_disk.to_pylist()
    assert all(r["img1"] < r["img2"] for r in rows)
    assert [(r["img1"], r["img2"], r["tag"]) for r in rows] == sorted((r["img1"], r["img2"], r["tag"]) for r in rows)
    assert {(r["img1"], r["img2"], r["tag"]) for r in rows} == true_overlaps(chips)


def test_a_match_found_only_through_crowded_keys_votes_but_does_not_place():
    """40 tiles share their first 64 bits (a bucket over the cap in the first tables): the near pair
    among them is found through its other blocks, votes, and is kept out of placement."""
    from tiledup.discovery.candidates import search

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    codes[:, :8] = codes[0, :8]
    codes[1] = codes[0]
    codes[1, 20:26] ^= 1  # 6 bits: beyond smooth_radius, within the radius
    h = TileHashes(image_ids=np.array([f"{k:02d}.jpg" for k in range(40)], dtype=object),
                   image=np.arange(40), tile=np.zeros(40, np.int8), bmh=codes,
                   digest=rng.integers(0, 2 ** 63, (40, 2)).astype(np.uint64), solid=np.zeros(40, bool),
                   grey_std=np.full(40, TEXTURED, np.float32))
    matches, stats = search(h, radius=20, smooth_radius=4, min_complexity=4, strong_ratio=0.25, bucket_cap=10,
                            repeat_cap=512, max_matches=64, texture_std=8.0, flat_corr=0.4, flat_max_matches=8)
    pair = matches[(matches.u == 0) & (matches.v == 1)]
    assert len(pair) == 1 and pair.distance.iloc[0] == 6 and stats["structured"]["deferred"] >= 1
    assert not pair.placing.iloc[0] and not pair.decisive.iloc[0] and stats["crowded_only"] >= 1


# The overlaps of tests/data's real chips that are plain duplicates (looked at: docs/pretrained.md).
REAL_DUPLICATES = {("908f11dd6.jpg", "c5d9bc753.jpg", "02"), ("4add7aa1d.jpg", "8ce769141.jpg", "05"),
                   ("770c46cd4.jpg", "c2955cd21.jpg", "25"), ("770c46cd4.jpg", "8d5521663.jpg", "05"),
                   ("8d5521663.jpg", "c2955cd21.jpg", "28"), ("addc11de0.jpg", "d5d1b6fb8.jpg", "28")}


def test_near_flat_tiles_of_real_chips_match_only_their_duplicates(tmp_path, airbus_chips):
    """On the real chips the fine structure of near-flat tiles matches across the known duplicates and
    nowhere else: every near-flat match sits at a duplicate's offset, and some of them do."""
    from tiledup.discovery.flat_search import flat_matches
    from tiledup.tiles.shard import tile_shard

    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(c.name for c in airbus_chips) + "\n")
    tile_shard(airbus_chips[0].parent, listing, tmp_path / "tiles.parquet", tmp_path / "rejects.parquet",
               **options("tiles"))
    h = read_tile_hashes([tmp_path / "tiles.parquet"])
    cfg = options("candidates")
    rows = np.flatnonzero(~h.solid & (h.grey_std < cfg["texture_std"]))
    assert len(rows) > 40  # dark sea, faint waves
    i, j, corr = flat_matches(h.flat_signatures(rows), h.image[rows], cfg["flat_corr"], cfg["flat_max_matches"])
    u, v = rows[i], rows[j]
    a, b, dr, dc = canonical_offsets(h.image[u], h.image[v], *tile_offsets(h.tile[u], h.tile[v]))
    found = {(h.image_ids[x], h.image_ids[y], offset_tag(r, c)) for x, y, r, c in zip(a, b, dr, dc)}
    assert found and found <= REAL_DUPLICATES, found - REAL_DUPLICATES
    # the same tables through the whole search: those overlaps are candidates
    table = candidates_table(candidates(h, **cfg)[0], h.image_ids).to_pandas()
    assert found <= set(zip(table.img1, table.img2, table.tag))


def test_flat_matches_keep_correlated_pairs_of_two_chips_and_drop_common_structures():
    from tiledup.discovery.flat_search import flat_matches

    rng = np.random.default_rng(3)
    sigs = rng.integers(-60, 60, (14, 1024)).astype(np.int8)  # 14 unrelated tiles (correlation ~0)
    sigs[1] = np.clip(sigs[0] + rng.integers(-20, 20, 1024), -127, 127)  # a copy of tile 0, noisy
    sigs[2] = sigs[0]  # the same again, but in tile 0's own chip: never a match
    sigs[4:14] = sigs[3]  # one structure in 11 chips: more than a place shows
    image = np.array([0, 1, 0] + list(range(2, 13)))
    i, j, corr = flat_matches(sigs, image, 0.4, 8)
    assert list(zip(i, j)) == [(0, 1), (1, 2)] and (corr > 0.8).all()
    i, j, _ = flat_matches(sigs, image, 0.4, 10)  # with room for 11 copies they all match
    assert len(i) == 2 + 11 * 10 // 2

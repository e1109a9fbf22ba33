"""Groups: positions on the lattice, both kinds of conflict, identical chips, three passes of a scene, the split."""

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiledup.tiles.table import TileHashes
from tiledup.run.errors import TiledupError
from tiledup.discovery.groups import CONFLICT_KINDS, build_groups, exact_duplicates, groups_rule, split_groups
from tiledup.grid import N_TILES, offset_tag
from tiledup.tiles.table import DIGEST
from tiledup.dup_truth import canonical
from tiledup.discovery.verify import OVERLAP_SCHEMA


def overlap(a, b, dr, dc, score, is_dup=None, n_informative=4):
    """A decided overlap of b sitting (dr, dc) tiles from a, in canonical order."""
    img1, img2, tag = canonical(a, b, offset_tag(dr, dc))
    is_dup = score >= 0.5 if is_dup is None else is_dup
    return {"img1": img1, "img2": img2, "tag": tag, "score": score, "is_dup": is_dup,
            "n_informative": n_informative}


def grouped(names, overlaps, exact=()):
    ids = np.array(sorted(names), dtype=object)
    index = {n: k for k, n in enumerate(ids)}
    exact = [sorted(index[n] for n in same) for same in exact]
    cols = ["img1", "img2", "tag", "score", "is_dup", "n_informative"]
    groups, conflicts = build_groups(ids, exact, pd.DataFrame(overlaps, columns=cols))
    return groups.set_index("image_id"), conflicts


def test_positions_are_the_lattice_offsets_from_the_groups_top_left():
    # a at (1, 0), b at (0, 1), c at (1, 2): b is (-1, +1) from a, c is (0, +2) from a
    groups, conflicts = grouped("abc", [overlap("a", "b", -1, 1, 0.9), overlap("a", "c", 0, 2, 0.8)])
    assert not conflicts
    assert groups.loc["a", ["row", "col"]].tolist() == [1, 0]
    assert groups.loc["b", ["row", "col"]].tolist() == [0, 1]
    assert groups.loc["c", ["row", "col"]].tolist() == [1, 2]
    assert groups.n_images.tolist() == [3, 3, 3] and groups.group.nunique() == 1


def test_a_chip_without_duplicates_is_its_own_group_and_undecidable_overlaps_join_nothing():
    groups, _ = grouped("abcd", [overlap("a", "b", 0, 1, 0.9), overlap("c", "d", 0, 1, np.nan, is_dup=None)])
    assert groups.loc["a", "group"] == groups.loc["b", "group"]
    assert groups.loc["c", "group"] != groups.loc["d", "group"]
    assert groups.loc[["c", "d"], "n_images"].tolist() == [1, 1]
    assert groups.loc[["c", "d"], ["row", "col"]].to_numpy().tolist() == [[0, 0], [0, 0]]
    assert groups.loc["a", "group"] == 0  # the largest group first


def test_two_positions_conflict_cuts_the_weakest_edge():
    # a-b and b-c one tile apart each (strong); a-c claims one tile too (wrong: it is two)
    edges = [overlap("a", "b", 0, 1, 0.99, n_informative=6), overlap("b", "c", 0, 1, 0.98, n_informative=6),
             overlap("a", "c", 0, 1, 0.97, n_informative=6)]
    groups, conflicts = grouped("abc", edges)
    assert len(conflicts) == 1
    c = conflicts[0]
    assert c["kind"] == CONFLICT_KINDS[0] and (c["img1"], c["img2"]) == ("a", "c")
    involved = {(o["img1"], o["img2"]) for o in c["involved"]}
    assert involved == {("a", "b"), ("b", "c")}  # the path that placed c elsewhere
    assert groups.loc["c", "col"] - groups.loc["a", "col"] == 2


def test_the_stronger_edge_wins_whatever_the_order():
    # the same three edges, the wrong one now the strongest: it stays, the weakest of the others is cut
    edges = [overlap("a", "b", 0, 1, 0.99, n_informative=3), overlap("b", "c", 0, 1, 0.90, n_informative=3),
             overlap("a", "c", 0, 1, 0.97, n_informative=6)]
    _, conflicts = grouped("abc", edges)
    assert [(c["img1"], c["img2"]) for c in conflicts] == [("b", "c")]


def test_a_non_duplicate_inside_a_group_cuts_the_edge_that_would_make_it():
    # p1, p2: one pass; q1: another pass at p1's place. p1-q1 decided not duplicate; a weak false
    # duplicate q1-p2 (one tile) would put q1 exactly on p1.
    edges = [overlap("p1", "p2", 2, 2, 0.99, n_informative=1), overlap("p1", "q1", 0, 0, 0.1, n_informative=9),
             overlap("p2", "q1", -2, -2, 0.6, n_informative=1)]
    groups, conflicts = grouped(["p1", "p2", "q1"], edges)
    assert [c["kind"] for c in conflicts] == [CONFLICT_KINDS[1]]
    involved = {(o["img1"], o["img2"], o["is_dup"]) for o in conflicts[0]["involved"]}
    assert ("p1", "q1", False) in involved and ("p1", "p2", True) in involved
    assert groups.loc["q1", "group"] != groups.loc["p1", "group"]


def test_identical_chips_land_in_one_group_without_any_overlap():
    groups, conflicts = grouped("abcd", [], exact=[("a", "c"), ("b", "d")])
    assert groups.loc["a", "group"] == groups.loc["c", "group"] != groups.loc["b", "group"] == groups.loc["d", "group"]
    assert groups.loc[["a", "c"], ["row", "col"]].to_numpy().tolist() == [[0, 0], [0, 0]]
    assert not conflicts


def test_exact_duplicates_from_tile_digests():
    digest = lambda s: np.frombuffer(hashlib.md5(s.encode()).digest(), np.uint8)  # noqa: E731
    rows = []
    for image, content in enumerate(["x", "y", "x", "x"]):  # 0, 2, 3 identical; 1 differs
        for t in range(N_TILES):
            rows.append((image, t, digest(f"{content}{t}" if (image, t) != (3, 8) else "other")))
    h = TileHashes(image_ids=np.array(list("abcd"), dtype=object), image=np.array([r[0] for r in rows]),
                   tile=np.array([r[1] for r in rows], np.int8), bmh=np.zeros((len(rows), 32), np.uint8),
                   digest=np.stack([r[2] for r in rows]).view(np.uint64), solid=np.zeros(len(rows), bool))
    assert exact_duplicates(h) == [[0, 2]]  # d differs in one tile: not the same image
    short = TileHashes(image_ids=h.image_ids, image=h.image[1:], tile=h.tile[1:], bmh=h.bmh[1:],
                       digest=h.digest[1:], solid=h.solid[1:])  # image a lost its tile 0
    with pytest.raises(TiledupError, match="9 tiles per image"):
        exact_duplicates(short)


def test_three_passes_of_a_scene_stay_three_groups_despite_wrong_edges():
    # scene 4 x 4 tiles, chips at (0,0), (0,1), (1,0), (1,1) in each of passes p, q, r
    rng = np.random.default_rng(0)
    chips = {p: [f"{p}{r}{c}" for r in range(2) for c in range(2)] for p in "pqr"}
    pos = {f"{p}{r}{c}": (r, c) for p in "pqr" for r in range(2) for c in range(2)}
    edges = []
    for p in "pqr":
        for i, a in enumerate(chips[p]):
            for b in chips[p][i + 1:]:
                d = np.subtract(pos[b], pos[a])
                edges.append(overlap(a, b, *d, score=0.9 + 0.09 * rng.random(), n_informative=4))
    for p, q in (("p", "q"), ("q", "r"), ("p", "r")):
        for a in chips[p]:
            for b in chips[q]:
                d = np.subtract(pos[b], pos[a])
                edges.append(overlap(a, b, *d, score=0.05, n_informative=4))  # other time: not duplicate
    # DupNet's errors: two false duplicates between passes, each on a one-tile corner overlap
    for a, b in (("p00", "q11"), ("q01", "r10")):
        for e in edges:
            if {e["img1"], e["img2"]} == {a, b}:
                e.update(score=0.8, is_dup=True, n_informative=1)
    groups, conflicts = grouped(sorted(pos), edges)
    assert groups.groupby("group").apply(lambda g: {i[0] for i in g.index}, include_groups=False).map(len).max() == 1
    assert groups.group.nunique() == 3 and (groups.n_images == 4).all()
    assert len(conflicts) == 2 and {c["kind"] for c in conflicts} == {CONFLICT_KINDS[1]}
    for p in "pqr":  # positions inside each pass are the lattice positions
        g = groups.loc[chips[p]]
        assert g[["row", "col"]].apply(tuple, axis=1).tolist() == [pos[c] for c in chips[p]]


@pytest.mark.parametrize("seed", range(5))
def test_the_split_never_cuts_a_group_and_follows_the_fractions(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 12, 300)
    groups = pd.DataFrame({"image_id": [f"{g}-{k}" for g, s in enumerate(sizes) for k in range(s)],
                           "group": np.repeat(np.arange(len(sizes)), sizes)})
    fractions = {"train": 0.7, "val": 0.2, "test": 0.1}
    split = split_groups(groups, fractions, seed)
    assert (split.groupby("group").split.nunique() == 1).all()
    shares = split.split.value_counts(normalize=True)
    for name, f in fractions.items():
        assert abs(shares[name] - f) < 0.02


def test_groups_rule_writes_its_three_files(tmp_path):
    names = [f"{k}.jpg" for k in range(6)]
    rows = []
    for image in names:
        for t in range(N_TILES):
            rows.append((image, t, hashlib.md5(f"{image}{t}".encode()).digest()))
    tiles = tmp_path / "000.parquet"
    pq.write_table(pa.table({"image_id": [r[0] for r in rows], "tile": pa.array([r[1] for r in rows], pa.int8()),
                             DIGEST: pa.array([r[2] for r in rows], pa.binary(16)),
                             "bmh": pa.array([bytes(32)] * len(rows), pa.binary(32)),
                             "solid": [False] * len(rows)}), tiles)
    ov = [overlap("0.jpg", "1.jpg", 0, 1, 0.9), overlap("1.jpg", "2.jpg", 1, 0, 0.8),
          overlap("3.jpg", "4.jpg", 0, 0, 0.2)]
    table = pa.table({"img1": [o["img1"] for o in ov], "img2": [o["img2"] for o in ov], "tag": [o["tag"] for o in ov],
                      "how": ["hash"] * 3, "votes": pa.array([1] * 3, pa.int32()),
                      "n_tile_pairs": pa.array([6, 6, 9], pa.int8()), "n_informative": pa.array([4] * 3, pa.int8()),
                      "score": pa.array([o["score"] for o in ov], pa.float32()), "is_dup": [o["is_dup"] for o in ov],
                      **{m: pa.array([0.5] * 3, pa.float32()) for m in ("bmh", "bmh96", "pixel_eq", "pixel_mad")}},
                     schema=OVERLAP_SCHEMA)
    overlaps = tmp_path / "overlaps.parquet"
    pq.write_table(table, overlaps)
    out = {"groups_path": tmp_path / "g.parquet", "split_path": tmp_path / "split.csv",
           "conflicts_path": tmp_path / "c.parquet"}
    groups_rule(overlaps, [tiles], **out, fractions={"train": 0.5, "val": 0.25, "test": 0.25}, seed=1)
    g = pq.read_table(out["groups_path"]).to_pandas()
    assert sorted(g.image_id) == names and g.group.nunique() == 4 and g.n_images.max() == 3
    split = pd.read_csv(out["split_path"])
    assert list(split.columns) == ["image_id", "group", "split"] and len(split) == 6
    assert split[split.image_id.isin(["0.jpg", "1.jpg", "2.jpg"])].split.nunique() == 1
    assert pq.read_table(out["conflicts_path"]).num_rows == 0

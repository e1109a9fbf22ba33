"""Groups: positions on the lattice, both kinds of conflict, identical chips, three passes of a scene, the split."""

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from configured import options
from tiledup.tiles.table import TileHashes
from tiledup.run.errors import TiledupError
from tiledup.discovery.groups import CONFLICT_KINDS, build_groups, exact_duplicates, groups_rule, split_units
from tiledup.discovery.summary import contentless_text
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


def test_two_positions_conflict_overrules_the_weaker_position():
    # a-b and b-c one tile apart each (strong); a-c claims one tile too (wrong: it is two)
    edges = [overlap("a", "b", 0, 1, 0.99, n_informative=6), overlap("b", "c", 0, 1, 0.98, n_informative=6),
             overlap("a", "c", 0, 1, 0.97, n_informative=6)]
    groups, conflicts = grouped("abc", edges)
    assert len(conflicts) == 1
    c = conflicts[0]
    assert c["kind"] == CONFLICT_KINDS[0] and (c["img1"], c["img2"]) == ("a", "c")
    assert c["group1"] == c["group2"] == 0
    assert groups.loc["c", "col"] - groups.loc["a", "col"] == 2


def test_the_stronger_evidence_wins_whatever_the_order():
    # the same three edges, the wrong one now the heaviest: it stays, the weaker of the others is overruled
    edges = [overlap("a", "b", 0, 1, 0.99, n_informative=3), overlap("b", "c", 0, 1, 0.90, n_informative=3),
             overlap("a", "c", 0, 1, 0.97, n_informative=6)]
    _, conflicts = grouped("abc", edges)
    assert [(c["img1"], c["img2"]) for c in conflicts] == [("b", "c")]


def test_a_heavy_non_duplicate_keeps_a_weak_duplicate_from_joining_two_groups():
    # p1, p2: one pass; q1: another pass at p1's place. p1-q1 decided not duplicate on 9 tile pairs; a weak
    # false duplicate q1-p2 (one tile) would put q1 exactly on p1.
    edges = [overlap("p1", "p2", 2, 2, 0.99, n_informative=1), overlap("p1", "q1", 0, 0, 0.1, n_informative=9),
             overlap("p2", "q1", -2, -2, 0.6, n_informative=1)]
    groups, conflicts = grouped(["p1", "p2", "q1"], edges)
    assert [(c["kind"], c["img1"], c["img2"]) for c in conflicts] == [(CONFLICT_KINDS[1], "p2", "q1")]
    assert groups.loc["q1", "group"] != groups.loc["p1", "group"] == groups.loc["p2", "group"]


def test_a_consistent_acquisition_with_a_few_misses_stays_one_group():
    # 16 chips of one pass on a 4 x 4 grid of positions one tile apart: every overlap a duplicate except a
    # few that verify missed (decided not duplicate at the right place), among them full-evidence ones
    pos = {f"c{r}{c}": (r, c) for r in range(4) for c in range(4)}
    names = sorted(pos)
    rng = np.random.default_rng(1)
    edges, missed = [], set()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = np.subtract(pos[b], pos[a])
            if np.abs(d).max() > 2:
                continue
            n_inf = int((3 - abs(d[0])) * (3 - abs(d[1])))
            miss = rng.random() < 0.1
            missed |= {(a, b)} if miss else set()
            edges.append(overlap(a, b, *d, score=0.3 if miss else 0.9, is_dup=not miss, n_informative=n_inf))
    assert len(missed) >= 5
    groups, conflicts = grouped(names, edges)
    assert groups.group.nunique() == 1
    assert [tuple(groups.loc[n, ["row", "col"]]) for n in names] == [pos[n] for n in names]
    assert {(c["img1"], c["img2"]) for c in conflicts} == missed
    assert {c["kind"] for c in conflicts} == {CONFLICT_KINDS[2]}


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
                   digest=np.stack([r[2] for r in rows]).view(np.uint64), solid=np.zeros(len(rows), bool),
                   grey_std=np.full(len(rows), 30, np.float32))
    assert exact_duplicates(h) == [[0, 2]]  # d differs in one tile: not the same image
    short = TileHashes(image_ids=h.image_ids, image=h.image[1:], tile=h.tile[1:], bmh=h.bmh[1:],
                       digest=h.digest[1:], solid=h.solid[1:], grey_std=h.grey_std[1:])  # image a lost its tile 0
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
    assert {(c["img1"], c["img2"]) for c in conflicts} == {("p00", "q11"), ("q01", "r10")}
    for p in "pqr":  # positions inside each pass are the lattice positions
        g = groups.loc[chips[p]]
        assert g[["row", "col"]].apply(tuple, axis=1).tolist() == [pos[c] for c in chips[p]]


def split_groups(groups: pd.DataFrame, fractions: dict, seed: int) -> pd.DataFrame:
    """The groups as the split's units."""
    return groups.assign(split=split_units(groups.group.to_numpy(), fractions, seed))


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


@pytest.mark.parametrize("seed", range(10))
def test_a_unit_larger_than_val_or_tests_share_goes_to_train(seed):
    # false duplicates chain one unit of 35 % at scale: drawn into test, it made test 35 % of the chips
    sizes = np.r_[350, np.full(65, 10)]
    groups = pd.DataFrame({"image_id": [f"{g}-{k}" for g, s in enumerate(sizes) for k in range(s)],
                           "group": np.repeat(np.arange(len(sizes)), sizes)})
    split = split_groups(groups, {"train": 0.8, "val": 0.1, "test": 0.1}, seed)
    assert (split[split.group == 0].split == "train").all()
    shares = split.split.value_counts(normalize=True)
    assert abs(shares["val"] - 0.1) <= 0.02 and abs(shares["test"] - 0.1) <= 0.02
    # a unit of most chips still goes to train; val and test get what the others hold
    most = np.r_[850, np.full(15, 10)]
    groups = pd.DataFrame({"image_id": [f"{g}-{k}" for g, s in enumerate(most) for k in range(s)],
                           "group": np.repeat(np.arange(len(most)), most)})
    split = split_groups(groups, {"train": 0.8, "val": 0.1, "test": 0.1}, seed)
    assert (split[split.group == 0].split == "train").all() and split.split.nunique() == 3
    # two large units and two small ones: both large ones in train, val and test one small unit each
    two = np.array([500, 400, 10, 10])
    groups = pd.DataFrame({"image_id": [f"{g}-{k}" for g, s in enumerate(two) for k in range(s)],
                           "group": np.repeat(np.arange(len(two)), two)})
    split = split_groups(groups, {"train": 0.8, "val": 0.1, "test": 0.1}, seed).groupby("group").split.first()
    assert list(split[:2]) == ["train", "train"] and sorted(split[2:]) == ["test", "val"]


def write_inputs(tmp_path, names, ov, candidates=(), contentless=()):
    """Tile tables (distinct digests; every tile solid for the chips in `contentless`), verify's
    overlaps table and the candidates table."""
    rows = [(image, t, hashlib.md5(f"{image}{t}".encode()).digest()) for image in names for t in range(N_TILES)]
    tiles = tmp_path / "000.parquet"
    pq.write_table(pa.table({"image_id": [r[0] for r in rows], "tile": pa.array([r[1] for r in rows], pa.int8()),
                             DIGEST: pa.array([r[2] for r in rows], pa.binary(16)),
                             "bmh": pa.array([bytes(32)] * len(rows), pa.binary(32)),
                             "solid": [r[0] in contentless for r in rows],
                             "grey_std": pa.array([30.0] * len(rows), pa.float32())}), tiles)
    n = len(ov)
    table = pa.table({"img1": [o["img1"] for o in ov], "img2": [o["img2"] for o in ov], "tag": [o["tag"] for o in ov],
                      "how": ["hash"] * n, "votes": pa.array([1] * n, pa.int32()),
                      "n_tile_pairs": pa.array([9] * n, pa.int8()),
                      "n_informative": pa.array([o["n_informative"] for o in ov], pa.int8()),
                      "score": pa.array([o["score"] for o in ov], pa.float32()), "is_dup": [o["is_dup"] for o in ov],
                      "certain": [False] * n,
                      **{m: pa.array([0.5] * n, pa.float32()) for m in ("bmh", "bmh96", "pixel_eq", "pixel_mad")}},
                     schema=OVERLAP_SCHEMA)
    overlaps = tmp_path / "overlaps.parquet"
    pq.write_table(table, overlaps)
    cands = [{"votes": 2, "how": "hash", "exact_votes": 0, **o} for o in [*ov, *candidates]]
    pq.write_table(pa.table({k: [o[k] for o in cands] for k in ("img1", "img2", "tag", "votes", "how", "exact_votes")}),
                   tmp_path / "candidates.parquet")
    return overlaps, [tiles], tmp_path / "candidates.parquet"


def run_rule(tmp_path, overlaps, tiles, **kw):
    out = {"groups_path": tmp_path / "g.parquet", "split_path": tmp_path / "split.csv",
           "conflicts_path": tmp_path / "c.parquet", "leaks_path": tmp_path / "leaks.json"}
    groups_rule(overlaps, tiles, **out, **{**options("groups"), **kw})
    return (pq.read_table(out["groups_path"]).to_pandas(), pd.read_csv(out["split_path"]),
            pq.read_table(out["conflicts_path"]).to_pandas(), json.loads(out["leaks_path"].read_text()))


def test_groups_rule_writes_its_four_files(tmp_path):
    names = [f"{k}.jpg" for k in range(6)]
    ov = [overlap("0.jpg", "1.jpg", 0, 1, 0.9), overlap("1.jpg", "2.jpg", 1, 0, 0.8),
          overlap("3.jpg", "4.jpg", 0, 0, 0.2)]
    overlaps, tiles, _ = write_inputs(tmp_path, names, ov)
    g, split, conflicts, leaks = run_rule(tmp_path, overlaps, tiles,
                                          fractions={"train": 0.5, "val": 0.25, "test": 0.25}, seed=1)
    assert sorted(g.image_id) == names and g.group.nunique() == 4 and g.n_images.max() == 3
    assert list(split.columns) == ["image_id", "group", "unit", "split"] and len(split) == 6
    assert split[split.image_id.isin(["0.jpg", "1.jpg", "2.jpg"])].split.nunique() == 1
    assert len(conflicts) == 0
    assert leaks["leaked_decided_duplicates"] == 0 and leaks["decided_duplicate_overlaps"] == 2


def test_decided_duplicates_share_a_split_even_when_their_groups_are_kept_apart(tmp_path):
    # two passes p, q of one place; one false duplicate p2-q1 outweighed by the non-duplicates: two groups,
    # yet one split unit, since the tool itself called p2-q1 a duplicate
    names = ["p1.jpg", "p2.jpg", "q1.jpg", "q2.jpg", *(f"x{k}.jpg" for k in range(8))]
    ov = [overlap("p1.jpg", "p2.jpg", 0, 1, 0.9, n_informative=6), overlap("q1.jpg", "q2.jpg", 0, 1, 0.9, n_informative=6),
          overlap("p1.jpg", "q1.jpg", 0, 0, 0.1, n_informative=9), overlap("p2.jpg", "q2.jpg", 0, 0, 0.1, n_informative=9),
          overlap("p2.jpg", "q1.jpg", 0, -1, 0.7, n_informative=6)]
    overlaps, tiles, _ = write_inputs(tmp_path, names, ov)
    for seed in range(5):
        g, split, conflicts, leaks = run_rule(tmp_path, overlaps, tiles, seed=seed,
                                              fractions={"train": 0.4, "val": 0.3, "test": 0.3})
        g = g.set_index("image_id")
        assert g.loc["p1.jpg", "group"] != g.loc["q1.jpg", "group"]
        assert list(conflicts.kind) == [CONFLICT_KINDS[1]]
        assert split[split.image_id.str[0].isin(["p", "q"])].split.nunique() == 1
        assert split[split.image_id.str[0].isin(["p", "q"])].unit.nunique() == 1
        assert leaks["leaked_decided_duplicates"] == 0 and leaks["decided_duplicate_overlaps"] == 3


def test_split_by_place_keeps_the_same_place_at_any_time_together(tmp_path):
    # a and b: the same place at two times (2 tile matches, decided not duplicate); c-d a duplicate;
    # e-f placed by the lattice only (implied); g-h one tile match, never placed: not the same place
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg", "h.jpg"]
    ov = [overlap("a.jpg", "b.jpg", 0, 0, 0.1), overlap("c.jpg", "d.jpg", 1, 0, 0.9)]
    more = [{**overlap("e.jpg", "f.jpg", 0, 1, 0.0), "how": "implied", "votes": 0},
            {**overlap("g.jpg", "h.jpg", 0, 1, 0.0), "votes": 1}]
    overlaps, tiles, candidates = write_inputs(tmp_path, names, ov, candidates=more)
    fractions = {"train": 0.34, "val": 0.33, "test": 0.33}
    by_dup = [run_rule(tmp_path, overlaps, tiles, candidates_path=candidates, seed=s, fractions=fractions,
                       place_votes=2) for s in range(6)]
    assert all(r[1].unit.nunique() == 7 for r in by_dup)  # every chip alone but c + d
    assert any(r[3]["candidate_overlaps_across_splits"] > 0 for r in by_dup)  # the place leaks at times
    assert all(r[3]["candidate_overlaps"] == 3 for r in by_dup)  # a-b, c-d, e-f: g-h's lone match places nothing
    for s in range(6):
        _, split, _, leaks = run_rule(tmp_path, overlaps, tiles, candidates_path=candidates, seed=s,
                                      fractions=fractions, split=options("groups.split", by="place"), place_votes=2)
        where = dict(zip(split.image_id, split.split))
        assert where["a.jpg"] == where["b.jpg"] and where["e.jpg"] == where["f.jpg"] and where["c.jpg"] == where["d.jpg"]
        assert leaks["candidate_overlaps_across_splits"] == 0
        assert split.unit.nunique() == 5 and leaks["split_by"] == "place"  # ab, cd, ef, g, h
    with pytest.raises(TiledupError, match="split.by must be one of"):
        run_rule(tmp_path, overlaps, tiles, split=options("groups.split", by="time"))
    with pytest.raises(TiledupError, match="place needs the candidates table"):
        run_rule(tmp_path, overlaps, tiles, split=options("groups.split", by="place"))


def test_a_persons_verdicts_override_verify(tmp_path):
    names = [f"{k}.jpg" for k in range(6)]
    ov = [overlap("0.jpg", "1.jpg", 0, 1, 0.9), overlap("2.jpg", "3.jpg", 0, 0, 0.2)]
    overlaps, tiles, _ = write_inputs(tmp_path, names, ov)
    verdicts = tmp_path / "verdicts.txt"
    # 0-1: not a duplicate after all; 2-3 a duplicate; 4-5 one no candidate found (written the other way round)
    verdicts.write_text("0.jpg 1.jpg 18 0\n2.jpg 3.jpg 08 1\n# a comment\n5.jpg 4.jpg 38 1\n")
    g, split, conflicts, leaks = run_rule(tmp_path, overlaps, tiles, verdicts_path=verdicts,
                                          fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    g = g.set_index("image_id")
    assert g.loc["0.jpg", "group"] != g.loc["1.jpg", "group"]
    assert g.loc["2.jpg", "group"] == g.loc["3.jpg", "group"] and g.loc["4.jpg", "group"] == g.loc["5.jpg", "group"]
    assert g.loc["4.jpg", "row"] - g.loc["5.jpg", "row"] == 1  # 5 -> 4 at tag 38: 4 one tile row lower
    assert leaks["decided_duplicate_overlaps"] == 2 and leaks["leaked_decided_duplicates"] == 0
    where = dict(zip(split.image_id, split.split))
    assert where["4.jpg"] == where["5.jpg"] and where["2.jpg"] == where["3.jpg"]
    verdicts.write_text("0.jpg 1.jpg 18 0\n0.jpg gone.jpg 08 1\n")
    with pytest.raises(TiledupError, match=r"verdicts.txt:2: image gone.jpg is not in the images folder"):
        run_rule(tmp_path, overlaps, tiles, verdicts_path=verdicts)


def test_no_overlaps_at_all_gives_groups_of_one_and_a_split(tmp_path):
    names = ["a.jpg", "b.jpg"]
    overlaps, tiles, candidates = write_inputs(tmp_path, names, [])
    g, split, conflicts, leaks = run_rule(tmp_path, overlaps, tiles, candidates_path=candidates, place_votes=2,
                                          fractions={"train": 0.8, "val": 0.1, "test": 0.1})
    assert (g.n_images == 1).all() and len(conflicts) == 0
    assert sorted(split.split) == ["train", "val"]  # two units for three splits: train first, then val
    assert leaks == {"split_by": "duplicates", "n_units": 2, "decided_duplicate_overlaps": 0,
                     "leaked_decided_duplicates": 0, "leaked": [], "candidate_overlaps": 0,
                     "candidate_overlaps_across_splits": 0,
                     "contentless_images": {"train": 0, "val": 0, "test": 0}}


def test_a_unit_of_contentless_chips_goes_to_train(tmp_path):
    """Every tile solid: the chip's duplicates cannot be seen, so drawn into val or test it could leak."""
    names = [f"c{k:02d}.jpg" for k in range(20)]
    ov = [overlap("c01.jpg", "c02.jpg", 0, 1, 0.9)]  # c01 has no content, c02 has: a unit with content
    overlaps, tiles, _ = write_inputs(tmp_path, names, ov, contentless={"c00.jpg", "c01.jpg"})
    runs = [run_rule(tmp_path, overlaps, tiles, seed=s) for s in range(20)]
    splits = [split.set_index("image_id").split for _, split, _, _ in runs]
    assert all(sp["c00.jpg"] == "train" for sp in splits)
    assert any(sp["c02.jpg"] != "train" for sp in splits)  # drawn like any unit
    for sp, (_, _, _, leaks) in zip(splits, runs):
        assert sp["c01.jpg"] == sp["c02.jpg"] and (sp.value_counts() >= 2).all()
        where = {"train": 1, "val": 0, "test": 0}
        where[sp["c01.jpg"]] += 1
        assert leaks["contentless_images"] == where  # counted for the report and the summary
    assert contentless_text(runs[0][3]).startswith("; 2 contentless chips (every tile solid")
    assert contentless_text({"contentless_images": {"test": 1, "train": 4, "val": 0}}).endswith(": train 4, test 1")
    assert contentless_text({"contentless_images": {"train": 0, "val": 0, "test": 0}}) == contentless_text(None) == ""


def test_fewer_units_than_splits_put_the_contentless_one_in_train(tmp_path):
    overlaps, tiles, _ = write_inputs(tmp_path, ["a.jpg", "b.jpg"], [], contentless={"b.jpg"})
    split = run_rule(tmp_path, overlaps, tiles)[1].set_index("image_id").split
    assert split.to_dict() == {"a.jpg": "val", "b.jpg": "train"}  # without content b would be val


def test_an_undecidable_overlap_keeps_its_chips_in_one_split_unless_told_apart(tmp_path):
    """An undecidable overlap (no tile pair is evidence: cloud or no-data on both sides) may be a duplicate."""
    names = [f"c{k}.jpg" for k in range(6)]
    ov = [overlap("c0.jpg", "c1.jpg", 0, 1, float("nan"), is_dup=None, n_informative=0)]
    ov[0]["is_dup"] = None
    overlaps, tiles, _ = write_inputs(tmp_path, names, ov)
    fractions = {"train": 0.34, "val": 0.33, "test": 0.33}
    together = [run_rule(tmp_path, overlaps, tiles, seed=s, fractions=fractions)[1] for s in range(6)]
    assert all(t.unit.nunique() == 5 and t.set_index("image_id").split[["c0.jpg", "c1.jpg"]].nunique() == 1
               for t in together)
    apart = [run_rule(tmp_path, overlaps, tiles, seed=s, fractions=fractions,
                      split=options("groups.split", undecidable="apart"))[1] for s in range(6)]
    assert all(a.unit.nunique() == 6 for a in apart)
    with pytest.raises(TiledupError, match="split.undecidable must be one of"):
        run_rule(tmp_path, overlaps, tiles, split=options("groups.split", undecidable="maybe"))

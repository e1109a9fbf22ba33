"""Duplicate groups with each chip's position in its group's mosaic, conflicts, and a split that never leaks.

Two questions, answered apart:

- **Which chips must share a split** (split.csv). Any two chips joined by a
  decided-duplicate overlap, whatever else the evidence says: the split's units
  are the connected components of every decided-duplicate overlap (and of
  identical chips; with `split.undecidable: together`, the default, also of
  every undecidable overlap, which may be a duplicate). Nothing the
  tool itself decided duplicate can then cross two splits (leaks.json counts them:
  always 0). With `split.by: place` also of every candidate overlap that places
  its chips on one lattice the way the candidate search does (at least
  `place_votes` tile matches, an overlap the lattice implied, or equal pixel
  digests), duplicate or not, so the same place seen at another time stays on
  one side. Single-match candidates are left out: on the default demo all 259
  candidate overlaps between two different scenes are single matches of sea
  texture, and with them the whole demo was one unit.
- **Where each chip sits** (groups.parquet, the mosaics). Chips cut from one
  acquisition sit on one lattice (tiledup.discovery.lattice); a group is a set
  of chips placed on one lattice with their (row, col) in tiles (top-left chip
  at row 0 / col 0 of the group's bounding box). A duplicate overlap says "b sits
  at (dr, dc) from a"; a non-duplicate overlap says "b does not sit there at the
  same time". Groups are joined by the weight of that evidence, greedy additive
  edge contraction as in correlation clustering: every pair of groups holds, per
  relative position, the weight of the duplicate overlaps for it and of the
  non-duplicate overlaps against it (weight = informative tile pairs, so a full
  overlap outweighs a corner); the pair of groups with the largest positive net
  weight at one position is joined first, their evidence is summed with their
  neighbours', and so on until no pair has a positive net weight. So a
  consistent acquisition with a few misses (not-duplicate overlaps among many
  duplicate ones) stays one group, and one false duplicate between two passes of
  a scene, outweighed by their non-duplicate overlaps, joins nothing. Greedy
  joining alone would join such a pair of single chips first, before the
  evidence around them is summed; so a duplicate decision that more chips
  around it contradict than confirm (triangle_support: a chip overlapping both
  that is a duplicate of one and not of the other contradicts it) weighs
  nothing for placing (it still binds the split). Identical
  chips (9 equal tile digests) are joined first, at (0, 0), unconditionally.

Conflicts are the decided overlaps the groups overrule, each listed
(conflicts.parquet, the first 20 in the log):
- "two positions": a duplicate overlap whose chips the group places elsewhere
  (the stronger evidence put them at another relative position);
- "outweighed by non-duplicates": a duplicate overlap between two groups that were
  not joined (the non-duplicate overlaps at that position weigh more); its chips
  still share a split;
- "non-duplicate in group": a non-duplicate overlap at exactly its chips' places
  in one group, outweighed by the duplicates around it (often a miss of verify's).
Undecidable overlaps are neither evidence nor conflicts. A person's verdicts
(config `verdicts`, dup_truth format) replace verify's decisions on the overlaps
they list (and add those they list beyond the candidates) and outweigh any
amount of the model's evidence.

The split puts whole units into train / val / test (tiledup.pairs.dataset's group
split: units shuffled with `seed`, cut near `fractions` of the images). Two kinds go to
train first (split_units): a unit larger than val's or test's share, and a unit of
contentless chips only (every tile solid), whose duplicates no evidence can show.
"""

from __future__ import annotations

import heapq
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tiledup.tiles.table import read_tile_hashes
from tiledup.discovery.candidates import placing_overlaps
from tiledup.discovery.lattice import Lattice
from tiledup.dup_truth import read_truth
from tiledup.grid import N_TILES, tag_offset
from tiledup.pairs.dataset import FILL_ORDER, SPLITS, assign_splits, check_fractions
from tiledup.run.errors import TiledupError
from tiledup.run.io import atomic_path, read_table, write_json, write_parquet

log = logging.getLogger(__name__)

GROUP_SCHEMA = pa.schema([("image_id", pa.string()), ("group", pa.int32()), ("row", pa.int32()),
                          ("col", pa.int32()), ("n_images", pa.int32())])
CONFLICT_SCHEMA = pa.schema([("kind", pa.string()), ("img1", pa.string()), ("img2", pa.string()),
                             ("tag", pa.string()), ("score", pa.float32()), ("is_dup", pa.bool_()),
                             ("n_informative", pa.int8()), ("verdict", pa.bool_()),
                             ("group1", pa.int32()), ("group2", pa.int32())])
CONFLICT_KINDS = ("two positions", "outweighed by non-duplicates", "non-duplicate in group")
SPLIT_BY = ("duplicates", "place")
SPLIT_UNDECIDABLE = ("together", "apart")
LOGGED = 20  # conflicts in the log, leaked overlaps in leaks.json
# A person's verdict outweighs any sum of the model's evidence (at most 9 tile pairs per overlap).
VERDICT_WEIGHT = 1e9
OVERLAP_COLUMNS = ["img1", "img2", "tag", "score", "is_dup", "n_informative"]


def exact_duplicates(h) -> list[list[int]]:
    """Images (indices into h.image_ids) whose 9 tile digests are all equal, as lists of 2 or more."""
    order = np.lexsort((h.tile, h.image))
    if len(order) != N_TILES * len(h.image_ids) or not (h.tile[order].reshape(-1, N_TILES) == np.arange(N_TILES)).all():
        raise TiledupError(f"tile tables: expected {N_TILES} tiles per image")
    images = h.image[order].reshape(-1, N_TILES)[:, 0]
    chips = np.ascontiguousarray(h.digest[order].reshape(len(images), -1))  # (images, 18) uint64
    _, inverse, counts = np.unique(chips, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    same = [np.flatnonzero(inverse == k) for k in np.flatnonzero(counts > 1)]
    return [sorted(images[s].tolist()) for s in same]


def apply_verdicts(overlaps: pd.DataFrame, verdicts: pd.DataFrame | None) -> pd.DataFrame:
    """overlaps with a person's verdicts (img1, img2, tag, is_dup) in place of verify's decisions.

    Adds two bool columns: `verdict` (decided by a person) and `candidate` (a row of verify's);
    verdicts on overlaps that are not candidates are added as rows (verify's columns null).
    """
    overlaps = overlaps.assign(verdict=False, candidate=True)
    if verdicts is None or not len(verdicts):
        return overlaps
    v = verdicts[["img1", "img2", "tag", "is_dup"]].assign(verdict=True)
    keyed = overlaps.set_index(["img1", "img2", "tag"])
    vk = v.set_index(["img1", "img2", "tag"])
    known = vk.index.isin(keyed.index)
    keyed = keyed.astype({"is_dup": object})
    keyed.loc[vk.index[known], "is_dup"] = vk.is_dup[known].to_numpy()
    keyed.loc[vk.index[known], "verdict"] = True
    added = vk[~known].assign(candidate=False).reindex(columns=keyed.columns)
    return pd.concat([keyed, added]).reset_index() if len(added) else keyed.reset_index()


def decided_overlaps(overlaps_path, verdicts_path, image_ids, columns=OVERLAP_COLUMNS) -> pd.DataFrame:
    """verify's overlaps (these columns of overlaps.parquet) with a person's verdicts applied, as groups,
    the split, the exports, the summary and the report all take them (apply_verdicts' columns added)."""
    overlaps = read_table(overlaps_path, columns, "overlaps table").to_pandas()
    return apply_verdicts(overlaps, read_verdicts(verdicts_path, image_ids))


def triangle_support(n: int, a: np.ndarray, b: np.ndarray, dup: np.ndarray) -> np.ndarray:
    """Per decided overlap (a, b): the chips c that overlap both a and b and agree with "a, b same time"
    (a~c and b~c duplicates) minus those that contradict it (one duplicate, the other not).

    A false duplicate between two passes of a scene is contradicted by nearly every chip around it
    (each is a duplicate of one side and not of the other); a true one is confirmed.
    """
    def adjacency(mask):
        m = coo_matrix((np.ones(2 * int(mask.sum()), np.int32), (np.r_[a[mask], b[mask]], np.r_[b[mask], a[mask]])),
                       shape=(n, n)).tocsr()
        m.data[:] = 1  # one chip pair, several offsets: one neighbour
        return m

    same, other = adjacency(dup), adjacency(~dup)
    support = (same @ same - same @ other - other @ same).tocsr()
    return np.asarray(support[a, b]).ravel() if len(a) else np.zeros(0)


def _evidence(overlaps: pd.DataFrame, index: dict) -> pd.DataFrame:
    """Decided overlaps as chip indices, offset, signed weight and rank (strongest duplicate first).

    A duplicate decision that the chips around it contradict (its own vote plus triangle_support below
    0: more chips contradict it than confirm it, beyond the one vote it casts) is no evidence for
    placing chips (it still joins its chips' split unit); a person's verdict always is.
    """
    d = overlaps[overlaps.is_dup.notna()]
    off = np.array([tag_offset(t) for t in d.tag], np.int64).reshape(-1, 2)
    dup = d.is_dup.astype(bool).to_numpy()
    verdict = d.verdict.to_numpy(bool)
    a, b = d.img1.map(index).to_numpy(np.int64), d.img2.map(index).to_numpy(np.int64)
    support = triangle_support(len(index), a, b, dup)
    weight = np.where(verdict, VERDICT_WEIGHT, np.maximum(d.n_informative.fillna(1).to_numpy(float), 1.0))
    counted = dup & ((1 + support >= 0) | verdict)  # the overlap's own vote, then its triangles
    out = pd.DataFrame({"a": a, "b": b, "dr": off[:, 0], "dc": off[:, 1], "dup": dup,
                        "pos": np.where(counted, weight, 0.0), "neg": np.where(dup, 0.0, weight),
                        "support": support, "score": d.score.fillna(1.0).to_numpy(float), "row": np.arange(len(d))})
    # rank: ties between positions of equal net weight go to the best-confirmed, strongest duplicate
    order = out.sort_values(["pos", "support", "score", "row"], ascending=[False, False, False, True]).index
    out["rank"] = 0
    out.loc[order, "rank"] = np.arange(len(out))
    out.loc[~out.dup, "rank"] = len(out)
    return out


class Mosaic:
    """Groups on the lattice, joined by the net weight of evidence between them (greedy additive edge contraction).

    evidence[x][y] = {(dr, dc): [for, against, rank]} for the roots x, y of two groups: y's root sits
    at (dr, dc) from x's; evidence[y][x] holds the same lists under the opposite offsets. Joining
    moves the smaller group's evidence into the larger's (the lattice attaches the smaller tree), so
    each overlap's evidence moves O(log n) times.
    """

    def __init__(self, n: int, exact: list[list[int]]):
        self.lattice = Lattice(n)
        for same in exact:
            for other in same[1:]:
                self.lattice.union(same[0], other, 0, 0)
        self.evidence: dict[int, dict[int, dict]] = {}
        self.version: dict[tuple[int, int], int] = {}
        self.heap: list = []

    def add(self, ev: pd.DataFrame) -> None:
        """Sum the decided overlaps' evidence per pair of groups and relative position."""
        roots, r, c = self.lattice.find_all(np.arange(len(self.lattice.parent)))
        a, b = ev.a.to_numpy(), ev.b.to_numpy()
        x, y = roots[a], roots[b]
        # y's root sits at pos(a) + d - pos(b) from x's root
        per = pd.DataFrame({"x": x, "y": y, "dr": r[a] + ev.dr.to_numpy() - r[b], "dc": c[a] + ev.dc.to_numpy() - c[b],
                            "pos": ev.pos.to_numpy(), "neg": ev.neg.to_numpy(), "rank": ev["rank"].to_numpy()})
        per = per[per.x != per.y]
        swap = per.x > per.y  # one orientation per pair: x < y
        per.loc[swap, ["x", "y"]] = per.loc[swap, ["y", "x"]].to_numpy()
        per.loc[swap, ["dr", "dc"]] = -per.loc[swap, ["dr", "dc"]].to_numpy()
        summed = per.groupby(["x", "y", "dr", "dc"], sort=True).agg(pos=("pos", "sum"), neg=("neg", "sum"),
                                                                    rank=("rank", "min"))
        for (x, y, dr, dc), p, q, k in zip(summed.index, summed.pos, summed.neg, summed["rank"]):
            cell = [float(p), float(q), int(k)]
            self.evidence.setdefault(x, {}).setdefault(y, {})[(dr, dc)] = cell
            self.evidence.setdefault(y, {}).setdefault(x, {})[(-dr, -dc)] = cell
        for x, ys in self.evidence.items():
            for y in ys:
                if x < y:
                    self._push(x, y)

    def _push(self, x: int, y: int) -> None:
        key = (x, y) if x < y else (y, x)
        version = self.version.get(key, 0) + 1
        self.version[key] = version
        net, rank, _ = self.best(x, y)
        if net > 0:
            heapq.heappush(self.heap, (-net, rank, version, key))

    def best(self, x: int, y: int) -> tuple[float, int, tuple[int, int]]:
        """(net weight, rank, offset) of the best relative position of y's group from x's: the largest
        net weight, then the strongest duplicate (lowest rank)."""
        net, negrank, o = max(((p - q, -k, o) for o, (p, q, k) in self.evidence[x][y].items()),
                              key=lambda t: t[:2])
        return net, -negrank, o

    def run(self) -> None:
        while self.heap:
            _, _, version, (x, y) = heapq.heappop(self.heap)
            if self.version.get((x, y)) != version:
                continue  # stale: the pair's evidence changed since, or one side was joined
            _, _, (dr, dc) = self.best(x, y)
            self._join(x, y, dr, dc)

    def _join(self, x: int, y: int, dr: int, dc: int) -> None:
        self.lattice.union(x, y, dr, dc)  # x, y are roots: y's root at (dr, dc) from x's
        root = int(self.lattice.find(x)[0])
        gone = y if root == x else x
        _, sr, sc = self.lattice.find(gone)  # gone's position from root
        moved = self.evidence.pop(gone, {})
        kept = self.evidence.setdefault(root, {})
        kept.pop(gone, None)
        self.version.pop((min(x, y), max(x, y)), None)
        for z, cells in moved.items():
            if z == root:
                continue
            back = self.evidence[z]
            del back[gone]
            self.version.pop((min(gone, z), max(gone, z)), None)
            into = kept.setdefault(z, {})
            back_into = back.setdefault(root, {})
            for (or_, oc), cell in cells.items():
                o = (or_ + sr, oc + sc)  # z from root = z from gone + gone from root
                have = into.get(o)
                if have is None:
                    into[o] = back_into[(-o[0], -o[1])] = cell
                else:
                    have[0] += cell[0]
                    have[1] += cell[1]
                    have[2] = min(have[2], cell[2])
            self._push(root, z)


def build_groups(image_ids: np.ndarray, exact: list[list[int]], overlaps: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """groups (image_id, group, row, col, n_images) and the conflicts (overruled overlaps) from decided overlaps.

    overlaps: img1, img2, tag, score, is_dup (None = undecidable), n_informative, and optionally
    verdict (a person's decision: it outweighs the model's evidence).
    """
    if "verdict" not in overlaps:
        overlaps = overlaps.assign(verdict=False)
    index = {name: k for k, name in enumerate(image_ids)}
    ev = _evidence(overlaps, index)
    mosaic = Mosaic(len(image_ids), exact)
    mosaic.add(ev)
    mosaic.run()
    root, row, col = mosaic.lattice.positions()
    df = pd.DataFrame({"image_id": image_ids, "root": root, "row": row, "col": col})
    df["row"] -= df.groupby("root").row.transform("min")
    df["col"] -= df.groupby("root").col.transform("min")
    df["n_images"] = df.groupby("root").root.transform("size")
    # group ids: largest group first, then by its first image id
    first = df.groupby("root").image_id.transform("min")
    df = df.assign(first=first).sort_values(["n_images", "first", "row", "col", "image_id"],
                                            ascending=[False, True, True, True, True])
    df["group"] = pd.factorize(df.root)[0]
    groups = df[["image_id", "group", "row", "col", "n_images"]].reset_index(drop=True)
    return groups, _conflicts(groups, overlaps, ev, index)


def _conflicts(groups: pd.DataFrame, overlaps: pd.DataFrame, ev: pd.DataFrame, index: dict) -> list[dict]:
    """The decided overlaps that the groups overrule, strongest first."""
    at = groups.set_index("image_id").reindex(list(index))
    g, r, c = (at[k].to_numpy(np.int64) for k in ("group", "row", "col"))
    a, b = ev.a.to_numpy(), ev.b.to_numpy()
    same = g[a] == g[b]
    placed = same & (r[b] - r[a] == ev.dr.to_numpy()) & (c[b] - c[a] == ev.dc.to_numpy())
    dup = ev.dup.to_numpy()
    kind = np.select([dup & same & ~placed, dup & ~same, ~dup & placed], CONFLICT_KINDS, "")
    decided = overlaps[overlaps.is_dup.notna()].reset_index(drop=True)
    hit = np.flatnonzero(kind != "")
    hit = hit[np.lexsort((ev.row.to_numpy()[hit], -(ev.pos + ev.neg).to_numpy()[hit]))]
    rows = decided.iloc[hit]
    return [{"kind": k, "img1": o.img1, "img2": o.img2, "tag": o.tag,
             "score": None if pd.isna(o.score) else float(o.score), "is_dup": bool(o.is_dup),
             "n_informative": None if pd.isna(o.n_informative) else int(o.n_informative),
             "verdict": bool(o.verdict), "group1": int(g1), "group2": int(g2)}
            for k, o, g1, g2 in zip(kind[hit], rows.itertuples(), g[a[hit]], g[b[hit]])]


def components(n: int, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected component of each of n chips over the edges (a, b) of every array pair given."""
    a = np.concatenate([p[0] for p in pairs] + [np.zeros(0, np.int64)]).astype(np.int64)
    b = np.concatenate([p[1] for p in pairs] + [np.zeros(0, np.int64)]).astype(np.int64)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def split_units(units: np.ndarray, fractions: dict, seed: int, contentless: np.ndarray | None = None) -> np.ndarray:
    """Split name per chip: whole units per split, split sizes near the fractions of the images.

    Two kinds of unit go to train before the seeded draw (tiledup.pairs.dataset.assign_splits):
    a unit larger than val's or test's share, which drawn there would swamp it (false duplicates
    chain 35 % of a 20,000-chip demo's chips into one unit: test held them for 3 seeds of 10),
    and a unit of contentless chips only (`contentless`, per chip: every tile solid), whose
    duplicates cannot be seen, so in val or test they would leak unseen, and which holds nothing
    to evaluate. Both together: 16-26 % fewer true-duplicate leaks over 100 draws on development
    demos (docs/benchmarks.md#the-splits-draw).
    Fewer units than splits with a non-zero fraction (a tiny or overlap-free folder): the
    units fill train, then val, then test (contentless ones first), with a warning, instead of
    no split at all.
    """
    sizes = np.bincount(units)
    to_train = np.zeros(len(sizes), bool)
    if contentless is not None:  # units whose every chip is contentless
        to_train = np.bincount(units, weights=~np.asarray(contentless, bool), minlength=len(sizes)) == 0
    needed = [s for s in FILL_ORDER if fractions[s] > 0]
    if len(sizes) < len(needed):
        order = [s for s in SPLITS if fractions[s] > 0][:len(sizes)]
        per_unit = np.empty(len(sizes), np.int8)
        per_unit[np.argsort(~to_train, kind="stable")] = [SPLITS.index(s) for s in order]
        log.warning("only %d unit(s) of chips for %d splits: %s", len(sizes), len(needed),
                    ", ".join(f"unit {k} to {SPLITS[s]}" for k, s in enumerate(per_unit)))
    else:
        smallest = min((fractions[s] for s in needed if s != "train"), default=1.0)
        to_train |= sizes > smallest * sizes.sum()
        per_unit = assign_splits(sizes, fractions, np.random.default_rng(seed), "unit", to_train)
    return np.array(SPLITS)[per_unit[units]]


def leaks(overlaps: pd.DataFrame, same_place: pd.DataFrame | None, split: pd.DataFrame, split_by: str) -> dict:
    """Decided-duplicate overlaps (and the candidate overlaps that place their chips: the same place at any
    time, which split.by: place keeps together) whose chips sit in two splits."""
    where = dict(zip(split.image_id, split.split))

    def crossing(df):
        return df[np.array([where.get(a) != where.get(b) for a, b in zip(df.img1, df.img2)], bool)]

    dups = overlaps[overlaps.is_dup.fillna(False).astype(bool)]
    leaked = crossing(dups)
    out = {"split_by": split_by, "n_units": int(split.unit.nunique()),
           "decided_duplicate_overlaps": int(len(dups)), "leaked_decided_duplicates": int(len(leaked)),
           "leaked": leaked[["img1", "img2", "tag"]].head(LOGGED).to_dict("records")}
    if same_place is not None:
        out["candidate_overlaps"] = int(len(same_place))
        out["candidate_overlaps_across_splits"] = int(len(crossing(same_place)))
    return out


def read_verdicts(path, image_ids) -> pd.DataFrame | None:
    """A person's verdicts (dup_truth format), every image a tiled chip; None without a file."""
    if not path:
        return None
    verdicts, _ = read_truth(path, accepted=set(image_ids), on_bad="error")
    return verdicts


def placed(candidates: pd.DataFrame, place_votes: int) -> pd.DataFrame:
    """Candidate overlaps that place their chips on one lattice: place_votes tile matches or more, implied
    by the lattice, or equal pixel digests (tiledup.discovery.candidates' placing rule, read off its table)."""
    return candidates[placing_overlaps(candidates.votes, candidates.how, candidates.exact_votes, place_votes)]


def groups_rule(overlaps_path, tiles_paths, groups_path, split_path, conflicts_path, leaks_path,
                candidates_path=None, verdicts_path=None, place_votes: int | None = None, *,
                fractions: dict, seed: int, split: dict) -> pd.DataFrame:
    """The `groups` rule: overlaps.parquet + tile tables (+ candidates, a person's verdicts) ->
    groups.parquet, split.csv, conflicts.parquet and leaks.json.

    Keywords = the `groups` config block; split = {"by": "duplicates" | "place"} ("place" needs the
    candidates table and `candidates.place_votes`).
    """
    check_fractions(fractions, "groups")
    split_by = split["by"]
    if split["undecidable"] not in SPLIT_UNDECIDABLE:
        raise TiledupError(f"groups.split.undecidable must be one of {', '.join(SPLIT_UNDECIDABLE)}, "
                           f"got {split['undecidable']!r}")
    if split_by not in SPLIT_BY:
        raise TiledupError(f"groups.split.by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    if split_by == "place" and not (candidates_path and place_votes):
        raise TiledupError("groups.split.by: place needs the candidates table and candidates.place_votes "
                           "(--candidates, --place-votes)")
    h = read_tile_hashes(tiles_paths)
    exact = exact_duplicates(h)
    overlaps = read_table(overlaps_path, OVERLAP_COLUMNS, "overlaps table").to_pandas()
    candidates = (read_table(candidates_path, ["img1", "img2", "tag", "how", "votes", "exact_votes"],
                             "candidates table").to_pandas()
                  if candidates_path else None)
    for path, table in ((overlaps_path, overlaps), (candidates_path, candidates)):
        if table is None:
            continue
        unknown = sorted((set(table.img1) | set(table.img2)) - set(h.image_ids))
        if unknown:
            raise TiledupError(f"{path}: {len(unknown)} image(s) not in the tile tables, e.g. "
                               f"{', '.join(unknown[:5])} (re-run the workflow)")
    overlaps = apply_verdicts(overlaps, read_verdicts(verdicts_path, h.image_ids))
    if verdicts_path:
        by = overlaps[overlaps.verdict]
        log.info("verdicts: %d overlap(s) decided by a person (%d of them not candidates), %d duplicate(s)",
                 len(by), int((~by.candidate).sum()), int(by.is_dup.astype(bool).sum()))
    groups, conflicts = build_groups(h.image_ids, exact, overlaps)

    # split units: every decided duplicate (and identical chips; with `place`, every candidate) joins
    index = {name: k for k, name in enumerate(h.image_ids)}
    # an undecidable overlap might be a duplicate: with `undecidable: together` it binds the split too
    dups = overlaps[overlaps.is_dup.fillna(split["undecidable"] == "together").astype(bool)]
    edges = [(dups.img1.map(index).to_numpy(), dups.img2.map(index).to_numpy())]
    edges += [(np.full(len(same) - 1, same[0]), np.array(same[1:])) for same in exact]
    # a lone tile match does not say "same place" (a look-alike tile): only overlaps that place chips do
    same_place = placed(candidates, place_votes) if candidates is not None and place_votes else None
    if split_by == "place":
        edges.append((same_place.img1.map(index).to_numpy(), same_place.img2.map(index).to_numpy()))
    units = components(len(h.image_ids), edges)
    contentless = h.contentless()
    table = pd.DataFrame({"image_id": h.image_ids, "unit": units}).merge(groups[["image_id", "group"]])
    rows = table.image_id.map(index).to_numpy()
    table["split"] = split_units(units[rows], fractions, seed, contentless[rows])
    empty = table.split[contentless[rows]].value_counts()
    table = table.sort_values(["group", "image_id"])[["image_id", "group", "unit", "split"]]
    leaked = leaks(overlaps, same_place, table, split_by)
    leaked["contentless_images"] = {s: int(empty.get(s, 0)) for s in SPLITS}

    write_parquet(pa.Table.from_pandas(groups, schema=GROUP_SCHEMA, preserve_index=False), groups_path)
    write_parquet(pa.Table.from_pylist(conflicts, schema=CONFLICT_SCHEMA), conflicts_path)
    with atomic_path(split_path) as tmp:
        table.to_csv(tmp, index=False)
    write_json(leaked, leaks_path)

    sizes = groups.drop_duplicates("group").n_images
    per_split = table.split.value_counts().reindex(SPLITS, fill_value=0)
    log.info("%d images in %d groups (%d of 2 or more images, largest %d); %d sets of identical chips; "
             "%d conflicts (%s)", len(groups), len(sizes), int((sizes > 1).sum()),
             int(sizes.max()) if len(sizes) else 0, len(exact), len(conflicts),
             ", ".join(f"{k}: {sum(c['kind'] == k for c in conflicts)}" for k in CONFLICT_KINDS))
    log.info("split by %s: %d units (largest %d images); images per split: %s%s; decided-duplicate overlaps "
             "across splits: %d of %d%s", split_by, leaked["n_units"], int(np.bincount(units).max()) if len(units) else 0,
             ", ".join(f"{k} {v}" for k, v in per_split.items()),
             f" (contentless, every tile solid: {', '.join(f'{k} {v}' for k, v in leaked['contentless_images'].items())})"
             if contentless.any() else "",
             leaked["leaked_decided_duplicates"],
             leaked["decided_duplicate_overlaps"],
             f"; candidate overlaps that place their chips (same place, any time) across splits: "
             f"{leaked['candidate_overlaps_across_splits']} of {leaked['candidate_overlaps']}"
             if same_place is not None else "")
    for c in conflicts[:LOGGED]:
        log.warning("conflict (%s): %s %s %s, %s (score %s, %s informative tile pairs%s), groups %d and %d",
                    c["kind"], c["img1"], c["img2"], c["tag"], "dup" if c["is_dup"] else "not dup",
                    "n/a" if c["score"] is None else f"{c['score']:.3f}", c["n_informative"],
                    ", a person's verdict" if c["verdict"] else "", c["group1"], c["group2"])
    if len(conflicts) > LOGGED:
        log.warning("... %d more conflicts in %s", len(conflicts) - LOGGED, conflicts_path)
    return groups

"""Duplicate groups with each chip's position in its group's mosaic, conflicts, and a leak-free split.

A group is a connected component of duplicate overlaps; the overlaps place its
chips on one lattice (tiledup.discovery.lattice), so each chip gets its (row, col) in
tiles inside the group's mosaic (top-left chip at row 0 / col 0 of the
mosaic's bounding box).

Edges are added strongest first: chips with equal digests for all 9 tiles (the
same image twice) first, at offset (0, 0) and unconditionally; then the
duplicate overlaps, most informative tile pairs first (an overlap whose 9 tile
pairs all pass is stronger evidence than one corner tile), then by DupNet score,
then by name. An edge is refused when it would create a conflict:
- "two positions": it would place a chip at a position other than the one the
  group's earlier (stronger) edges give it;
- "non-duplicate in group": it would join two groups so that two chips sit at
  exactly the relative position of an overlap of theirs that verify decided is
  not a duplicate (a wrong edge merging two passes of one scene).
Every edge explaining such a conflict was added before the refused one, so the
refused edge is the weakest edge explaining it: that is the one cut. Each
conflict is listed with the overlaps involved (conflicts.parquet and the log).
A chip with no duplicate is a group of its own. Undecidable overlaps are neither
edges nor conflicts.

The split puts whole groups into train / val / test (tiledup.pairs.dataset's group
split: groups shuffled with `seed`, cut near `fractions` of the images).
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np
import pandas as pd
import pyarrow as pa

from tiledup.tiles.table import read_tile_hashes
from tiledup.pairs.dataset import SPLITS, assign_splits, check_fractions
from tiledup.run.errors import TiledupError
from tiledup.grid import N_TILES, tag_offset
from tiledup.run.io import atomic_path, read_table, write_parquet
from tiledup.discovery.lattice import Lattice

log = logging.getLogger(__name__)

GROUP_SCHEMA = pa.schema([("image_id", pa.string()), ("group", pa.int32()), ("row", pa.int32()),
                          ("col", pa.int32()), ("n_images", pa.int32())])
OVERLAP = pa.struct([("img1", pa.string()), ("img2", pa.string()), ("tag", pa.string()),
                     ("score", pa.float32()), ("is_dup", pa.bool_())])
CONFLICT_SCHEMA = pa.schema([("kind", pa.string()), ("img1", pa.string()), ("img2", pa.string()),
                             ("tag", pa.string()), ("score", pa.float32()),
                             ("involved", pa.list_(OVERLAP))])
CONFLICT_KINDS = ("two positions", "non-duplicate in group")
LOGGED_CONFLICTS = 20


def exact_duplicates(h) -> list[list[int]]:
    """Images (indices into h.image_ids) whose 9 tile digests are all equal, as lists of 2 or more."""
    order = np.lexsort((h.tile, h.image))
    if len(order) != N_TILES * len(h.image_ids) or not (h.tile[order].reshape(-1, N_TILES) == np.arange(N_TILES)).all():
        raise TiledupError(f"tile tables: expected {N_TILES} tiles per image")
    images = h.image[order].reshape(-1, N_TILES)[:, 0]
    chips = np.ascontiguousarray(h.digest[order].reshape(len(images), -1))  # (images, 18) uint64
    _, inverse, counts = np.unique(chips, axis=0, return_inverse=True, return_counts=True)
    same = [np.flatnonzero(inverse == k) for k in np.flatnonzero(counts > 1)]
    return [sorted(images[s].tolist()) for s in same]


class Grouping:
    """Lattice of duplicate edges with the bookkeeping to detect and explain conflicts."""

    def __init__(self, n: int, names: np.ndarray):
        self.lattice = Lattice(n)
        self.names = names
        self.members = {i: [i] for i in range(n)}  # root -> chips
        self.tree: dict[int, list[tuple[int, dict]]] = {}  # accepted edges, for explaining conflicts
        self.nondup: dict[int, list[tuple[int, int, int, dict]]] = {}  # chip -> (other, dr, dc, overlap)
        self.conflicts: list[dict] = []

    def add_nondup(self, a: int, b: int, dr: int, dc: int, overlap: dict) -> None:
        self.nondup.setdefault(a, []).append((b, dr, dc, overlap))
        self.nondup.setdefault(b, []).append((a, -dr, -dc, overlap))

    def path(self, a: int, b: int) -> list[dict]:
        """Accepted edges between two chips of one group (breadth-first in the spanning tree)."""
        back = {a: None}
        todo = deque([a])
        while todo:
            x = todo.popleft()
            if x == b:
                break
            for y, edge in self.tree.get(x, ()):
                if y not in back:
                    back[y] = (x, edge)
                    todo.append(y)
        edges, x = [], b
        while back.get(x) is not None:
            x, edge = back[x]
            edges.append(edge)
        return edges[::-1]

    def add(self, a: int, b: int, dr: int, dc: int, overlap: dict | None) -> bool:
        """Place b at (dr, dc) from a unless that conflicts; overlap None = an unconditional edge."""
        ra, pr, pc = self.lattice.find(a)
        rb, qr, qc = self.lattice.find(b)
        if ra == rb:
            if (qr - pr, qc - pc) == (dr, dc):
                return True
            self.conflicts.append({"kind": CONFLICT_KINDS[0], **overlap,
                                   "involved": self.path(a, b)})
            return False
        if overlap is not None:
            clash = self._nondup_clash(ra, rb, pr + dr - qr, pc + dc - qc)
            if clash:
                x, y, other = clash
                self.conflicts.append({"kind": CONFLICT_KINDS[1], **overlap,
                                       "involved": [other, *self.path(x, a), *self.path(b, y)]})
                return False
        self.lattice.union(a, b, dr, dc)
        root = self.lattice.find(a)[0]
        self.members[root] = self.members.pop(ra) + self.members.pop(rb)
        edge = overlap or {"img1": self.names[a], "img2": self.names[b], "tag": "08", "score": None,
                           "is_dup": True}
        self.tree.setdefault(a, []).append((b, edge))
        self.tree.setdefault(b, []).append((a, edge))
        return True

    def _nondup_clash(self, ra: int, rb: int, rel_r: int, rel_c: int):
        """A non-duplicate overlap that joining rb's group at (rel_r, rel_c) from ra would put inside."""
        # y relative to x after the join: rel + p_y - p_x if x is in ra's group, p_y - rel - p_x if in rb's
        small, big, sign = (ra, rb, 1) if len(self.members[ra]) <= len(self.members[rb]) else (rb, ra, -1)
        for x in self.members[small]:
            _, xr, xc = self.lattice.find(x)
            for y, dr, dc, overlap in self.nondup.get(x, ()):
                ry, yr, yc = self.lattice.find(y)
                if ry != big:
                    continue
                if (yr + sign * rel_r - xr, yc + sign * rel_c - xc) == (dr, dc):
                    return (x, y, overlap) if small == ra else (y, x, overlap)
        return None


def build_groups(image_ids: np.ndarray, exact: list[list[int]], overlaps: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """groups (image_id, group, row, col, n_images) and conflicts from decided overlaps.

    overlaps: img1, img2, tag, score, is_dup (None = undecidable), n_informative.
    """
    index = {name: k for k, name in enumerate(image_ids)}
    g = Grouping(len(image_ids), image_ids)
    for same in exact:
        for other in same[1:]:
            g.add(same[0], other, 0, 0, None)
    decided = overlaps[overlaps.is_dup.notna()]
    for o in decided[~decided.is_dup.astype(bool)].itertuples():
        dr, dc = tag_offset(o.tag)
        g.add_nondup(index[o.img1], index[o.img2], dr, dc, _overlap(o))
    dups = decided[decided.is_dup.astype(bool)].sort_values(
        ["n_informative", "score", "img1", "img2", "tag"], ascending=[False, False, True, True, True])
    for o in dups.itertuples():
        dr, dc = tag_offset(o.tag)
        g.add(index[o.img1], index[o.img2], dr, dc, _overlap(o))
    root, row, col = g.lattice.positions()
    df = pd.DataFrame({"image_id": image_ids, "root": root, "row": row, "col": col})
    df["row"] -= df.groupby("root").row.transform("min")
    df["col"] -= df.groupby("root").col.transform("min")
    df["n_images"] = df.groupby("root").root.transform("size")
    # group ids: largest group first, then by its first image id
    first = df.groupby("root").image_id.transform("min")
    df = df.assign(first=first).sort_values(["n_images", "first", "row", "col", "image_id"],
                                            ascending=[False, True, True, True, True])
    df["group"] = pd.factorize(df.root)[0]
    return df[["image_id", "group", "row", "col", "n_images"]].reset_index(drop=True), g.conflicts


def _overlap(o) -> dict:
    return {"img1": o.img1, "img2": o.img2, "tag": o.tag, "score": float(o.score),
            "is_dup": bool(o.is_dup)}


def split_groups(groups: pd.DataFrame, fractions: dict, seed: int) -> pd.DataFrame:
    """image_id, group, split: whole groups per split, split sizes near the fractions of the images."""
    sizes = groups.groupby("group").size().sort_index()
    split = assign_splits(sizes.to_numpy(), fractions, np.random.default_rng(seed), "group")
    names = np.array(SPLITS)[split]
    return groups.assign(split=names[groups.group.to_numpy()])[["image_id", "group", "split"]]


def groups_rule(overlaps_path, tiles_paths, groups_path, split_path, conflicts_path, *,
                fractions: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """The `groups` rule: overlaps.parquet + tile tables -> groups.parquet, split.csv, conflicts.parquet."""
    fractions = fractions or {"train": 0.8, "val": 0.1, "test": 0.1}
    check_fractions(fractions, "groups")
    h = read_tile_hashes(tiles_paths)
    exact = exact_duplicates(h)
    overlaps = read_table(overlaps_path, ["img1", "img2", "tag", "score", "is_dup", "n_informative"],
                          "overlaps table").to_pandas()
    unknown = sorted((set(overlaps.img1) | set(overlaps.img2)) - set(h.image_ids))
    if unknown:
        raise TiledupError(f"{overlaps_path}: {len(unknown)} image(s) not in the tile tables, e.g. "
                           f"{', '.join(unknown[:5])} (re-run the workflow)")
    groups, conflicts = build_groups(h.image_ids, exact, overlaps)
    split = split_groups(groups, fractions, seed)
    write_parquet(pa.Table.from_pandas(groups, schema=GROUP_SCHEMA, preserve_index=False), groups_path)
    write_parquet(pa.Table.from_pylist(conflicts, schema=CONFLICT_SCHEMA), conflicts_path)
    with atomic_path(split_path) as tmp:
        split.to_csv(tmp, index=False)
    sizes = groups.drop_duplicates("group").n_images
    per_split = split.split.value_counts().reindex(SPLITS, fill_value=0)
    log.info("%d images in %d groups (%d of 2 or more images, largest %d); %d sets of identical chips; "
             "%d conflicts (%s); split by images: %s", len(groups), len(sizes), int((sizes > 1).sum()),
             int(sizes.max()) if len(sizes) else 0, len(exact), len(conflicts),
             ", ".join(f"{k}: {sum(c['kind'] == k for c in conflicts)}" for k in CONFLICT_KINDS),
             ", ".join(f"{k} {v}" for k, v in per_split.items()))
    for c in conflicts[:LOGGED_CONFLICTS]:
        log.warning("conflict (%s): cut %s %s %s (score %.3f); involved: %s", c["kind"], c["img1"], c["img2"],
                    c["tag"], c["score"], "; ".join(f"{o['img1']} {o['img2']} {o['tag']} "
                                                    f"{'dup' if o['is_dup'] else 'not dup'}"
                                                    for o in c["involved"]))
    if len(conflicts) > LOGGED_CONFLICTS:
        log.warning("... %d more conflicts in %s", len(conflicts) - LOGGED_CONFLICTS, conflicts_path)
    return groups

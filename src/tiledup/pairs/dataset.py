"""Sample the pair shards down to a training set and split it by image (or by scene).

All pairs of one group (an image, or with the demo's layout a whole scene) land
in one split: tiles of one image in train and val would leak, and so would
overlapping chips of one scene. Groups are shuffled with `seed` and cut so that
each split gets about its fraction of the available pairs (the smaller splits are
cut first and get at least one group each); then each split is sampled down to
its share of `pairs`. With `balance`, every split holds as many duplicates as
non-duplicates.

Everything is deterministic: pairs are sorted by (image_id, tile1, tile2) before
any draw, so the same pairs and seed give byte-identical tables whatever the
shard count or order.
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiledup.run.errors import TiledupError
from tiledup.run.io import read_table, write_json, write_parquet

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FILL_ORDER = ("val", "test", "train")  # small splits first, so they get a group each
GROUP_BY = ("image", "scene")
PAIR_COLUMNS = ("image_id", "tile1", "tile2", "is_dup", "bmh_sim")


def check_fractions(fractions, block: str) -> None:
    """Split fractions (`<block>.fractions`): exactly train, val and test, in [0, 1], adding up to 1, train > 0."""
    if not isinstance(fractions, dict) or set(fractions) != set(SPLITS):
        raise TiledupError(f"{block}.fractions must give exactly {', '.join(SPLITS)}, got {fractions!r}")
    for name, f in fractions.items():
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 <= f <= 1:
            raise TiledupError(f"{block}.fractions.{name} must be a number in [0, 1], got {f!r}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise TiledupError(f"{block}.fractions add up to {total:g}, not 1: {fractions}")
    if fractions["train"] <= 0:
        raise TiledupError(f"{block}.fractions.train must be > 0")


def check_sample_config(sample: dict, has_layout: bool | None = None) -> None:
    """Validate the `sample:` block beyond what JSON Schema can say (fractions must sum to 1).

    `has_layout=False` (your own images, no demo layout) also rejects group_by: scene.
    """
    check_fractions(sample["fractions"], "sample")
    n = sample["pairs"]
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise TiledupError(f"sample.pairs must be a positive integer, got {n!r}")
    group_by = sample["group_by"]
    if group_by not in GROUP_BY:
        raise TiledupError(f"sample.group_by must be one of {', '.join(GROUP_BY)}, got {group_by!r}")
    if group_by == "scene" and has_layout is False:
        raise TiledupError("sample.group_by: scene needs the demo layout (scenes are unknown for your "
                           "own images); use group_by: image")


def build_dataset(pairs_paths, layout_path, out_dir, *, pairs: int, seed: int, balance: bool, group_by: str,
                  fractions: dict, **unknown) -> dict:
    """Write {train,val,test}.parquet and counts.json to `out_dir`; return the counts.

    Keywords = the `sample` config block; `layout_path` is the demo layout or None.
    """
    if unknown:
        raise TiledupError(f"unknown sample option(s): {', '.join(sorted(unknown))}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or not isinstance(balance, bool):
        raise TiledupError(f"sample.seed must be an integer >= 0 and sample.balance true or false, "
                           f"got {seed!r} and {balance!r}")
    fractions = dict(fractions)
    check_sample_config(dict(pairs=pairs, group_by=group_by, fractions=fractions),
                        has_layout=layout_path is not None)
    table = read_pairs(pairs_paths)
    groups = _groups(table, group_by, layout_path)
    rng = np.random.default_rng(seed)
    is_dup = table["is_dup"].to_numpy(zero_copy_only=False)
    warnings: list[str] = []
    n_groups, needed = len(np.bincount(groups)), sum(fractions[s] > 0 for s in SPLITS)
    if group_by == "image" and 0 < n_groups < needed:
        # A folder of one or two usable chips still gets a model and a report: the packaged DupNet
        # is kept for so few pairs (train.min_pairs_finetune), and val serves only thresholds.
        warnings.append(f"{n_groups} {group_by}(s) cannot fill the {needed} splits: their pairs are spread "
                        "over the splits, which then share images")
        split = spread_pairs(is_dup, fractions, rng)
        split_of_group = np.full(n_groups, -1)
    else:
        split_of_group = assign_splits(np.bincount(groups), fractions, rng, group_by)
        split = split_of_group[groups]

    targets = _targets(pairs, fractions)
    chosen = {s: _sample(np.flatnonzero(split == k), is_dup, targets[s], balance, rng)
              for k, s in enumerate(SPLITS)}
    settings = dict(pairs=pairs, seed=seed, balance=balance, group_by=group_by, fractions=fractions)
    counts = {"settings": settings,
              "available": _counts(table, groups, np.arange(table.num_rows))}
    for k, s in enumerate(SPLITS):  # check every split before writing any
        if len(chosen[s]) == 0 and fractions[s] > 0:
            n_pairs, n_groups = int((split == k).sum()), int((split_of_group == k).sum())
            raise TiledupError(f"split {s} is empty (fraction {fractions[s]}, {n_pairs} pairs in its "
                               f"{n_groups} {group_by}(s)"
                               + (", one class missing with sample.balance" if balance else "") + ")")
        counts[s] = _counts(table, groups, chosen[s])
        if counts[s]["pairs"] and 0 in (counts[s]["dups"], counts[s]["nondups"]):
            warnings.append(f"split {s} holds one class only ({counts[s]['dups']} dups, "
                            f"{counts[s]['nondups']} non-dups)")
    got = sum(counts[s]["pairs"] for s in SPLITS)
    if got < pairs:
        warnings.append(f"sample.pairs = {pairs} asked, {got} used: all that exist"
                        + (" with equal classes" if balance else ""))
    out = Path(out_dir)
    for s in SPLITS:
        write_parquet(table.take(pa.array(chosen[s])), out / f"{s}.parquet")
    for w in warnings:
        log.warning("%s", w)
    counts["warnings"] = warnings
    write_json(counts, out / "counts.json")
    log.info("%s", ", ".join(f"{s} {counts[s]['pairs']} pairs ({counts[s]['dups']} dups, "
                             f"{counts[s]['groups']} {group_by}s)" for s in SPLITS))
    return counts


def read_pairs(paths) -> pa.Table:
    """All pair shards as one table sorted by (image_id, tile1, tile2); empty shards warn."""
    paths = list(paths)
    tables = []
    for path in paths:
        t = read_table(path, None, "pair table")
        missing = [c for c in PAIR_COLUMNS if c not in t.column_names]
        if missing:
            raise TiledupError(f"{path}: pair table lacks column(s) {', '.join(missing)}")
        if t.num_rows == 0:
            log.warning("%s: no pairs (every image of the shard rejected or solid)", path)
            continue
        if tables and not t.schema.equals(tables[0][1].schema):
            raise TiledupError(f"{path}: schema differs from {tables[0][0]}")
        tables.append((path, t))
    if not tables:
        raise TiledupError(f"no pairs in any of the {len(paths)} pair shard(s): "
                           f"{', '.join(map(str, paths))}")
    table = pa.concat_tables([t for _, t in tables]).combine_chunks()
    table = table.sort_by([("image_id", "ascending"), ("tile1", "ascending"), ("tile2", "ascending")])
    key = [table[c].to_numpy(zero_copy_only=False) for c in ("image_id", "tile1", "tile2")]
    same = np.ones(table.num_rows - 1, bool)
    for k in key:
        same &= k[1:] == k[:-1]
    if same.any():
        r = int(np.flatnonzero(same)[0])
        raise TiledupError(f"pair ({key[0][r]}, {key[1][r]}, {key[2][r]}) occurs twice: is image "
                           f"{key[0][r]} in two shards?")
    return table


def _groups(table: pa.Table, group_by: str, layout_path) -> np.ndarray:
    """Group code per row: the image, or the image's scene from the layout."""
    images = table["image_id"].dictionary_encode().combine_chunks()
    codes = images.indices.to_numpy()
    if group_by == "image":
        return codes
    if layout_path is None:
        raise TiledupError("sample.group_by: scene needs a layout (only the demo has one)")
    layout = read_table(layout_path, ["image_id", "scene"], "layout")
    pos = pc.index_in(images.dictionary, value_set=layout["image_id"].combine_chunks())
    if pos.null_count:
        absent = images.dictionary.filter(pc.is_null(pos)).to_pylist()
        raise TiledupError(f"{layout_path}: {len(absent)} image(s) not in the layout, e.g. "
                           f"{', '.join(absent[:5])}")
    scenes = layout["scene"].combine_chunks().take(pos).dictionary_encode().indices.to_numpy()
    return scenes[codes]


def assign_splits(sizes: np.ndarray, fractions: dict, rng: np.random.Generator, group_by: str,
                  to_train: np.ndarray | None = None) -> np.ndarray:
    """Split index (into SPLITS) per group, groups shuffled and cut near the target fractions.

    Groups marked in `to_train` go to train before the draw, the largest first, as long as one
    group is left to draw for every other split of a non-zero fraction. With none marked, the
    draw is the plain shuffle's.
    """
    g = len(sizes)
    needed = [s for s in FILL_ORDER if fractions[s] > 0]
    if g < len(needed):
        raise TiledupError(f"{g} {group_by}(s) cannot fill the {len(needed)} splits with a non-zero "
                           f"fraction ({', '.join(needed)})")
    first = np.zeros(g, bool)
    marked = np.flatnonzero(to_train) if to_train is not None and fractions["train"] > 0 else []
    if len(marked):  # largest first, equal sizes in a seeded order
        marked = marked[np.lexsort((rng.random(len(marked)), -sizes[marked]))]
        first[marked[:g - sum(s != "train" for s in needed)]] = True
    order = np.flatnonzero(~first)
    order = order[rng.permutation(len(order))]
    cum = np.concatenate([[0.0], np.cumsum(sizes[order]) / sizes.sum()])  # share before group k
    out = np.full(g, SPLITS.index("train"), np.int8)
    start, target = 0, 0.0
    for s in FILL_ORDER:
        if s == "train":
            end = len(order)
        elif fractions[s] == 0:
            end = start
        else:
            target += fractions[s]
            # at least one group, one left per later split (train needs none when it holds some already)
            later = sum(fractions[t] > 0 and not (t == "train" and first.any())
                        for t in FILL_ORDER[FILL_ORDER.index(s) + 1:])
            ks = np.arange(start + 1, len(order) - later + 1)
            end = int(ks[np.argmin(np.abs(cum[ks] - target))])
            target = cum[end]  # the next cut aims from where this one landed
        out[order[start:end]] = SPLITS.index(s)
        start = end
    return out


def spread_pairs(is_dup: np.ndarray, fractions: dict, rng: np.random.Generator) -> np.ndarray:
    """Split index per pair, each class cut over the splits near the fractions (too few images to keep
    each image's pairs in one split)."""
    split = np.empty(len(is_dup), np.int8)
    for cls in (True, False):
        rows = np.flatnonzero(is_dup == cls)
        split[rows] = assign_splits(np.ones(len(rows), np.int64), fractions, rng, "pair")
    return split


def _targets(pairs: int, fractions: dict) -> dict:
    """Pairs per split: rounded fractions of `pairs`, train takes the rounding rest."""
    t = {s: int(round(pairs * fractions[s])) for s in SPLITS if s != "train"}
    t["train"] = pairs - sum(t.values())
    return t


def _sample(rows: np.ndarray, is_dup: np.ndarray, n: int, balance: bool, rng) -> np.ndarray:
    """Sorted row indices of at most n pairs out of `rows` (equal classes with balance)."""
    if not balance:
        return np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False))
    dups, nondups = rows[is_dup[rows]], rows[~is_dup[rows]]
    k = min(n // 2, len(dups), len(nondups))  # an odd n loses one pair to keep the classes equal
    picked = [rng.choice(dups, size=k, replace=False), rng.choice(nondups, size=k, replace=False)]
    return np.sort(np.concatenate(picked))


def _counts(table: pa.Table, groups: np.ndarray, idx: np.ndarray) -> dict:
    is_dup = table["is_dup"].to_numpy(zero_copy_only=False)[idx]
    images = table["image_id"].take(pa.array(idx))
    return {"pairs": int(len(idx)), "dups": int(is_dup.sum()), "nondups": int((~is_dup).sum()),
            "images": int(pc.count_distinct(images).as_py()), "groups": int(len(np.unique(groups[idx])))}

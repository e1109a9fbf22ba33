"""Candidate overlaps across the whole dataset: near-duplicate tiles vote for the overlap they imply.

1. Tile matches, over every shard's tile table at once (multi-index hashing,
   tiledup.discovery.hash_search: every pair within a Hamming radius, sub-linear):
   - every tile with content against every other chip's, BlockMeanHash within
     `smooth_radius` (near-identical);
   - hashes with structure (`complexity` >= `min_complexity`; a straight edge,
     i.e. a smooth gradient of open sea or a border, has none) within `radius`,
     solid tiles included: a hazy tile flagged solid in one chip still matches
     its duplicate. Two solid tiles place chips but never vote;
   - tiles with content and equal pixel digests match for certain;
   - near-flat tiles (content, grey std below `texture_std`), whose hash is
     mostly JPEG noise, by the correlation of their fine structure, at least
     `flat_corr`, exactly (tiledup.discovery.flat_search); a tile correlating
     with more than `flat_max_matches` others is common and left out.
   A key shared by more than `bucket_cap` / `repeat_cap` tiles (cloud white,
   no-data black, a repeated gradient) is not searched all against all: its
   pairs are found through their other keys, and a match found only that way
   (common hashes) votes but does not place chips. A
   tile with more than `max_matches` matches has a common hash: its matches are
   dropped (pixel-identical ones kept).
2. Votes. A match of tile i of chip a with tile j of chip b says that b sits
   (row_i - row_j, col_i - col_j) tiles from a: it votes for that one overlap.
   A lone match (one vote, pixel digests not equal) is not a candidate when
   another tile pair of its overlap contradicts it: both sides with texture
   (grey std >= `texture_std`) and hashes more than `contradict_radius` bits
   apart. A duplicate's textured tile pairs match; lone look-alike matches
   (mostly on dark sea) were about half the candidates of a 2,000-chip
   development demo.
3. Placement. Chips of one acquisition sit on one lattice. Components of chips
   (at first single chips) are joined, strongest first, when at least
   `place_votes` distinct matching tiles with structure agree on their relative
   position, or one decisive match does (equal digests, or a distance within
   `strong_ratio` x its complexity); a join that contradicts earlier ones is
   refused. Rounds repeat until nothing joins. Then a chip still alone joins
   the one position its close matches support most.
4. Implied overlaps. Every pair of chips placed in one component whose
   positions overlap is a candidate too, with or without a tile match
   (`implied: false` leaves this step out).

Output (candidates.parquet), one row per overlap, img1 < img2, sorted:
img1, img2, tag (in img1's terms), votes (tile matches for it), exact_votes
(those with equal pixel digests), best_distance (smallest Hamming distance of
its matches; null if none), how ("hash": at least one tile match; "implied").
"""

from __future__ import annotations

import inspect
import logging
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from tiledup.run.errors import TiledupError
from tiledup.grid import GRID, N_TILES, OFFSETS, tag_tile_pairs
from tiledup.run.io import write_parquet
from tiledup.discovery.lattice import TAG_BY_INDEX, Lattice, canonical_offsets, offset_index
from tiledup.discovery.flat_search import flat_matches
from tiledup.discovery.hash_search import equal_pairs, near_pairs
from tiledup.tiles.hamming import as_words, hamming
from tiledup.tiles.table import TileHashes, read_tile_hashes

log = logging.getLogger(__name__)

CANDIDATE_SCHEMA = pa.schema([
    ("img1", pa.string()),
    ("img2", pa.string()),
    ("tag", pa.string()),
    ("votes", pa.int32()),
    ("exact_votes", pa.int32()),
    ("best_distance", pa.int16()),
    ("how", pa.string()),
])
HOW = ("hash", "implied")


def complexity(bmh: np.ndarray) -> np.ndarray:
    """How much structure a BlockMeanHash has: changes between neighbouring blocks beyond the first
    along each row and each column of its 16 x 16 blocks.

    A straight edge (a brightness gradient of open sea, a border) crosses each row and column at
    most once: 0, wherever and however it runs; a blurred edge a few; texture about 200. Hashes
    of smooth tiles are alike all over a dataset, so their matches say little about place.
    bmh: (n, 32) uint8, block bits row-major, least significant bit first, so each
    little-endian uint16 is one row of blocks (bit c = block column c).
    """
    rows = np.ascontiguousarray(bmh).view("<u2")  # (n, 16)
    cols = np.zeros_like(rows)  # transpose the 16 x 16 bit grid: cols[:, c] bit r = rows[:, r] bit c
    for r in range(16):
        for c in range(16):
            cols[:, c] |= ((rows[:, r] >> c) & 1) << r
    out = np.zeros(len(rows), np.int32)
    for lines in (rows, cols):
        changes = np.bitwise_count((lines ^ (lines >> 1)) & 0x7FFF).astype(np.int32)  # per row / column
        out += np.maximum(changes - 1, 0).sum(axis=1)
    return out


# ---------------------------------------------------------------- votes

def tile_offsets(tile_a: np.ndarray, tile_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dr, dc) of chip b from chip a when tile_a of a and tile_b of b show the same ground."""
    tile_a, tile_b = tile_a.astype(np.int64), tile_b.astype(np.int64)
    return tile_a // GRID - tile_b // GRID, tile_a % GRID - tile_b % GRID


def votes(h: TileHashes, matches: pd.DataFrame, crowded_votes: int, contradict_radius: int,
          texture_std: float) -> tuple[pd.DataFrame, int]:
    """Tile matches -> one row per overlap: img1 < img2 (indices), offset, votes, exact_votes, best_distance;
    and how many lone matches a textured tile pair contradicted (module doc, step 2).

    An overlap whose every match was found only through crowded keys needs crowded_votes of them.
    """
    matches = matches[~matches.both_solid]  # no evidence for verify; they only place chips
    u, v = matches.u.to_numpy(), matches.v.to_numpy()
    dr, dc = tile_offsets(h.tile[u], h.tile[v])
    a, b, dr, dc = canonical_offsets(h.image[u], h.image[v], dr, dc)
    df = pd.DataFrame({"img1": a, "img2": b, "offset": offset_index(dr, dc),
                       "distance": matches.distance.to_numpy(), "exact": matches.exact.to_numpy(),
                       "crowded": matches.crowded_only.to_numpy()})
    out = df.groupby(["img1", "img2", "offset"], sort=True).agg(
        votes=("distance", "size"), exact_votes=("exact", "sum"), best_distance=("distance", "min"),
        crowded=("crowded", "all"))
    out = out[~out.crowded | (out.votes >= crowded_votes)].drop(columns="crowded").reset_index()
    lone = np.flatnonzero((out.votes == 1).to_numpy() & (out.exact_votes == 0).to_numpy())
    drop = lone[contradicted(h, out.img1.to_numpy()[lone], out.img2.to_numpy()[lone],
                             out.offset.to_numpy()[lone], contradict_radius, texture_std)]
    return out.drop(index=drop).reset_index(drop=True), len(drop)


def contradicted(h: TileHashes, img1: np.ndarray, img2: np.ndarray, offset: np.ndarray, radius: int,
                 texture_std: float) -> np.ndarray:
    """(n,) bool: overlaps (image indices, offset index) with a tile pair whose sides both have texture
    (not solid, grey std >= texture_std) and whose hashes are more than `radius` bits apart."""
    words = np.zeros((len(h.image_ids), N_TILES, 4), np.uint64)  # per image and tile: its hash
    words[h.image, h.tile] = as_words(h.bmh)
    textured = np.zeros((len(h.image_ids), N_TILES), bool)
    textured[h.image, h.tile] = ~h.solid & (h.grey_std >= texture_std)
    out = np.zeros(len(img1), bool)
    for k in np.unique(offset):
        rows = np.flatnonzero(offset == k)
        a, b = img1[rows], img2[rows]
        for ta, tb in tag_tile_pairs(TAG_BY_INDEX[k]):
            both = textured[a, ta] & textured[b, tb]
            far = hamming(words[a[both], ta], words[b[both], tb]) > radius
            out[rows[both][far]] = True
    return out


# ---------------------------------------------------------------- placement

def place(matches: pd.DataFrame, h: TileHashes, place_votes: int, smooth_radius: int) -> tuple[Lattice, dict]:
    """Join chips into lattice components, strongest evidence first (see module doc, step 3)."""
    lattice = Lattice(len(h.image_ids))
    stats = {"rounds": 0, "joins": 0, "refused": 0}
    placing = matches[matches.placing]
    while True:
        joined = 0
        for x, y, r, c in _joins(lattice, h, placing, place_votes).iloc[:, :4].itertuples(index=False):
            status = lattice.union(x, y, r, c)
            joined += status == "joined"
            stats["refused"] += status == "conflict"
        stats["rounds"] += 1
        stats["joins"] += joined
        if not joined:
            break
    # A chip still alone joins the position its close matches (near-identical smooth ones too)
    # support most, if that position is unique: a mistake costs this chip's implied overlaps, never
    # a wrong join of two larger components.
    close = matches[matches.decisive | (matches.distance <= smooth_radius)]
    joins = _joins(lattice, h, close, 1)
    lone = np.where(lattice.size[joins.r1] == 1, joins.r1, np.where(lattice.size[joins.r2] == 1, joins.r2, -1))
    joins = joins.assign(lone=lone)[lone >= 0]
    best = joins[joins.support == joins.groupby("lone").support.transform("max")]
    best = best[best.groupby("lone").support.transform("size") == 1]
    stats["lone_joins"] = sum(lattice.union(x, y, r, c) == "joined"
                              for x, y, r, c in best[["r1", "r2", "dr", "dc"]].itertuples(index=False))
    return lattice, stats


def _joins(lattice: Lattice, h: TileHashes, matches: pd.DataFrame, min_support: int) -> pd.DataFrame:
    """Joins between components with at least min_support: r1 < r2 (roots), dr, dc (r2 from r1), strongest first.

    The support of a join is the number of distinct ground tiles (in r1's frame) that
    matched at that relative position: one tile matching several duplicates of one place
    is one piece of evidence, not several. A decisive match gives enough support alone.
    """
    u, v = matches.u.to_numpy(), matches.v.to_numpy()
    ta, tb = h.tile[u].astype(np.int64), h.tile[v].astype(np.int64)
    dr, dc = tile_offsets(ta, tb)
    ra, pr, pc_ = lattice.find_all(h.image[u])
    rb, qr, qc = lattice.find_all(h.image[v])
    between = ra != rb
    swap = (ra > rb)[between]
    # position of root b relative to root a, and the matched ground tile in the first root's frame
    rel_r, rel_c = (pr + dr - qr)[between], (pc_ + dc - qc)[between]
    ground_r = np.where(swap, (qr + tb // GRID)[between], (pr + ta // GRID)[between])
    ground_c = np.where(swap, (qc + tb % GRID)[between], (pc_ + ta % GRID)[between])
    joins = pd.DataFrame({
        "r1": np.where(swap, rb[between], ra[between]), "r2": np.where(swap, ra[between], rb[between]),
        "dr": np.where(swap, -rel_r, rel_r), "dc": np.where(swap, -rel_c, rel_c),
        "ground": ground_r * (1 << 32) + ground_c, "decisive": matches.decisive.to_numpy()[between]})
    joins = joins.groupby(["r1", "r2", "dr", "dc"], sort=False).agg(
        support=("ground", "nunique"), decisive=("decisive", "any")).reset_index()
    joins["support"] = np.where(joins.decisive, np.maximum(joins.support, min_support), joins.support)
    joins = joins[joins.support >= min_support].sort_values(
        ["support", "r1", "r2", "dr", "dc"], ascending=[False, True, True, True, True])
    return joins[["r1", "r2", "dr", "dc", "support"]].astype(
        {"r1": int, "r2": int, "dr": int, "dc": int})


def implied_pairs(lattice: Lattice) -> pd.DataFrame:
    """Every pair of chips placed in one component whose positions overlap: img1 < img2, offset."""
    root, row, col = lattice.positions()
    placed = np.bincount(root, minlength=len(root))[root] > 1
    chips = pd.DataFrame({"root": root[placed], "row": row[placed], "col": col[placed],
                          "chip": np.flatnonzero(placed)})
    found = []
    for dr, dc in OFFSETS:
        if (dr, dc) < (0, 0):
            continue  # each unordered pair once: offsets (0, 0) and the 12 "after" it
        shifted = chips.assign(row=chips.row - dr, col=chips.col - dc)  # the chip seen from a partner at -(dr, dc)
        pairs = chips.merge(shifted, on=["root", "row", "col"], suffixes=("_a", "_b"))
        if (dr, dc) == (0, 0):
            pairs = pairs[pairs.chip_a < pairs.chip_b]
        a, b = pairs.chip_a.to_numpy(), pairs.chip_b.to_numpy()
        n = len(a)
        a, b, r, c = canonical_offsets(a, b, np.full(n, dr), np.full(n, dc))
        found.append(pd.DataFrame({"img1": a, "img2": b, "offset": offset_index(r, c)}))
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["img1", "img2", "offset"])


# ---------------------------------------------------------------- the rule

def search(h: TileHashes, *, radius: int, smooth_radius: int, min_complexity: int, strong_ratio: float,
           bucket_cap: int, repeat_cap: int, max_matches: int, texture_std: float, flat_corr: float,
           flat_max_matches: int) -> tuple[pd.DataFrame, dict]:
    """Tile matches of the whole dataset (see module doc, step 1), one row per pair of tiles u < v.

    Columns u, v (rows of h), distance, exact (equal digests), placing (may place chips:
    exact, or both hashes have min_complexity and some search found the pair through a key
    under its bucket cap), decisive (places chips alone: exact, or
    distance <= strong_ratio x the smaller complexity), both_solid (places chips, never votes).
    """
    n = len(h.image)
    cx = complexity(h.bmh)  # per tile
    content = ~h.solid
    found, stats = [], {"tiles": n, "solid": int(h.solid.sum()),
                        "smooth": int((content & (cx < min_complexity)).sum())}

    def run(name, rows, matches):
        found.append((rows[matches.i], rows[matches.j], matches.distance, matches.deferred))
        stats[name] = {"tiles": int(len(rows)), "tables": matches.tables, "collisions": matches.collisions,
                       "skipped_buckets": matches.skipped_buckets, "deferred": int(matches.deferred.sum()),
                       "matches": int(len(matches.i)),
                       "seconds": round(matches.seconds, 1)}

    # a hash that more than repeat_cap tiles share exactly is common: left out of both searches
    words = h.bmh.view(np.uint64)
    _, inverse, counts = np.unique(words, axis=0, return_inverse=True, return_counts=True)
    repeated = counts[inverse.ravel()] > repeat_cap
    stats["repeated"] = int(repeated.sum())
    rows = np.flatnonzero(content & ~repeated)
    run("near_identical", rows, near_pairs(h.bmh[rows], smooth_radius, repeat_cap, group=h.image[rows], per_key=3))
    rows = np.flatnonzero((cx >= min_complexity) & ~repeated)  # solid tiles too: a hazy one has structure
    run("structured", rows, near_pairs(h.bmh[rows], radius, bucket_cap, group=h.image[rows]))
    rows = np.flatnonzero(content)
    i, j, skipped = equal_pairs(h.digest[rows], repeat_cap, group=h.image[rows])
    found.append((rows[i], rows[j], np.zeros(len(i), np.int16), np.zeros(len(i), bool)))
    stats["equal_digests"] = {"matches": int(len(i)), "skipped_buckets": skipped}
    rows = np.flatnonzero(content & (h.grey_std < texture_std))
    start = time.perf_counter()
    i, j, _ = flat_matches(h.flat_signatures(rows), h.image[rows], flat_corr, flat_max_matches)
    a, b = rows[i], rows[j]  # their hashes' distance, as for every other match
    found.append((a, b, hamming(as_words(h.bmh[a]), as_words(h.bmh[b])).astype(np.int16), np.zeros(len(i), bool)))
    stats["near_flat"] = {"tiles": int(len(rows)), "matches": int(len(i)),
                          "seconds": round(time.perf_counter() - start, 1)}

    # one row per tile pair (the searches overlap); the distance is the same in each
    key, first, inverse = np.unique(np.concatenate([u * n + v for u, v, _, _ in found]), return_index=True,
                                    return_inverse=True)
    u, v = key // n, key % n
    dist = np.concatenate([d for _, _, d, _ in found]).astype(np.int16)[first]
    # found only through crowded keys (every search that found it): hashes common enough to
    # crowd a bucket vote for an overlap but do not place chips (measured: placing with them
    # joined chips of other scenes, development demo seed 1: 5,447 misplaced candidates)
    crowded_only = np.ones(len(key), bool)
    np.logical_and.at(crowded_only, inverse.ravel(), np.concatenate([late for _, _, _, late in found]))
    exact = (h.digest[u] == h.digest[v]).all(axis=1)
    # a tile matching more tiles than one place can show (9 chips per pass, a few passes) has a
    # common hash: its matches say nothing about where it is (pixel-identical ones excepted)
    common_tile = np.bincount(np.r_[u, v], minlength=n) > max_matches
    keep = exact | ~(common_tile[u] | common_tile[v])
    stats["common_tiles"] = int(common_tile.sum())
    u, v, dist, exact, crowded_only = u[keep], v[keep], dist[keep], exact[keep], crowded_only[keep]
    structure = np.minimum(cx[u], cx[v])
    placing = exact | ((structure >= min_complexity) & ~crowded_only)
    decisive = exact | (placing & (dist <= strong_ratio * structure))
    stats.update(tile_matches=int(len(u)), placing=int(placing.sum()), decisive=int(decisive.sum()),
                 crowded_only=int(crowded_only.sum()))
    return pd.DataFrame({"u": u, "v": v, "distance": dist, "exact": exact, "placing": placing,
                         "decisive": decisive, "both_solid": h.solid[u] & h.solid[v],
                         "crowded_only": crowded_only}), stats


def check_options(radius, smooth_radius, min_complexity, strong_ratio, bucket_cap, repeat_cap, max_matches,
                  place_votes, crowded_votes, contradict_radius, texture_std, flat_corr, flat_max_matches) -> None:
    if not (0 <= smooth_radius <= radius <= 40 and 0 <= min_complexity <= 448 and strong_ratio >= 0
            and bucket_cap >= 2 and repeat_cap >= 2 and max_matches >= 1 and place_votes >= 1
            and crowded_votes >= 1 and radius <= contradict_radius <= 256 and texture_std >= 0
            and 0 < flat_corr <= 1 and flat_max_matches >= 1):
        raise TiledupError(
            "candidates options: need 0 <= smooth_radius <= radius <= 40, 0 <= min_complexity <= 448, "
            "strong_ratio >= 0, bucket_cap >= 2, repeat_cap >= 2, max_matches >= 1, place_votes >= 1, "
            "crowded_votes >= 1, radius <= contradict_radius <= 256, texture_std >= 0, 0 < flat_corr <= 1, "
            "flat_max_matches >= 1; got "
            f"radius={radius}, smooth_radius={smooth_radius}, min_complexity={min_complexity}, "
            f"strong_ratio={strong_ratio}, bucket_cap={bucket_cap}, repeat_cap={repeat_cap}, "
            f"max_matches={max_matches}, place_votes={place_votes}, crowded_votes={crowded_votes}, "
            f"contradict_radius={contradict_radius}, texture_std={texture_std}, flat_corr={flat_corr}, "
            f"flat_max_matches={flat_max_matches}")


def candidates(h: TileHashes, *, radius: int, smooth_radius: int, min_complexity: int, strong_ratio: float,
               bucket_cap: int, repeat_cap: int, max_matches: int, place_votes: int,
               crowded_votes: int, contradict_radius: int, texture_std: float, flat_corr: float,
               flat_max_matches: int, implied: bool) -> tuple[pd.DataFrame, dict]:
    """Candidate overlaps of the tiles in h: img1 < img2 (indices), offset, votes, exact_votes,
    best_distance (-1: none), how; and counters for the log."""
    check_options(radius, smooth_radius, min_complexity, strong_ratio, bucket_cap, repeat_cap, max_matches,
                  place_votes, crowded_votes, contradict_radius, texture_std, flat_corr, flat_max_matches)
    matches, stats = search(h, radius=radius, smooth_radius=smooth_radius, min_complexity=min_complexity,
                            strong_ratio=strong_ratio, bucket_cap=bucket_cap, repeat_cap=repeat_cap,
                            max_matches=max_matches, texture_std=texture_std, flat_corr=flat_corr,
                            flat_max_matches=flat_max_matches)
    found, stats["contradicted"] = votes(h, matches, crowded_votes, contradict_radius, texture_std)
    found = found.assign(how="hash")
    lattice, stats["placement"] = place(matches, h, place_votes, smooth_radius)
    if implied:
        more = implied_pairs(lattice).merge(found[["img1", "img2", "offset"]], how="left", indicator=True)
        more = more[more._merge == "left_only"].drop(columns="_merge")
        found = pd.concat([found, more.assign(votes=0, exact_votes=0, best_distance=-1, how="implied")],
                          ignore_index=True)
    return found, stats


def find_candidates(tiles_paths, out_path, **options) -> pa.Table:
    """The `candidates` rule: every shard's tile table -> candidates.parquet (options: the config block)."""
    unknown = sorted(set(options) - set(inspect.signature(candidates).parameters) - {"h"})
    if unknown:
        raise TiledupError(f"unknown `candidates` config key(s): {', '.join(unknown)}")
    start = time.perf_counter()
    h = read_tile_hashes(tiles_paths)
    log.info("read %d tiles of %d images from %d shard(s) in %.1f s", len(h.image), len(h.image_ids),
             len(tiles_paths), time.perf_counter() - start)
    found, stats = candidates(h, **options)
    for key, value in stats.items():
        log.info("%s: %s", key, value)
    table = candidates_table(found, h.image_ids)
    write_parquet(table, out_path)
    how = found.how.value_counts()
    log.info("%d candidate overlaps (%s) of %d images in %.1f s", table.num_rows,
             ", ".join(f"{k}: {how.get(k, 0)}" for k in HOW), len(h.image_ids), time.perf_counter() - start)
    return table


def placing_overlaps(votes: np.ndarray, how: np.ndarray, exact_votes: np.ndarray, place_votes: int) -> np.ndarray:
    """Which candidate overlaps place their chips on one lattice, read off the candidates table:
    place_votes tile matches or more, implied by the lattice, or equal pixel digests. A lone tile
    match may be a look-alike anywhere (the groups' same place; verify's chip order)."""
    return (np.asarray(votes) >= place_votes) | (np.asarray(how) == "implied") | (np.asarray(exact_votes) > 0)


def candidates_table(found: pd.DataFrame, image_ids: np.ndarray) -> pa.Table:
    """Index-based overlaps -> the candidates table (image ids, tags), sorted by img1, img2, tag."""
    best = found.best_distance.to_numpy(np.int16)
    table = pa.table({
        "img1": pa.array(image_ids[found.img1.to_numpy()], pa.string()),
        "img2": pa.array(image_ids[found.img2.to_numpy()], pa.string()),
        "tag": pa.array(TAG_BY_INDEX[found.offset.to_numpy()], pa.string()),
        "votes": pa.array(found.votes.to_numpy(np.int32), pa.int32()),
        "exact_votes": pa.array(found.exact_votes.to_numpy(np.int32), pa.int32()),
        "best_distance": pa.array(best, pa.int16(), mask=best < 0),
        "how": pa.array(found.how.to_numpy(str), pa.string()),
    }, schema=CANDIDATE_SCHEMA)
    return table.sort_by([("img1", "ascending"), ("img2", "ascending"), ("tag", "ascending")])

"""Multi-index hashing: every pair of binary codes within a Hamming radius, without comparing all pairs.

Pigeonhole: cut the codes into m >= radius + j blocks of (nearly) equal width.
Two codes at distance <= radius differ in at most `radius` blocks, so at least
j of their blocks are equal. Each set of j blocks gives one table keyed by
those blocks' bits; codes that share a key are verified with a popcount. Every
pair within the radius is found, exactly, and reported once: by the first j
blocks it agrees on. j = 2 (`per_key`) by default. The cost is C(m, 2) sorts of the codes plus the
verified collisions, so it grows with the radius; keys of two blocks
(2 x 256 / m bits) keep chance collisions rare up to a radius of about 20 on
256-bit codes.

A key shared by more than `bucket_cap` codes (a hash many tiles have: flat
gradients, repeated texture) is skipped rather than expanded into all its
pairs. A pair whose first agreeing blocks key such a crowded bucket is then
reported by the first later table that keys it to a bucket under the cap, once:
each code remembers which tables crowded it (one bit per table), and a pair is
reported by table t when t keys it to an uncrowded bucket and every earlier
table that also keys the pair together crowded it. So no pair is lost because
its first key is crowded; only a pair every one of whose agreeing keys is
crowded is not searched (both codes then share all those keys with more than
`bucket_cap` others). `Matches.deferred` marks the pairs found that way,
`Matches.crowded` marks the codes some table crowded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from tiledup.run.progress import Progress
from tiledup.tiles.hamming import as_words, hamming

log = logging.getLogger(__name__)

CHUNK = 1 << 21  # colliding pairs verified at once (bounds memory: ~100 bytes per pair)
MAX_KEY_BITS = 64


@dataclass
class Matches:
    """Pairs (i < j, the caller's row numbers) within the radius, their distances, and counters."""

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray
    tables: int
    collisions: int  # pairs that shared a key (verified, before the radius check and dedup)
    skipped_buckets: int  # keys shared by more than bucket_cap codes (summed over tables)
    crowded: np.ndarray  # (n,) bool: the code shares some key with more than bucket_cap codes
    deferred: np.ndarray  # (pairs,) bool: reported by a later table, their first agreeing keys crowded
    seconds: float


def blocks(codes: np.ndarray, m: int) -> np.ndarray:
    """(n, bytes) uint8 codes cut into m blocks of nearly equal width -> (n, m) uint64 block values."""
    n, nbytes = codes.shape
    bits = 8 * nbytes
    if not 2 <= m <= bits:
        raise ValueError(f"cannot cut {bits}-bit codes into {m} blocks")
    edges = np.linspace(0, bits, m + 1).round().astype(int)
    if np.diff(edges).max() > MAX_KEY_BITS:
        raise ValueError(f"{m} blocks of {bits}-bit codes are wider than {MAX_KEY_BITS} bits")
    out = np.zeros((n, m), np.uint64)
    for k in range(m):
        value = np.zeros(n, np.uint64)
        for b in range(edges[k], edges[k + 1]):  # bit b = bit (7 - b % 8) of byte b // 8, as np.unpackbits
            bit = (codes[:, b >> 3] >> np.uint8(7 - (b & 7))) & np.uint8(1)
            value = (value << np.uint64(1)) | bit.astype(np.uint64)
        out[:, k] = value
    return out


def _buckets(sorted_keys: np.ndarray, bucket_cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Runs of >= 2 equal keys with at most bucket_cap members (starts, sizes); the positions in
    runs over the cap (crowded: a mask) and how many such runs there are."""
    n = len(sorted_keys)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(n, bool), 0
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, n])
    over = sizes > bucket_cap
    use = (sizes >= 2) & ~over
    return starts[use], sizes[use], np.repeat(over, sizes), int(over.sum())


def _pairs_in(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (p, q), p < q, of positions inside the same run."""
    total = int(sizes.sum())
    pos = np.repeat(starts, sizes) + (np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    later = np.repeat(starts + sizes, sizes) - pos - 1  # members after each position in its run
    p = np.repeat(pos, later)
    q = p + 1 + (np.arange(len(p)) - np.repeat(np.cumsum(later) - later, later))
    return p, q


def _chunks(sizes: np.ndarray):
    """Slices of consecutive runs holding about CHUNK pairs each (a larger run alone)."""
    pairs = sizes * (sizes - 1) // 2
    chunk = (np.cumsum(pairs) - pairs) // CHUNK
    edges = np.r_[0, np.flatnonzero(np.diff(chunk)) + 1, len(sizes)]
    for a, b in zip(edges[:-1], edges[1:]):
        yield slice(int(a), int(b))


def _same_key_pairs(starts: np.ndarray, sizes: np.ndarray, order: np.ndarray, group):
    """Chunks of (a, b) row pairs in the same run (runs of sorted positions; order: their rows),
    pairs of one group left out."""
    for part in _chunks(sizes):
        p, q = _pairs_in(starts[part], sizes[part])
        a, b = order[p], order[q]
        if group is not None:
            other = group[a] != group[b]
            a, b = a[other], b[other]
        yield a, b


def equal_pairs(keys: np.ndarray, bucket_cap: int, group: np.ndarray | None = None):
    """Every pair of rows (i < j) with equal keys ((n, w) uint64, e.g. pixel digests), buckets capped.

    Returns (i, j, skipped buckets).
    """
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    order = np.lexsort(keys.T[::-1])
    sorted_keys = keys[order]
    # one int per distinct key, in sorted order, so runs of equal keys are runs of equal ints
    ids = np.cumsum(np.r_[True, (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)])
    starts, sizes, _, skipped = _buckets(ids, bucket_cap)
    found_i, found_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for a, b in _same_key_pairs(starts, sizes, order, group):
        found_i.append(np.minimum(a, b))
        found_j.append(np.maximum(a, b))
    return np.concatenate(found_i), np.concatenate(found_j), skipped


def _key(blk: np.ndarray, combo: tuple[int, ...], width: np.ndarray) -> tuple[np.ndarray, bool]:
    """Table key of each code: its blocks `combo` concatenated (exact if it fits 64 bits, else mixed)."""
    if width[list(combo)].sum() <= MAX_KEY_BITS:
        key = np.zeros(len(blk), np.uint64)
        for k in combo:
            key = (key << np.uint64(width[k])) | blk[:, k]
        return key, True
    key = np.zeros(len(blk), np.uint64)
    for k, mult in zip(combo, MIX):  # equal blocks give equal keys; other collisions are verified
        key ^= blk[:, k] * mult
    return key, False


MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9),
       np.uint64(0xD6E8FEB86659FD93))


def near_pairs(codes: np.ndarray, radius: int, bucket_cap: int, group: np.ndarray | None = None,
               per_key: int = 2) -> Matches:
    """Every pair of rows of `codes` ((n, bytes) uint8) within `radius` bits, except pairs of one group.

    per_key: blocks per table key (m = radius + per_key blocks, C(m, per_key) tables). 2 keeps
    the tables few; 3 makes keys longer, so that a bucket holds only codes that agree on
    many bits (near-identical ones) rather than every code sharing two short blocks.
    group: optional (n,) ints; rows of one group (tiles of one chip) are never paired.
    """
    start = time.perf_counter()
    n, nbytes = codes.shape
    bits = 8 * nbytes
    if radius < 0 or not 2 <= per_key <= len(MIX) or radius + per_key > bits:
        raise ValueError(f"radius {radius} / {per_key} blocks per key out of range for {bits}-bit codes")
    m = max(radius + per_key, -(-bits // MAX_KEY_BITS))  # blocks of at most 64 bits
    if per_key == 2:
        m = max(m, -(-2 * bits // MAX_KEY_BITS))  # two blocks fit one exact 64-bit key
    words = as_words(codes)
    blk = blocks(codes, m)
    width = np.diff(np.linspace(0, bits, m + 1).round().astype(int))
    row_bits = max(1, int(n - 1).bit_length())
    found_i, found_j, found_d = [], [], []
    found_late = []
    collisions = skipped = 0
    tables = list(combinations(range(m), per_key))
    crowded_in = np.zeros((n, -(-len(tables) // 8)), np.uint8)  # bit t: table t crowded the code
    table_of = np.zeros((m,) * per_key, np.int64)  # blocks -> their table's index
    for t, combo in enumerate(tables):
        table_of[combo] = t
    progress = Progress(f"hash search within {radius} bits", len(tables), "tables", log=log)
    for t, combo in enumerate(tables):
        key, exact = _key(blk, combo, width)
        if not exact or width[list(combo)].sum() + row_bits <= 64:
            # key (a mixed key: its top bits) and row packed into one word: one sort, ~10x faster
            if not exact:
                key = key >> np.uint64(row_bits)
            packed = np.sort((key << np.uint64(row_bits)) | np.arange(n, dtype=np.uint64))
            order = (packed & np.uint64((1 << row_bits) - 1)).astype(np.int64)
            key = packed >> np.uint64(row_bits)
        else:
            order = np.argsort(key, kind="stable")
            key = key[order]
        starts, sizes, over, n_over = _buckets(key, bucket_cap)
        crowded_in[order[over], t >> 3] |= np.uint8(1 << (t & 7))
        skipped += n_over
        for a, b in _same_key_pairs(starts, sizes, order, group):
            collisions += len(a)
            d = hamming(words[a], words[b])
            near = d <= radius
            a, b, d = a[near], b[near], d[near]
            # report once: only from the first blocks the two codes agree on (and really agree: a
            # mixed key can collide)
            equal = blk[a] == blk[b]
            agree = np.cumsum(equal, axis=1)
            first = np.ones(len(a), bool)
            for rank, k in enumerate(combo, 1):
                first &= equal[:, k] & (agree[:, k] == rank)
            # ... or from the first table that did not crowd them, when every earlier one did
            # (only a pair whose first agreeing table crowded it can be one: a cheap test first)
            later = np.flatnonzero(~first & equal[:, list(combo)].all(axis=1)) if skipped else []
            if len(later):
                first_t = table_of[tuple(np.argmax(agree[later] >= r, axis=1) for r in range(1, per_key + 1))]
                bit = (crowded_in[a[later], first_t >> 3] >> (first_t & 7).astype(np.uint8)) & 1
                later = later[bit.astype(bool)]
            late = np.zeros(len(a), bool)
            if len(later):
                late[later[_earlier_keys_crowded(equal[later], crowded_in[a[later]], tables[:t])]] = True
            first |= late
            found_late.append(late[first])
            found_i.append(np.minimum(a[first], b[first]))
            found_j.append(np.maximum(a[first], b[first]))
            found_d.append(d[first])
        progress.update()
    progress.done()
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))
    return Matches(cat(found_i, np.int64), cat(found_j, np.int64), cat(found_d, np.int16), len(tables),
                   collisions, skipped, crowded_in.any(axis=1), cat(found_late, bool), time.perf_counter() - start)


def _earlier_keys_crowded(equal: np.ndarray, crowded_in: np.ndarray, earlier: list[tuple[int, ...]],
                          block: int = 1 << 15) -> np.ndarray:
    """Pairs (equal: (p, m) blocks that agree; crowded_in: (p, bytes) a code's table bits) whose every
    earlier table keying both codes alike crowded them: (p,) bool."""
    if not earlier:
        return np.zeros(len(equal), bool)
    combos = np.array(earlier)
    out = np.empty(len(equal), bool)
    for s in range(0, len(equal), block):  # bounded memory: block x tables x per_key
        agree = equal[s:s + block][:, combos].all(axis=2)  # (p, tables before)
        bits = np.unpackbits(crowded_in[s:s + block], axis=1, bitorder="little")[:, : len(earlier)]
        out[s:s + block] = ~(agree & ~bits.astype(bool)).any(axis=1)
    return out

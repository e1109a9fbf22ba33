"""Multi-index hashing: exactly the pairs within the radius, each once, buckets capped."""

import numpy as np
import pytest

from tiledup.discovery.hash_search import as_words, blocks, equal_pairs, hamming, near_pairs


def codes_with_near_copies(rng, n=1500, flips=30):
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    for k in range(0, n // 2, 2):  # every other row of the first half: a noisy copy of the row before
        bits = np.unpackbits(codes[k])
        bits[rng.choice(256, rng.integers(0, flips), replace=False)] ^= 1
        codes[k + 1] = np.packbits(bits)
    return codes


def brute_force(codes, radius, group=None):
    words = as_words(codes)
    i, j = np.triu_indices(len(codes), 1)
    d = hamming(words[i], words[j])
    keep = d <= radius
    if group is not None:
        keep &= group[i] != group[j]
    return set(zip(i[keep].tolist(), j[keep].tolist(), d[keep].tolist()))


@pytest.mark.parametrize("radius, per_key", [(0, 2), (3, 2), (6, 2), (14, 2), (20, 2), (0, 3), (4, 3), (9, 3)])
def test_exactly_the_pairs_within_the_radius_each_once(radius, per_key):
    codes = codes_with_near_copies(np.random.default_rng(radius))
    m = near_pairs(codes, radius, bucket_cap=10**9, per_key=per_key)
    found = list(zip(m.i.tolist(), m.j.tolist(), m.distance.tolist()))
    assert len(found) == len(set(found))  # reported once, by the first pair of blocks that agree
    assert set(found) == brute_force(codes, radius)
    assert (m.i < m.j).all()


def test_pairs_of_one_group_are_left_out():
    codes = codes_with_near_copies(np.random.default_rng(1))
    group = np.arange(len(codes)) // 4  # rows 0-3 one "chip", ...
    m = near_pairs(codes, 14, bucket_cap=10**9, group=group)
    assert set(zip(m.i.tolist(), m.j.tolist(), m.distance.tolist())) == brute_force(codes, 14, group)
    assert not (group[m.i] == group[m.j]).any()


def test_a_key_shared_by_too_many_codes_is_skipped_not_expanded():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, (600, 32), dtype=np.uint8)
    codes[:300] = codes[0]  # one hash 300 times: 44,850 pairs all against all
    codes[400] = codes[401]  # a real pair elsewhere
    m = near_pairs(codes, 6, bucket_cap=100)
    pairs = set(zip(m.i.tolist(), m.j.tolist()))
    assert (400, 401) in pairs
    assert not any(i < 300 and j < 300 for i, j in pairs)
    assert m.skipped_buckets > 0
    uncapped = near_pairs(codes, 6, bucket_cap=1000)
    assert len(uncapped.i) == 300 * 299 // 2 + 1


def test_blocks_cover_every_bit_in_order():
    codes = np.random.default_rng(3).integers(0, 256, (50, 32), dtype=np.uint8)
    for m in (8, 16, 22):
        blk = blocks(codes, m)
        edges = np.linspace(0, 256, m + 1).round().astype(int)
        bits = np.unpackbits(codes, axis=1)
        for k in range(m):
            width = edges[k + 1] - edges[k]
            weights = (1 << np.arange(width - 1, -1, -1)).astype(np.uint64)
            assert (bits[:, edges[k]:edges[k + 1]].astype(np.uint64) @ weights == blk[:, k]).all()


def test_equal_pairs():
    keys = np.array([[1, 2], [3, 4], [1, 2], [1, 2], [3, 5], [3, 4]], np.uint64)
    i, j, skipped = equal_pairs(keys, bucket_cap=10)
    assert set(zip(i.tolist(), j.tolist())) == {(0, 2), (0, 3), (2, 3), (1, 5)} and skipped == 0
    i, j, skipped = equal_pairs(keys, bucket_cap=2)
    assert set(zip(i.tolist(), j.tolist())) == {(1, 5)} and skipped == 1
    i, j, _ = equal_pairs(keys, bucket_cap=10, group=np.array([0, 0, 1, 1, 2, 2]))
    assert set(zip(i.tolist(), j.tolist())) == {(0, 2), (0, 3), (1, 5)}


def test_a_pair_in_a_skipped_bucket_is_found_through_its_other_blocks():
    """The first blocks a pair agrees on may key a crowded bucket; the pair is reported once, later."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    codes[:, :8] = codes[0, :8]  # 40 codes share their first 64 bits: the first tables' keys
    codes[1] = codes[0]
    codes[1, 20] ^= 1  # 1 bit from code 0, equal on every other block
    m = near_pairs(codes, 6, bucket_cap=10)
    found = list(zip(m.i.tolist(), m.j.tolist(), m.distance.tolist()))
    assert m.skipped_buckets > 0 and (0, 1, 1) in found and m.deferred[found.index((0, 1, 1))]
    assert len(found) == len(set(found)) and set(found) <= brute_force(codes, 6)


@pytest.mark.parametrize("radius, per_key", [(6, 2), (12, 2), (4, 3)])
def test_only_pairs_whose_every_agreeing_key_is_crowded_are_left_out(radius, per_key):
    """Against a plain dictionary search of every table: a pair is found, once, exactly when some table
    keys both codes to a bucket of at most bucket_cap codes."""
    from itertools import combinations

    rng = np.random.default_rng(radius)
    codes = codes_with_near_copies(rng, n=300, flips=radius + 4)
    codes[:60, :16] = codes[0, :16]  # crowded on the first blocks, near copies among them
    codes[100:130, 20:] = codes[100, 20:]  # crowded on the last blocks
    n_blocks = max(radius + per_key, 8 if per_key == 2 else 4)
    edges = np.linspace(0, 256, n_blocks + 1).round().astype(int)
    # a pair agreeing only on crowded blocks: code 50 = code 0 but one bit in every later block
    bits = np.unpackbits(codes[0])
    bits[edges[:-1][edges[1:] > 128]] ^= 1
    codes[50] = np.packbits(bits)
    cap = 8
    m = near_pairs(codes, radius, bucket_cap=cap, per_key=per_key)
    blk = blocks(codes, n_blocks)
    searched = set()
    for combo in combinations(range(n_blocks), per_key):
        buckets = {}
        for row, key in enumerate(map(tuple, blk[:, combo])):
            buckets.setdefault(key, []).append(row)
        for rows in buckets.values():
            if len(rows) <= cap:
                searched.update(combinations(rows, 2))
    want = {(i, j, d) for i, j, d in brute_force(codes, radius) if (i, j) in searched}
    found = list(zip(m.i.tolist(), m.j.tolist(), m.distance.tolist()))
    assert len(found) == len(set(found)) and set(found) == want
    assert m.deferred.any() and len(m.deferred) == len(found)  # the case occurs
    if per_key == 2:  # and the limit: code 50's pair with code 0 agrees on crowded keys only
        assert (0, 50) in {(i, j) for i, j, _ in brute_force(codes, radius)} - {(i, j) for i, j, _ in want}

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

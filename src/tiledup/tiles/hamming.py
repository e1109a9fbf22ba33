"""Hamming distance of packed bit codes (hashes): XOR, then a popcount per 64-bit word.

The one popcount helper of the package, used by the pair shards (BlockMeanHash
similarity of a chip's tiles), the hash search and the hash baselines. It needs
numpy only (np.bitwise_count, numpy >= 2.0).
"""

from __future__ import annotations

import numpy as np


def as_words(codes: np.ndarray) -> np.ndarray:
    """(..., bytes) uint8 codes -> (..., ceil(bytes / 8)) uint64, zero-padded."""
    codes = np.ascontiguousarray(codes, np.uint8)
    pad = (-codes.shape[-1]) % 8
    if pad:
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], pad), np.uint8)], axis=-1)
    return codes.view(np.uint64)


def hamming(words_a: np.ndarray, words_b: np.ndarray, dtype=np.int32) -> np.ndarray:
    """Hamming distance of two broadcastable (..., w) uint64 arrays -> (...) `dtype`.

    The few words are summed by hand: on a short last axis that beats a reduction
    over it (about twice as fast in the pair shards).
    """
    bits = np.bitwise_count(words_a ^ words_b)
    total = bits[..., 0].astype(dtype)
    for w in range(1, bits.shape[-1]):
        total += bits[..., w]
    return total

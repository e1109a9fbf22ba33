"""Near-flat tiles matched by their fine structure: the duplicates a BlockMeanHash cannot find.

On faint dark sea a tile's block means differ by less than JPEG noise, so its
BlockMeanHash is mostly noise and two copies of it sit 20 to 90 bits apart,
beyond any usable radius. Their fine structure (sensor noise, faint waves:
the tile stage's flat_sig, tiledup.tiles.hashing) is shared pixel for pixel by
the copies of one acquisition and by nothing else: on the development demos
the copies' signatures correlate at 0.5 to 1.0 (median about 0.8), random
near-flat pairs below 0.1.

So every near-flat tile (content, grey std below `texture_std`) is compared
with every other chip's, exactly: a blocked matrix product of the normalised
signatures, kept where the correlation is at least `min_corr`. The cost is
quadratic in the near-flat tiles (docs/benchmarks.md measures it); memory is
the signatures as float32 (4 kB per near-flat tile) plus one 256 MB block. A tile that
correlates with more tiles than one place can show (`max_matches`: 9 chips
of one acquisition hold a tile) carries a structure common to many places (a
straight border, a lone bright dot): its matches are dropped, as the hash
search drops a common hash's.
"""

from __future__ import annotations

import numpy as np

BLOCK_BYTES = 1 << 28  # each matrix product's output: 256 MB, whatever the number of near-flat tiles


def unit_rows(sigs: np.ndarray) -> np.ndarray:
    """int8 signatures -> float32 rows of zero mean and unit norm (a flat row stays zero)."""
    x = sigs.astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def flat_matches(sigs: np.ndarray, image: np.ndarray, min_corr: float,
                 max_matches: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j), i < j, of rows of `sigs` from different images whose signatures correlate at least
    min_corr, neither row matching more than max_matches rows; and their correlations."""
    x = unit_rows(sigs)
    found_i, found_j, found_c = [], [], []
    block = max(64, BLOCK_BYTES // (4 * max(len(x), 1)))
    for start in range(0, len(x), block):
        corr = x[start:start + block] @ x[start:].T  # upper triangle, block by block
        i, j = np.nonzero(corr >= min_corr)
        c = corr[i, j]
        i, j = i + start, j + start
        keep = (j > i) & (image[i] != image[j])
        found_i.append(i[keep])
        found_j.append(j[keep])
        found_c.append(c[keep])
    i, j, c = (np.concatenate(a) if a else np.zeros(0, t)
               for a, t in ((found_i, np.int64), (found_j, np.int64), (found_c, np.float32)))
    degree = np.bincount(np.r_[i, j], minlength=len(x))
    keep = (degree[i] <= max_matches) & (degree[j] <= max_matches)
    return i[keep], j[keep], c[keep]

"""Chips placed on one lattice: a union-find that carries each chip's (row, col) offset in tiles.

Chips cut from one acquisition at the tile stride sit on one lattice, so an
overlap (a, b, tag) says where b sits relative to a (grid.tag_offset). Joining
chips by overlaps places every chip of a component relative to its root; an
overlap between two chips already placed either agrees with their positions or
conflicts with them. Used by the candidate search (placing chips to imply more
overlaps) and by the groups (each chip's position in its group's mosaic).
"""

from __future__ import annotations

import numpy as np

from tiledup.grid import SPAN, offset_tag

# Offset (dr, dc) <-> index 0..24, in grid.OFFSETS order (dr major).
WIDTH = 2 * SPAN + 1


def offset_index(dr, dc):
    """Index 0..24 of offsets (works on numpy arrays)."""
    return (dr + SPAN) * WIDTH + (dc + SPAN)


def index_offset(index):
    """(dr, dc) of offset indices (works on numpy arrays)."""
    return index // WIDTH - SPAN, index % WIDTH - SPAN


class Lattice:
    """Union-find over n chips; pos(x) = pos(root(x)) + offset(x), in tiles."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)
        self.dr = np.zeros(n, np.int64)  # offset from parent
        self.dc = np.zeros(n, np.int64)
        self.size = np.ones(n, np.int64)

    def find(self, x: int) -> tuple[int, int, int]:
        """(root, row, col) of x relative to its root; compresses the path."""
        path = []
        while self.parent[x] != x:
            path.append(x)
            x = self.parent[x]
        root, r, c = x, 0, 0
        for y in reversed(path):  # nearest the root first: accumulate offsets outward
            r += self.dr[y]
            c += self.dc[y]
            self.parent[y], self.dr[y], self.dc[y] = root, r, c
        if path:
            y = path[0]
            return root, int(self.dr[y]), int(self.dc[y])
        return root, 0, 0

    def find_all(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Roots and positions of many chips (vectorised after one compression pass)."""
        for x in np.unique(xs):
            if self.parent[self.parent[x]] != self.parent[x]:
                self.find(int(x))
        roots = self.parent[xs]
        return roots, self.dr[xs], self.dc[xs]

    def union(self, a: int, b: int, dr: int, dc: int) -> str:
        """Place b at (dr, dc) from a: 'joined', 'agrees' (already so placed) or 'conflict'."""
        ra, pr, pc = self.find(a)
        rb, qr, qc = self.find(b)
        if ra == rb:
            return "agrees" if (qr - pr, qc - pc) == (dr, dc) else "conflict"
        # pos(rb) = pos(a) + (dr, dc) - pos(b in rb) = pos(ra) + p + d - q
        r, c = pr + dr - qr, pc + dc - qc
        if self.size[ra] < self.size[rb]:  # attach the smaller tree under the larger
            ra, rb, r, c = rb, ra, -r, -c
        self.parent[rb], self.dr[rb], self.dc[rb] = ra, r, c
        self.size[ra] += self.size[rb]
        return "joined"

    def positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Root, row and col of every chip."""
        return self.find_all(np.arange(len(self.parent)))


def canonical_offsets(a: np.ndarray, b: np.ndarray, dr: np.ndarray, dc: np.ndarray):
    """Overlaps as (img1 < img2, offset of img2 from img1): swap the pair and negate the offset where a > b."""
    swap = a > b
    return (np.where(swap, b, a), np.where(swap, a, b), np.where(swap, -dr, dr), np.where(swap, -dc, dc))


TAG_BY_INDEX = np.array([offset_tag(*index_offset(k)) for k in range(WIDTH * WIDTH)])  # offset index -> tag

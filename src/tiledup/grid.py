"""Chip grid geometry: tile indices, overlap tags and the tile pairs of an overlap.

A chip is GRID x GRID tiles of TILE x TILE pixels; tile index t = 3 * row + col
(row-major, tile 0 = top left). Two chips cut from one acquisition with a
TILE stride overlap when image 2 sits (dr, dc) tiles from image 1 with
|dr|, |dc| <= 2: 25 offsets, (0, 0) being a full overlap.

An overlap tag (the seed's vocabulary) is two digits: the first and the last
tile index of the overlap region inside image 1, e.g. "08" = full overlap,
"38" = image 2 is one tile row further down. The partner tag is image 2's tag
for the same overlap, i.e. the tag of offset (-dr, -dc).
"""

from __future__ import annotations

GRID = 3
TILE = 256
CHIP = GRID * TILE
N_TILES = GRID * GRID
SPAN = GRID - 1  # largest offset, in tiles, at which two chips still overlap


def tile_rc(tile: int) -> tuple[int, int]:
    """(row, col) of a tile index."""
    return divmod(tile, GRID)


def tile_slice(tile: int) -> tuple[slice, slice]:
    """Pixel rows and columns of a tile inside its chip."""
    r, c = tile_rc(tile)
    return slice(r * TILE, (r + 1) * TILE), slice(c * TILE, (c + 1) * TILE)


def offset_tag(dr: int, dc: int) -> str:
    """Tag of the overlap when image 2 sits (dr, dc) tiles from image 1."""
    if abs(dr) > SPAN or abs(dc) > SPAN:
        raise ValueError(f"chips {dr, dc} tiles apart do not overlap")
    r0, c0 = max(0, dr), max(0, dc)
    r1, c1 = min(SPAN, SPAN + dr), min(SPAN, SPAN + dc)
    return f"{r0 * GRID + c0}{r1 * GRID + c1}"


OFFSETS: tuple[tuple[int, int], ...] = tuple(
    (dr, dc) for dr in range(-SPAN, SPAN + 1) for dc in range(-SPAN, SPAN + 1)
)
TAG_OFFSET: dict[str, tuple[int, int]] = {offset_tag(dr, dc): (dr, dc) for dr, dc in OFFSETS}
TAGS: tuple[str, ...] = tuple(sorted(TAG_OFFSET))


def tag_offset(tag: str) -> tuple[int, int]:
    """(dr, dc) of image 2 relative to image 1 for an overlap tag."""
    try:
        return TAG_OFFSET[tag]
    except KeyError:
        raise ValueError(f"unknown overlap tag {tag!r} (expected one of {', '.join(TAGS)})") from None


def partner_tag(tag: str) -> str:
    """Image 2's tag for the overlap that image 1 sees as `tag`."""
    dr, dc = tag_offset(tag)
    return offset_tag(-dr, -dc)


def tag_tile_pairs(tag: str) -> list[tuple[int, int]]:
    """(tile in image 1, tile in image 2) for every tile of the overlap, row-major in image 1."""
    dr, dc = tag_offset(tag)
    pairs = []
    for r in range(max(0, dr), min(SPAN, SPAN + dr) + 1):
        for c in range(max(0, dc), min(SPAN, SPAN + dc) + 1):
            pairs.append((r * GRID + c, (r - dr) * GRID + (c - dc)))
    return pairs

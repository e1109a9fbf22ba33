"""Mosaics of duplicate groups, for the report's groups section.

A mosaic stitches a duplicate group's chips at their (row, col) from
groups.parquet: each chip is pasted at its offset in tiles (later chips over
earlier ones, in image-id order), with its outline drawn, so a reader sees
whether the group's chips really form one scene. Each chip's id is placed by
the page over the picture at the chip's top-left corner (in percent of the
mosaic, so it stays in place at any width); chips at one position stack their
ids. The largest groups are shown, each at `tile_px` pixels per tile unless its
longer side would exceed `max_side` pixels.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import simplejpeg

from tiledup.grid import GRID
from tiledup.tiles.decode import RejectedImage, read_chip
from tiledup.report.html import data_uri

OUTLINE = (255, 220, 0)


def stitch(chips: list[tuple[np.ndarray, int, int]], tile_px: int) -> np.ndarray:
    """Mosaic of (chip RGB, row, col in tiles) with tile_px pixels per tile; outlines in yellow."""
    rows = max(r for _, r, _ in chips) + GRID
    cols = max(c for _, _, c in chips) + GRID
    canvas = np.full((rows * tile_px, cols * tile_px, 3), 255, np.uint8)
    side = GRID * tile_px
    for chip, r, c in chips:
        small = cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA)
        canvas[r * tile_px:r * tile_px + side, c * tile_px:c * tile_px + side] = small
    for _, r, c in chips:
        cv2.rectangle(canvas, (c * tile_px, r * tile_px), (c * tile_px + side - 1, r * tile_px + side - 1),
                      OUTLINE, 2 if tile_px >= 32 else 1)
    return canvas


def mosaic(members: pd.DataFrame, images_dir, tile_px: int, max_side: int) -> dict | None:
    """One group's mosaic: picture, size and each chip's label position; None if no chip is readable."""
    rows, cols = int(members.row.max()) + GRID, int(members.col.max()) + GRID
    px = max(4, min(tile_px, max_side // max(rows, cols)))
    chips, labels, missing, stacked = [], [], [], {}
    for image_id, r, c in zip(members.image_id, members.row, members.col):
        try:
            chips.append((read_chip(Path(images_dir) / image_id), int(r), int(c)))
        except RejectedImage:
            missing.append(image_id)
            continue
        k = stacked[(r, c)] = stacked.get((r, c), -1) + 1
        # an id is about one tile wide: chips one column apart put theirs on alternate lines
        labels.append({"id": Path(image_id).stem, "left": round(100 * c / cols, 3),
                       "top": round(100 * r / rows, 3), "line": int(c) % 2 + 2 * k})
    if not chips:
        return None
    canvas = stitch(chips, px)
    pic = simplejpeg.encode_jpeg(np.ascontiguousarray(canvas), quality=75, colorspace="RGB")
    return {"src": data_uri(pic, "image/jpeg"), "width": canvas.shape[1], "height": canvas.shape[0],
            "rows": rows, "cols": cols, "labels": labels, "missing": missing}


def mosaics(groups: pd.DataFrame, images_dir, count: int, tile_px: int, max_side: int = 960) -> list[dict]:
    """The `count` largest groups of two or more images (largest first), each with its mosaic."""
    big = groups[groups.n_images > 1]
    shown = big.drop_duplicates("group").sort_values(["n_images", "group"], ascending=[False, True]).head(count)
    out = []
    for g in shown.group:
        members = big[big.group == g].sort_values("image_id")
        m = mosaic(members, images_dir, tile_px, max_side)
        if m:
            out.append({"group": int(g), "n_images": len(members), **m})
    return out

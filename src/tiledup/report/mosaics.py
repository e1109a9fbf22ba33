"""The report's discovery section: what the candidate search, verify and the groups found, and mosaics.

A mosaic stitches a duplicate group's chips at their (row, col) from
groups.parquet: each chip is pasted at its offset in tiles (later chips over
earlier ones, in image-id order), with its outline drawn, so a reader sees
whether the group's chips really form one scene. The largest groups are shown,
each scaled so that its longer side fits `max_side` pixels.
"""

from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import simplejpeg

from tiledup.grid import GRID
from tiledup.tiles.decode import RejectedImage, read_chip
from tiledup.run.io import read_table
from tiledup.report.html import _img, gallery

ANCHOR, TITLE = "discovery", "Discovery: candidates, decisions, groups and mosaics"


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
                      (255, 220, 0), 1)
    return canvas


def mosaics(groups: pd.DataFrame, images_dir, count: int, tile_px: int, max_side: int = 960) -> str:
    """Figures of the `count` largest groups of two or more images (largest first)."""
    big = groups[groups.n_images > 1]
    shown = big.drop_duplicates("group").sort_values(["n_images", "group"], ascending=[False, True]).head(count)
    items = []
    for g in shown.group:
        members = big[big.group == g].sort_values("image_id")
        span = max(members.row.max(), members.col.max()) + GRID
        px = max(4, min(tile_px, max_side // span))
        chips, missing = [], []
        for image_id, r, c in zip(members.image_id, members.row, members.col):
            try:
                chips.append((read_chip(Path(images_dir) / image_id), int(r), int(c)))
            except RejectedImage:
                missing.append(image_id)
        if not chips:
            continue
        canvas = stitch(chips, px)
        pic = simplejpeg.encode_jpeg(np.ascontiguousarray(canvas), quality=75, colorspace="RGB")
        note = f", {len(missing)} unreadable" if missing else ""
        items.append(
            f'<figure style="width:{min(canvas.shape[1], 480)}px">{_img(pic, "image/jpeg", f"group {g}")}'
            f"<figcaption>group {g}: {len(members)} images, {members.row.max() + GRID} x "
            f"{members.col.max() + GRID} tiles{note}</figcaption></figure>")
    if not items:
        return "<p>No group holds two or more images.</p>"
    return gallery(items)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def figures(d: dict) -> str:
    """Counts, and with truth the recall / precision / purity table."""
    c = d["counts"]
    kinds = ", ".join(f"{v} {html.escape(k)}" for k, v in c["conflicts_by_kind"].items()) or "none"
    parts = [f"<p>{c['candidates']} candidate overlaps ({c['candidates_by_hash']} from tile hash matches, "
             f"{c['candidates_implied']} implied by the lattice); verify found <b>{c['found_dups']} duplicate "
             f"overlaps</b> ({c['undecidable']} undecidable); {c['groups']} groups, {c['multi_image_groups']} of "
             f"two or more images, the largest {c['largest_group']}; {c['conflicts']} conflicts cut "
             f"({kinds}).</p>"]
    if "candidates" in d:
        cand, dec, pur = d["candidates"], d["decisions"], d["groups"]
        rows = [
            ("candidate recall (decidable truth duplicates that are candidates)",
             f"{_pct(cand['recall'])} of {cand['n_truth_dups_decidable']} ({len(cand['missed'])} missed)"),
            ("... without implied overlaps", _pct(cand["recall_without_implied"])),
            ("verify precision", f"{_pct(dec['precision'])} ({dec['fp']} false duplicates, "
                                 f"{dec['fp_not_in_truth']} of them not in the truth)"),
            ("verify recall", f"{_pct(dec['recall'])} ({dec['fn']} truth duplicates missed)"),
            ("impure groups", f"{pur['n_impure']} of {pur['n_multi_image_groups']} multi-image groups "
                              f"({pur['impure_images']} images); {pur['n_impure_explained_by_dupnet_errors']} "
                              f"explained by DupNet's false duplicates. Impure = {html.escape(pur['rule'])}"),
        ]
        parts.append("<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rows)
                     + "</table>")
    return "".join(parts)


def discovery_section(info: dict | None, images_dir) -> tuple[str, str, str] | None:
    """(anchor, title, HTML) of the report's discovery section; None when discovery did not run.

    info: {"figures": metrics.json's discovery block, "groups": groups.parquet path,
    "mosaics": how many groups to stitch, "tile_px": pixels per tile in a mosaic}.
    """
    if not info:
        return None
    groups = read_table(info["groups"], ["image_id", "group", "row", "col", "n_images"], "groups table").to_pandas()
    body = (figures(info["figures"])
            + f"<h3>Mosaics of the {info['mosaics']} largest groups</h3><p>Each chip pasted at its position in "
              "its group (yellow outlines); chips drawn later cover earlier ones.</p>"
            + mosaics(groups, images_dir, info["mosaics"], info["tile_px"]))
    return ANCHOR, TITLE, body

"""dup_truth I/O: labelled overlaps, one per line, `img1 img2 tag is_dup`.

Each overlap is stored once under its canonical key (img1 < img2): a line that
lists the images the other way round is swapped and its tag replaced by the
partner tag, so `b a 38 1` and `a b 05 1` are the same overlap. Exact repeats
are merged; the same overlap with two labels is always an error naming both
lines (a contradiction cannot be resolved by dropping one side).

Blank lines and lines starting with `#` are ignored. Any other bad line (wrong
field count, unknown tag, label not 0/1, an image listed twice, an image that is
not in the folder or that the tile stage rejected) is an error, or with
`on_bad="skip"` is listed in the returned skips, which the evaluation reports;
nothing is dropped silently. Errors list every bad line at once, each as
`file:line: reason` (the first 20 of them, then how many more: errors.listing),
so one round of fixes is enough.

The workflow reads the file twice, both times with read_truth: the manifest
checks the image names against the folder before any tile job runs
(check_names), and the `truth` rule, once the tile stage has run, also checks
them against the rejects and writes the checked overlaps that `evaluate` reads
(write_checked, read_checked).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa

from tiledup.run.errors import TiledupError, listing
from tiledup.grid import TAGS, partner_tag
from tiledup.run.io import read_table, write_parquet

log = logging.getLogger(__name__)

COLUMNS = ["img1", "img2", "tag", "is_dup", "line"]
ON_BAD = ("error", "skip")

# results/truth/overlaps.parquet and skipped.parquet; `source` = `file:line`
OVERLAPS_SCHEMA = pa.schema([("img1", pa.string()), ("img2", pa.string()), ("tag", pa.string()),
                             ("is_dup", pa.bool_()), ("source", pa.string())])
SKIPPED_SCHEMA = pa.schema([("source", pa.string()), ("text", pa.string()), ("reason", pa.string())])


def canonical(img1: str, img2: str, tag: str) -> tuple[str, str, str]:
    """The overlap's key with img1 < img2 (the tag follows image 1)."""
    return (img1, img2, tag) if img1 < img2 else (img2, img1, partner_tag(tag))


def _parse(text: str) -> tuple[str, str, str, bool]:
    """One non-comment line -> (img1, img2, tag, is_dup); ValueError says what is wrong."""
    fields = text.split()
    if len(fields) != 4:
        raise ValueError(f"expected 4 fields `img1 img2 tag is_dup`, got {len(fields)}")
    img1, img2, tag, label = fields
    if tag not in TAGS:
        raise ValueError(f"unknown overlap tag {tag!r} (expected one of {' '.join(TAGS)})")
    if label not in ("0", "1"):
        raise ValueError(f"is_dup must be 0 or 1, got {label!r}")
    if img1 == img2:
        raise ValueError(f"img1 and img2 are the same image {img1!r}")
    return img1, img2, tag, label == "1"


def read_truth(path, accepted=None, rejected=None, images_dir=None, on_bad: str = "error"):
    """Read a dup_truth file into canonical overlaps.

    accepted: image ids to accept (None: do not check images);
    rejected: {image_id: reason} from the rejects table.
    Returns (overlaps DataFrame with COLUMNS, skips: list of {line, text, reason}).
    """
    if on_bad not in ON_BAD:
        raise TiledupError(f"on_bad_truth must be one of {', '.join(ON_BAD)}, got {on_bad!r}")
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TiledupError(f"{path}: cannot read dup_truth file ({e})") from None
    rejected = rejected or {}
    folder = f" {images_dir}" if images_dir else ""
    seen: dict[tuple[str, str, str], tuple[bool, str]] = {}
    skips: list[dict] = []
    conflicts: list[str] = []
    for number, text in enumerate(lines, 1):
        where = f"{path}:{number}"
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            img1, img2, tag, is_dup = _parse(text)
            for image in (img1, img2):
                if image in rejected:
                    raise ValueError(f"image {image} was rejected by the tile stage ({rejected[image]})")
                if accepted is not None and image not in accepted:
                    raise ValueError(f"image {image} is not in the images folder{folder}")
        except ValueError as e:
            skips.append({"line": where, "text": text.strip(), "reason": str(e)})
            continue
        key = canonical(img1, img2, tag)
        if key in seen:
            label, first = seen[key]
            if label != is_dup:
                conflicts.append(f"{first} and {where} label the same overlap {' '.join(key)} "
                                 f"differently ({int(label)} vs {int(is_dup)})")
            continue  # an exact repeat (possibly written the other way round)
        seen[key] = (is_dup, where)
    if conflicts:  # never skipped: the truth contradicts itself
        raise TiledupError(listing(f"{path}: {len(conflicts)} overlap(s) labelled twice, differently "
                                   "(fix the file; on_bad_truth: skip does not choose a side):", conflicts))
    if skips and on_bad == "error":
        raise TiledupError(listing(f"{path}: {len(skips)} bad line(s) (fix them, or set on_bad_truth: "
                                   "skip to leave them out, listed in the report):",
                                   [f"{s['line']}: {s['reason']}" for s in skips]))
    rows = [(*key, label, where) for key, (label, where) in seen.items()]
    overlaps = pd.DataFrame(rows, columns=COLUMNS).astype({"is_dup": bool})
    return overlaps.sort_values(["img1", "img2", "tag"], ignore_index=True), skips


def _log_skips(skips: list[dict], what: str) -> None:
    if skips:
        log.warning("%s", listing(f"{len(skips)} dup_truth line(s) {what}:",
                                  [f"{s['line']}: {s['reason']}" for s in skips]))


def check_names(truth_path, image_ids, images_dir, on_bad: str = "error") -> list[dict]:
    """The manifest's check, before any tile job: every line well formed, every image in the folder."""
    _, skips = read_truth(truth_path, set(image_ids), None, images_dir, on_bad)
    _log_skips(skips, "will be skipped (on_bad_truth: skip)")
    return skips


def write_checked(truth_path, manifest_path, rejects_path, images_dir, overlaps_path, skipped_path,
                  on_bad: str = "error") -> pd.DataFrame:
    """The `truth` rule: check the file against the folder and the tile stage's rejects, write
    the canonical overlaps (OVERLAPS_SCHEMA) and the skipped lines (SKIPPED_SCHEMA)."""
    listed = read_table(manifest_path, ["image_id"], "manifest").column("image_id").to_pylist()
    rejects = read_table(rejects_path, ["image_id", "reason"], "rejects table").to_pylist()
    overlaps, skips = read_truth(truth_path, set(listed), {r["image_id"]: r["reason"] for r in rejects},
                                 images_dir, on_bad)
    _log_skips(skips, "skipped (on_bad_truth: skip)")
    write_parquet(pa.Table.from_pandas(overlaps.rename(columns={"line": "source"}), OVERLAPS_SCHEMA,
                                       preserve_index=False), overlaps_path)
    write_parquet(pa.Table.from_pylist([{"source": s["line"], "text": s["text"], "reason": s["reason"]}
                                        for s in skips], SKIPPED_SCHEMA), skipped_path)
    log.info("%s: %d overlaps (%d duplicates), %d line(s) skipped", truth_path, len(overlaps),
             int(overlaps.is_dup.sum()), len(skips))
    return overlaps


def read_checked(overlaps_path, skipped_path) -> tuple[pd.DataFrame, list[dict]]:
    """The `truth` rule's outputs, as read_truth returns them."""
    overlaps = read_table(overlaps_path, OVERLAPS_SCHEMA.names, "checked dup_truth").to_pandas()
    skipped = read_table(skipped_path, SKIPPED_SCHEMA.names, "skipped dup_truth lines").to_pylist()
    skips = [{"line": s["source"], "text": s["text"], "reason": s["reason"]} for s in skipped]
    return overlaps.rename(columns={"source": "line"}).astype({"is_dup": bool}), skips

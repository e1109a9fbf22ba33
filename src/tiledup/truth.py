"""dup_truth I/O: labelled overlaps, one per line, `img1 img2 tag is_dup`.

Each overlap is stored once under its canonical key (img1 < img2): a line that
lists the images the other way round is swapped and its tag replaced by the
partner tag, so `b a 38 1` and `a b 05 1` are the same overlap. Exact repeats
are merged; the same overlap with two labels is always an error naming both
lines (a contradiction cannot be resolved by dropping one side).

Blank lines and lines starting with `#` are ignored. Any other bad line (wrong
field count, unknown tag, label not 0/1, an image listed twice, an image that is
not in the folder or that the tile stage rejected) raises a TiledupError naming
`file:line`, or with `on_bad="skip"` is listed in the returned skips, which the
evaluation reports; nothing is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import TiledupError
from .grid import TAGS, partner_tag

COLUMNS = ["img1", "img2", "tag", "is_dup", "line"]
ON_BAD = ("error", "skip")


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

    accepted: image ids the tile stage accepted (None: do not check images);
    rejected: {image_id: reason} from the rejects tables.
    Returns (overlaps DataFrame with COLUMNS, skips: list of {line, text, reason}).
    """
    if on_bad not in ON_BAD:
        raise TiledupError(f"evaluate.on_bad_truth must be one of {ON_BAD}, got {on_bad!r}")
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TiledupError(f"{path}: cannot read dup_truth file ({e})") from None
    rejected = rejected or {}
    folder = f" {images_dir}" if images_dir else ""
    seen: dict[tuple[str, str, str], tuple[bool, str]] = {}
    skips: list[dict] = []
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
            if on_bad == "error":
                raise TiledupError(f"{where}: {e}") from None
            skips.append({"line": where, "text": text.strip(), "reason": str(e)})
            continue
        key = canonical(img1, img2, tag)
        if key in seen:
            label, first = seen[key]
            if label != is_dup:
                raise TiledupError(
                    f"{first} and {where} label the same overlap {' '.join(key)} differently "
                    f"({int(label)} vs {int(is_dup)})")
            continue  # an exact repeat (possibly written the other way round)
        seen[key] = (is_dup, where)
    rows = [(*key, label, where) for key, (label, where) in seen.items()]
    overlaps = pd.DataFrame(rows, columns=COLUMNS).astype({"is_dup": bool})
    return overlaps.sort_values(["img1", "img2", "tag"], ignore_index=True), skips

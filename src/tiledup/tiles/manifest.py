"""Manifest: list the images folder once and give every image a shard.

The shard is a stable hash of the image id (not of the folder order), so adding
images to the folder leaves every other image in its shard, and the shard lists
it does not touch keep their content.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pyarrow as pa

from tiledup.run.errors import TiledupError
from tiledup.run.io import write_parquet, write_text

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg")


def shard_of(image_id: str, shards: int) -> int:
    """Stable shard of an image id (md5, not Python's salted hash)."""
    return int.from_bytes(hashlib.md5(image_id.encode()).digest()[:8], "little") % shards


def shard_name(k: int) -> str:
    return f"{k:03d}"


def list_images(images_dir: str | os.PathLike) -> list[str]:
    """Sorted image ids (file names) in a folder; other files are logged, not taken."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise TiledupError(f"images folder {folder} does not exist")
    ids, others = [], []
    with os.scandir(folder) as entries:
        for e in entries:
            if e.name.lower().endswith(IMAGE_SUFFIXES):
                ids.append(e.name)
            elif not e.name.startswith("."):
                others.append(e.name)
    if not ids:
        raise TiledupError(f"images folder {folder} holds no .jpg images")
    if others:
        others.sort()
        log.warning("%s: %d entries without a .jpg/.jpeg suffix were not listed: %s%s", folder, len(others),
                    ", ".join(others[:5]), ", ..." if len(others) > 5 else "")
    return sorted(ids)


def write_manifest(images_dir, shards: int, manifest_path, lists_dir, truth_path=None, *,
                   on_bad_truth: str) -> pa.Table:
    """Write the manifest Parquet (image_id, shard) and one `<shard>.txt` list per shard in lists_dir.

    With a dup_truth file, first check that its lines are well formed and name only
    images of the folder (tiledup.dup_truth.check_names): the folder is listed here
    anyway, and a bad truth file then stops the run before any tile job.

    The lists live in a folder of their own, the workflow's one output for all of
    them, so that the checkpoint's outputs do not depend on the shard count:
    per-shard outputs would make a new count look like a run with missing
    metadata, which Snakemake does not re-run (see workflow/rules/tiles.smk).
    """
    if shards < 1:
        raise TiledupError(f"shards must be >= 1, got {shards}")
    ids = list_images(images_dir)
    if truth_path:
        from tiledup.dup_truth import check_names  # pandas: not at import, the Snakefile imports this module

        check_names(truth_path, ids, images_dir, on_bad_truth)
    shard = [shard_of(i, shards) for i in ids]
    table = pa.table({"image_id": pa.array(ids, pa.string()), "shard": pa.array(shard, pa.int32())})
    members: list[list[str]] = [[] for _ in range(shards)]
    for i, k in zip(ids, shard):
        members[k].append(i)
    for k, names in enumerate(members):
        write_text("".join(f"{n}\n" for n in names), Path(lists_dir) / f"{shard_name(k)}.txt")
    write_parquet(table, manifest_path)
    sizes = [len(m) for m in members]
    log.info("%d images in %d shards (smallest %d, largest %d)", len(ids), shards, min(sizes), max(sizes))
    return table


def read_list(list_path) -> list[str]:
    """Image ids of one shard list (a text file, one id per line)."""
    try:
        text = Path(list_path).read_text()
    except UnicodeDecodeError:
        raise TiledupError(f"{list_path}: not a shard list (one image id per line)") from None
    return [line for line in text.splitlines() if line]


SHARD_FOLDERS = ("tiles", "rejects", "pairs", "logs/tiles", "logs/pairs")  # per-shard files, under the results folder


def remove_stale_shards(results_dir, shards: int) -> list[Path]:
    """Delete the per-shard tables and logs of shards beyond the current count; return what went.

    After `shards` is lowered, the higher shards' tables would sit beside the new ones (the
    same images twice for anyone reading the folder); no rule of the current count reads them.
    """
    keep = {shard_name(k) for k in range(shards)}
    gone = []
    for folder in SHARD_FOLDERS:
        for path in sorted(Path(results_dir, folder).glob("*.*")):
            if path.suffix in (".parquet", ".log") and path.stem not in keep:
                path.unlink()
                gone.append(path)
    if gone:
        log.info("removed %d file(s) of shards beyond the current %d, e.g. %s", len(gone), shards, gone[0])
    return gone

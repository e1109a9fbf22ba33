"""Rejected images across all shards: one table, a summary by reason, and a stop when none is left.

The tile stage lists every image it cannot tile in its shard's rejects table.
The `rejects` rule gathers them into results/rejects.parquet (image_id, reason,
shard), logs the summary, and stops the run when every image was rejected (no
tile, no pair: nothing downstream could run). The same summary goes into
metrics.json, the report, and the console at the end of a run (show_rejects).

A reason's kind is its text without the detail in parentheses, so a hundred
"corrupt JPEG (...)" with a hundred different decoder messages count as one
reason, while "size 512x512, expected 768x768" stays specific.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa

from tiledup.run.errors import TiledupError, listing
from tiledup.run.io import read_parquets, read_table, write_parquet
from tiledup.tiles.manifest import shard_name

log = logging.getLogger(__name__)

SCHEMA = pa.schema([("image_id", pa.string()), ("reason", pa.string()), ("shard", pa.int32())])


def reason_kind(reason: str) -> str:
    return reason.split(" (", 1)[0]


def summarise(rejects: list[dict], n_images: int) -> dict:
    """metrics.json's `rejects`: counts by reason (most frequent first) and every rejected image."""
    by_reason = Counter(reason_kind(r["reason"]) for r in rejects)
    return {"n_images": int(n_images), "n_rejected": len(rejects),
            "by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
            "images": sorted(rejects, key=lambda r: r["image_id"])}


NAMED = 3  # images named per reason in the console summary (the table has them all)


def summary_lines(summary: dict, where: str) -> list[str]:
    """The console summary: a headline saying where the full list is, then one line per reason naming its
    first NAMED images."""
    n, k = summary["n_images"], summary["n_rejected"]
    if not k:
        return [f"Rejected images: none of {n}."]
    names: dict[str, list[str]] = {}
    for r in summary["images"]:
        names.setdefault(reason_kind(r["reason"]), []).append(r["image_id"])
    return [f"Rejected images: {k} of {n} ({where}):",
            *(f"{count:8d}  {reason}: {', '.join(names[reason][:NAMED])}{', ...' if count > NAMED else ''}"
              for reason, count in summary["by_reason"].items())]


def gather_rejects(manifest_path, rejects_paths, out_path) -> dict:
    """Write every shard's rejects as one table (sorted by image_id); stop if every image was rejected."""
    manifest = read_table(manifest_path, ["image_id", "shard"], "manifest")
    shard = dict(zip(manifest.column("image_id").to_pylist(), manifest.column("shard").to_pylist()))
    rejects = read_parquets(rejects_paths, ["image_id", "reason"], "rejects table").to_pylist()
    unknown = [r["image_id"] for r in rejects if r["image_id"] not in shard]
    if unknown:
        raise TiledupError(f"{len(unknown)} rejected image(s) are not in {manifest_path} (e.g. {unknown[0]}): "
                           "the rejects tables are from another image folder")
    for r in rejects:
        r["shard"] = shard[r["image_id"]]
    summary = summarise(rejects, len(shard))
    if rejects and len(rejects) == len(shard):
        lines = summary_lines(summary, "every one: nothing is left to pair or train on")
        images = [f"{r['image_id']} (shard {shard_name(r['shard'])}): {r['reason']}" for r in summary["images"]]
        raise TiledupError("\n".join(lines) + "\n" + listing("The images:", images))
    write_parquet(pa.Table.from_pylist(summary["images"], SCHEMA), out_path)
    log.info("%s", "\n".join(summary_lines(summary, f"full list: {out_path}")))
    return summary


def read_summary(rejects_path, n_accepted: int) -> dict:
    """The summary of a gathered rejects table, given how many images were tiled."""
    rejects = read_table(rejects_path, SCHEMA.names, "rejects table").to_pylist()
    return summarise(rejects, n_accepted + len(rejects))


def show_rejects(manifest_path, rejects_path) -> None:
    """Print the summary at the end of a run; nothing if the run has not reached the tile stage."""
    if not (Path(manifest_path).exists() and Path(rejects_path).exists()):
        return
    n = read_table(manifest_path, ["image_id"], "manifest").num_rows
    rejects = read_table(rejects_path, SCHEMA.names, "rejects table").to_pylist()
    print("\n".join(summary_lines(summarise(rejects, n), f"full list: {rejects_path}")))

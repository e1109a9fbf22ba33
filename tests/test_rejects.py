"""Rejected images across shards: the gathered table, the summary by reason, the stop when all are rejected."""

from __future__ import annotations


import pyarrow.parquet as pq
import pytest

from tiledup import cli
from tiledup.run.errors import TiledupError
from tiledup.tiles.manifest import shard_name, write_manifest
from tiledup.tiles.rejects import SCHEMA, gather_rejects, reason_kind, show_rejects, summarise
from tiledup.tiles.shard import tile_shard

from bad_chips import write_bad_chips
from conftest import copy_chips

from configured import options


def tile_folder(tmp_path, images, shards=2):
    """The real manifest and tile stage on a folder: (manifest, per-shard rejects tables)."""
    manifest = tmp_path / "manifest.parquet"
    write_manifest(images, shards, manifest, tmp_path / "shards", on_bad_truth="error")
    rejects = []
    for k in range(shards):
        name = shard_name(k)
        rejects.append(tmp_path / f"rejects-{name}.parquet")
        tile_shard(images, tmp_path / "shards" / f"{name}.txt", tmp_path / f"tiles-{name}.parquet", rejects[-1], **options("tiles"))
    return manifest, rejects


def test_reason_kind_drops_the_detail():
    assert reason_kind("corrupt JPEG (Premature end of JPEG file)") == "corrupt JPEG"
    assert reason_kind("not a JPEG (PNG data)") == "not a JPEG"
    assert reason_kind("size 512x512, expected 768x768") == "size 512x512, expected 768x768"


def test_gather_counts_every_shard_by_reason(tmp_path, airbus_chips, capsys):
    images = copy_chips(airbus_chips[:3], tmp_path / "images")
    bad = write_bad_chips(images, airbus_chips[0])
    manifest, rejects = tile_folder(tmp_path, images)
    out = tmp_path / "rejects.parquet"
    summary = gather_rejects(manifest, rejects, out)
    table = pq.read_table(out)
    assert table.schema == SCHEMA and table.column("image_id").to_pylist() == sorted(bad)
    assert summary["n_images"] == 7 and summary["n_rejected"] == 4
    assert summary["by_reason"] == {kind: 1 for kind in sorted(bad.values())}
    shards = pq.read_table(manifest).to_pandas().set_index("image_id").shard
    assert all(r["shard"] == shards[r["image_id"]] for r in summary["images"])

    assert cli.main(["show-rejects", "--manifest", str(manifest), "--rejects", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Rejected images: 4 of 7 (full list: {out}):"
    assert sorted(l.split(None, 1)[1] for l in lines[1:]) == sorted(f"{kind}: {name}" for name, kind in bad.items())
    assert all(l.split()[0] == "1" for l in lines[1:])


def test_every_image_rejected_stops_with_the_summary(tmp_path, airbus_chips):
    images = tmp_path / "images"
    images.mkdir()
    bad = write_bad_chips(images, airbus_chips[0])
    manifest, rejects = tile_folder(tmp_path, images)
    out = tmp_path / "rejects.parquet"
    with pytest.raises(TiledupError) as e:
        gather_rejects(manifest, rejects, out)
    text = str(e.value)
    assert text.startswith("Rejected images: 4 of 4 (every one: nothing is left to pair or train on):")
    for name, kind in bad.items():
        assert f"       1  {kind}" in text and f"{name} (shard " in text
    assert not out.exists()


def test_show_rejects_says_nothing_before_the_tile_stage(tmp_path, capsys):
    show_rejects(tmp_path / "manifest.parquet", tmp_path / "rejects.parquet")
    assert capsys.readouterr().out == ""


def test_summary_orders_reasons_by_count():
    rows = [{"image_id": f"{i}.jpg", "reason": r, "shard": 0}
            for i, r in enumerate(["empty file", "corrupt JPEG (a)", "corrupt JPEG (b)"])]
    assert list(summarise(rows, 10)["by_reason"].items()) == [("corrupt JPEG", 2), ("empty file", 1)]

"""The tile + hash stage on a shard of real chips plus bad files: tables, rejects, log, CLI."""

import io
import json
import logging
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import xxhash
from PIL import Image

from tiledup import cli
from tiledup.run.errors import TiledupError
from tiledup.tiles.hashing import hash_tiles
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.tiles.shard import REJECT_SCHEMA, TILE_SCHEMA, tile_shard

from configured import options, solid_options

GOOD = ["2b6c7fd55.jpg", "5a70ef013.jpg", "73fec0637.jpg"]


@pytest.fixture
def shard(real_data, tmp_path):
    """An images folder with 3 real chips and one file per kind of bad input, and its shard list."""
    src = real_data / "airbus_samples"
    images = tmp_path / "images"
    images.mkdir()
    for name in GOOD:
        shutil.copy(src / name, images / name)
    data = (src / GOOD[0]).read_bytes()
    im = Image.open(src / GOOD[0])
    (images / "aa0000001.jpg").write_bytes(data[: len(data) // 3])  # truncated
    png = io.BytesIO()
    im.save(png, "PNG")
    (images / "aa0000002.jpg").write_bytes(png.getvalue())  # PNG named .jpg
    small = io.BytesIO()
    im.resize((512, 512)).save(small, "JPEG", quality=95)
    (images / "aa0000003.jpg").write_bytes(small.getvalue())  # wrong size
    cmyk = io.BytesIO()
    im.convert("CMYK").save(cmyk, "JPEG", quality=95)
    (images / "aa0000004.jpg").write_bytes(cmyk.getvalue())  # 4 channels
    grey = io.BytesIO()
    im.convert("L").save(grey, "JPEG", quality=95)
    (images / "aa0000005.jpg").write_bytes(grey.getvalue())  # greyscale: converted, accepted
    (images / "aa0000006.jpg").write_bytes(b"")  # empty
    ids = GOOD + [f"aa000000{i}.jpg" for i in range(1, 7)] + ["ff0000000.jpg"]  # last one missing
    listing = tmp_path / "000.txt"
    listing.write_text("".join(f"{i}\n" for i in reversed(ids)))  # unsorted on purpose
    return images, listing


EXPECTED_REJECTS = {
    "aa0000001.jpg": "corrupt JPEG",
    "aa0000002.jpg": "not a JPEG (PNG data)",
    "aa0000003.jpg": "size 512x512, expected 768x768",
    "aa0000004.jpg": "CMYK JPEG",
    "aa0000006.jpg": "empty file",
    "ff0000000.jpg": "missing (listed but not found)",
}


def run(shard, tmp_path, **changes):
    images, listing = shard
    out = tmp_path / "out"
    tile_shard(images, listing, out / "tiles.parquet", out / "rejects.parquet", **options("tiles", **changes))
    return pq.read_table(out / "tiles.parquet"), pq.read_table(out / "rejects.parquet"), out


def test_tile_table_and_rejects(shard, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    tiles, rejects, out = run(shard, tmp_path)
    assert tiles.schema.equals(TILE_SCHEMA) and rejects.schema.equals(REJECT_SCHEMA)
    accepted = sorted(GOOD + ["aa0000005.jpg"])
    assert tiles.num_rows == 9 * len(accepted)
    ids = tiles.column("image_id").to_pylist()
    assert ids == [i for i in accepted for _ in range(9)]
    assert tiles.column("tile").to_pylist() == list(range(9)) * len(accepted)

    got = dict(zip(rejects.column("image_id").to_pylist(), rejects.column("reason").to_pylist()))
    assert rejects.column("image_id").to_pylist() == sorted(EXPECTED_REJECTS)
    for image_id, reason in EXPECTED_REJECTS.items():
        assert reason in got[image_id]
        assert any(image_id in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    summary = [r.getMessage() for r in caplog.records if "accepted" in r.getMessage()]
    assert len(summary) == 1 and "10 images, 4 accepted" in summary[0] and "6 rejected" in summary[0]
    assert sorted(p.name for p in out.iterdir()) == ["rejects.parquet", "tiles.parquet"]  # no temp files


def test_rows_hold_the_hashes_of_the_chip(shard, tmp_path, real_data):
    tiles, _, _ = run(shard, tmp_path)
    rows = tiles.filter(tiles.column("image_id").to_numpy(zero_copy_only=False) == "5a70ef013.jpg")
    chip = read_chip(real_data / "airbus_samples" / "5a70ef013.jpg")
    cut = cut_tiles(chip)
    h = hash_tiles(cut, **solid_options())
    assert rows.column("xxh3_128").to_pylist() == [xxhash.xxh3_128_digest(cut[t].tobytes()) for t in range(9)]
    assert rows.column("bmh").to_pylist() == [h["bmh"][t].tobytes() for t in range(9)]
    assert rows.column("bmh96").to_pylist() == [h["bmh96"][t].tobytes() for t in range(9)]
    assert rows.column("dominant").to_pylist() == [h["dominant"][t].tobytes() for t in range(9)]
    assert rows.column("solid").to_pylist() == [False, False, False, True, False, False, True, True, True]
    assert np.allclose(rows.column("entropy").to_numpy(), h["entropy"])


def test_threads_give_the_same_tables(shard, tmp_path):
    one, rej1, _ = run(shard, tmp_path / "a")
    two, rej2, _ = run(shard, tmp_path / "b", workers=2)
    assert one.equals(two) and rej1.equals(rej2)


def test_empty_shard_writes_empty_tables_with_the_schema(tmp_path):
    listing = tmp_path / "007.txt"
    listing.write_text("")
    tile_shard(tmp_path, listing, tmp_path / "t.parquet", tmp_path / "r.parquet", **options("tiles"))
    tiles, rejects = pq.read_table(tmp_path / "t.parquet"), pq.read_table(tmp_path / "r.parquet")
    assert tiles.num_rows == 0 and tiles.schema.equals(TILE_SCHEMA)
    assert rejects.num_rows == 0 and rejects.schema.equals(REJECT_SCHEMA)


def test_bad_list_or_options_are_clear_errors(tmp_path):
    with pytest.raises(TiledupError, match="shard list .*nope.txt"):
        tile_shard(tmp_path, tmp_path / "nope.txt", tmp_path / "t.parquet", tmp_path / "r.parquet", **options("tiles"))
    listing = tmp_path / "000.txt"
    listing.write_text("")
    with pytest.raises(TiledupError, match="tiles options"):
        tile_shard(tmp_path, listing, tmp_path / "t.parquet", tmp_path / "r.parquet", **options("tiles", solid_share=1.5))
    assert not (tmp_path / "t.parquet").exists()


def test_cli_runs_the_stage_with_config_options(shard, tmp_path):
    images, listing = shard
    out = tmp_path / "cli"
    options = {"noise_levels": 3, "solid_share": 0.99, "outlier_levels": 24, "solid_outliers": 0.0005,
               "workers": 1}
    rc = cli.main(["tiles", "--images", str(images), "--list", str(listing),
                   "--out", str(out / "000.parquet"), "--rejects", str(out / "r000.parquet"),
                   "--options", json.dumps(options)])
    assert rc == 0
    assert pq.read_table(out / "000.parquet").num_rows == 36
    assert pq.read_table(out / "r000.parquet").num_rows == len(EXPECTED_REJECTS)

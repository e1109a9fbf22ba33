"""Manifest: stable shard assignment, per-shard lists, clear errors for a missing or empty folder."""

import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest

from tiledup.run.errors import TiledupError
from tiledup.grid import TAGS
from tiledup.tiles.manifest import list_images, read_list, shard_name, shard_of, write_manifest


def make_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"\xff\xd8 not decoded by the manifest")


IDS = [f"{i * 7919:09x}.jpg" for i in range(40)]


def test_shard_of_is_stable_across_processes():
    here = [shard_of(i, 7) for i in IDS]
    code = ("import sys; from tiledup.tiles.manifest import shard_of; "
            f"print(' '.join(str(shard_of(i, 7)) for i in {IDS!r}))")
    for seed in ("0", "12345"):  # Python's own str hash is salted per process; ours must not be
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""})
        assert [int(s) for s in out.stdout.split()] == here


def test_shards_are_balanced_and_in_range():
    counts = Counter(shard_of(f"{i:09x}.jpg", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(850 < c < 1150 for c in counts.values()), counts
    assert shard_name(0) == "000" and shard_name(12) == "012"


def test_write_manifest_lists_every_image_once(tmp_path, caplog):
    images = tmp_path / "images"
    make_images(images, IDS + ["extra.JPEG", "notes.txt", "scene.png"])
    out = tmp_path / "manifest" / "manifest.parquet"
    table = write_manifest(images, 3, out, tmp_path / "manifest" / "shards", on_bad_truth="error")
    assert "2 entries without a .jpg/.jpeg suffix were not listed: notes.txt, scene.png" in caplog.text
    assert pq.read_table(out).equals(table)
    ids = table.column("image_id").to_pylist()
    assert ids == sorted(IDS + ["extra.JPEG"])  # only the .jpg/.jpeg suffix counts
    lists = {k: read_list(out.parent / "shards" / f"{shard_name(k)}.txt") for k in range(3)}
    assert sorted(sum(lists.values(), [])) == ids
    for image_id, k in zip(ids, table.column("shard").to_pylist()):
        assert k == shard_of(image_id, 3) and image_id in lists[k]
    assert all(lst == sorted(lst) for lst in lists.values())


def test_adding_images_leaves_untouched_shard_lists_identical(tmp_path):
    images = tmp_path / "images"
    make_images(images, IDS)
    out, lists = tmp_path / "m" / "manifest.parquet", tmp_path / "m" / "shards"
    write_manifest(images, 8, out, lists, on_bad_truth="error")
    before = {k: (lists / f"{shard_name(k)}.txt").read_bytes() for k in range(8)}
    new = "fffffffff.jpg"
    make_images(images, [new])
    write_manifest(images, 8, out, lists, on_bad_truth="error")
    after = {k: (lists / f"{shard_name(k)}.txt").read_bytes() for k in range(8)}
    changed = [k for k in range(8) if before[k] != after[k]]
    assert changed == [shard_of(new, 8)]


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TiledupError, match="does not exist"):
        list_images(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    make_images(empty, ["readme.txt", "labels.csv"])
    with pytest.raises(TiledupError, match=f"{empty}.*holds no .jpg images"):
        write_manifest(empty, 2, tmp_path / "m.parquet", tmp_path / "shards", on_bad_truth="error")
    make_images(empty, ["a.jpg"])
    with pytest.raises(TiledupError, match="shards must be >= 1"):
        write_manifest(empty, 0, tmp_path / "m.parquet", tmp_path / "shards", on_bad_truth="error")


def test_read_list_skips_blank_lines(tmp_path):
    p = tmp_path / "000.txt"
    p.write_text("a.jpg\n\nb.jpg\n")
    assert read_list(p) == ["a.jpg", "b.jpg"]
    p.write_text("")
    assert read_list(p) == []


def test_a_parquet_file_given_as_list_is_a_clear_error(tmp_path):
    images = tmp_path / "images"
    make_images(images, IDS)
    out = tmp_path / "manifest.parquet"
    write_manifest(images, 2, out, tmp_path / "shards", on_bad_truth="error")
    with pytest.raises(TiledupError, match=f"{out}: not a shard list"):
        read_list(out)


def test_truth_naming_missing_images_stops_the_manifest_listing_every_line(tmp_path):
    images = tmp_path / "images"
    make_images(images, IDS)
    truth = tmp_path / "dup_truth.txt"
    truth.write_text(f"{IDS[0]} {IDS[1]} 08 1\n{IDS[0]} gone1.jpg 05 0\n# comment\n"
                     f"gone2.jpg {IDS[2]} 38 1\n{IDS[3]} {IDS[4]} 0 1\n")
    out, lists = tmp_path / "m" / "manifest.parquet", tmp_path / "m" / "shards"
    with pytest.raises(TiledupError) as e:
        write_manifest(images, 2, out, lists, truth_path=truth, on_bad_truth="error")
    assert str(e.value).splitlines()[1:] == [
        f"{truth}:2: image gone1.jpg is not in the images folder {images}",
        f"{truth}:4: image gone2.jpg is not in the images folder {images}",
        f"{truth}:5: unknown overlap tag '0' (expected one of {' '.join(TAGS)})"]
    assert not out.exists() and not lists.exists()  # checked before anything is written
    write_manifest(images, 2, out, lists, truth_path=truth, on_bad_truth="skip")  # left to the truth rule
    assert out.exists()

"""dup_truth reader: canonical keys, merged repeats, and every bad line named by file:line."""

from __future__ import annotations

import pytest

from tiledup.run.errors import TiledupError
from tiledup.grid import TAGS, partner_tag
from tiledup.dup_truth import canonical, read_truth

IMAGES = {"aaa.jpg", "bbb.jpg", "ccc.jpg"}


def write(tmp_path, *lines):
    path = tmp_path / "dup_truth.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_swapped_line_becomes_canonical_with_partner_tag(tmp_path):
    path = write(tmp_path, "bbb.jpg aaa.jpg 38 1", "ccc.jpg aaa.jpg 08 0")
    overlaps, skips = read_truth(path, IMAGES)
    assert skips == []
    rows = {(r.img1, r.img2, r.tag, r.is_dup) for r in overlaps.itertuples()}
    # image 2 one row down from image 1 ("38") is image 1 one row up from image 2 ("05")
    assert rows == {("aaa.jpg", "bbb.jpg", "05", True), ("aaa.jpg", "ccc.jpg", "08", False)}
    assert list(overlaps.line) == [f"{path}:1", f"{path}:2"]


def test_canonical_key_for_every_tag():
    for tag in TAGS:
        assert canonical("a", "b", tag) == ("a", "b", tag)
        assert canonical("b", "a", tag) == ("a", "b", partner_tag(tag))


def test_exact_repeats_merged_either_way_round(tmp_path):
    path = write(tmp_path, "aaa.jpg bbb.jpg 05 1", "aaa.jpg bbb.jpg 05 1", "bbb.jpg aaa.jpg 38 1")
    overlaps, _ = read_truth(path, IMAGES)
    assert len(overlaps) == 1 and overlaps.line[0] == f"{path}:1"


def test_conflicting_labels_name_both_lines(tmp_path):
    path = write(tmp_path, "aaa.jpg bbb.jpg 05 1", "# a comment", "bbb.jpg aaa.jpg 38 0")
    with pytest.raises(TiledupError, match=rf"{path}:1 and {path}:3 label the same overlap"):
        read_truth(path, IMAGES)
    # a conflict is never skipped: it is the truth contradicting itself
    with pytest.raises(TiledupError, match="differently"):
        read_truth(path, IMAGES, on_bad="skip")


def test_comments_and_blank_lines_are_ignored(tmp_path):
    path = write(tmp_path, "# img1 img2 tag is_dup", "", "   ", "aaa.jpg bbb.jpg 08 1")
    overlaps, skips = read_truth(path, IMAGES)
    assert len(overlaps) == 1 and skips == []


@pytest.mark.parametrize("line, message", [
    ("aaa.jpg bbb.jpg 08", "expected 4 fields"),
    ("aaa.jpg bbb.jpg 08 1 extra", "expected 4 fields"),
    ("aaa.jpg bbb.jpg 09 1", "unknown overlap tag '09'"),
    ("aaa.jpg bbb.jpg 80 1", "unknown overlap tag '80'"),
    ("aaa.jpg bbb.jpg 08 2", "is_dup must be 0 or 1"),
    ("aaa.jpg aaa.jpg 08 1", "img1 and img2 are the same image"),
    ("aaa.jpg zzz.jpg 08 1", "image zzz.jpg is not in the images folder /imgs"),
    ("bad.jpg aaa.jpg 08 1", r"image bad.jpg was rejected by the tile stage \(corrupt JPEG\)"),
])
def test_bad_line_error_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path, "aaa.jpg bbb.jpg 08 1", line)
    with pytest.raises(TiledupError, match=rf"(?m)^{path}: 1 bad line\(s\).*\n{path}:2: {message}"):
        read_truth(path, IMAGES, {"bad.jpg": "corrupt JPEG"}, images_dir="/imgs")


def test_every_bad_line_is_listed_at_once_up_to_a_cap(tmp_path):
    # a rejected chip in 18 lines, then a file with 3 more bad lines among good ones
    lines = [f"bad.jpg {other} 08 {k % 2}" for k, other in enumerate(["aaa.jpg", "bbb.jpg", "ccc.jpg"] * 6)]
    path = write(tmp_path, *lines)
    with pytest.raises(TiledupError) as e:
        read_truth(path, IMAGES, {"bad.jpg": "corrupt JPEG"})
    listed = str(e.value).splitlines()[1:]
    assert str(e.value).startswith(f"{path}: 18 bad line(s)")
    assert listed == [f"{path}:{n}: image bad.jpg was rejected by the tile stage (corrupt JPEG)" for n in range(1, 19)]
    path = write(tmp_path, *lines, "aaa.jpg bbb.jpg 99 1", "aaa.jpg", "aaa.jpg ccc.jpg 08 1", "ccc.jpg bbb.jpg 08 x")
    with pytest.raises(TiledupError) as e:
        read_truth(path, IMAGES, {"bad.jpg": "corrupt JPEG"})
    text = str(e.value).splitlines()
    assert text[0].startswith(f"{path}: 21 bad line(s)") and len(text) == 1 + 20 + 1
    assert text[-2] == f"{path}:20: expected 4 fields `img1 img2 tag is_dup`, got 1"
    assert text[-1] == "... and 1 more"


def test_every_conflict_is_listed(tmp_path):
    path = write(tmp_path, "aaa.jpg bbb.jpg 05 1", "bbb.jpg aaa.jpg 38 0", "aaa.jpg ccc.jpg 08 1",
                 "aaa.jpg ccc.jpg 08 0", "zzz.jpg aaa.jpg 08 1")
    with pytest.raises(TiledupError) as e:
        read_truth(path, IMAGES, on_bad="skip")
    text = str(e.value)
    assert text.startswith(f"{path}: 2 overlap(s) labelled twice")
    assert f"{path}:1 and {path}:2 label" in text and f"{path}:3 and {path}:4 label" in text


def test_skip_mode_lists_every_bad_line_and_keeps_the_rest(tmp_path):
    path = write(tmp_path, "aaa.jpg bbb.jpg 08 1", "aaa.jpg zzz.jpg 08 1", "garbage", "aaa.jpg ccc.jpg 77 0")
    overlaps, skips = read_truth(path, IMAGES, on_bad="skip")
    assert len(overlaps) == 1
    assert [s["line"] for s in skips] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "not in the images folder" in skips[0]["reason"] and skips[1]["text"] == "garbage"


def test_unknown_switch_and_missing_file(tmp_path):
    path = write(tmp_path, "aaa.jpg bbb.jpg 08 1")
    with pytest.raises(TiledupError, match="on_bad_truth"):
        read_truth(path, IMAGES, on_bad="ignore")
    with pytest.raises(TiledupError, match="nope.txt: cannot read"):
        read_truth(tmp_path / "nope.txt", IMAGES)


def test_empty_file_gives_no_overlaps(tmp_path):
    overlaps, skips = read_truth(write(tmp_path, "# nothing"), IMAGES)
    assert len(overlaps) == 0 and list(overlaps.columns) == ["img1", "img2", "tag", "is_dup", "line"]

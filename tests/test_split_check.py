"""check-split: a user's existing split checked against the duplicates found, lenient on its columns."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiledup import cli
from tiledup.discovery.split_check import check_split, describe, read_split
from tiledup.run.errors import TiledupError

IDS = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]


@pytest.fixture
def found(tmp_path):
    """a~b duplicate (tag 18), b~c duplicate, d~e not duplicate, e~f undecidable; groups {a, b, c}, d, e, f."""
    overlaps = pd.DataFrame({"img1": ["a.jpg", "b.jpg", "d.jpg", "e.jpg"], "img2": ["b.jpg", "c.jpg", "e.jpg", "f.jpg"],
                             "tag": ["18", "38", "08", "05"], "score": [0.9, 0.8, 0.1, None],
                             "is_dup": [True, True, False, None], "n_informative": [6, 6, 9, 0]})
    pq.write_table(pa.Table.from_pandas(overlaps.astype({"n_informative": "int8"}), preserve_index=False),
                   tmp_path / "overlaps.parquet")
    groups = pd.DataFrame({"image_id": IDS, "group": [0, 0, 0, 1, 2, 3]})
    pq.write_table(pa.Table.from_pandas(groups, preserve_index=False), tmp_path / "groups.parquet")
    return tmp_path / "overlaps.parquet", tmp_path / "groups.parquet"


def test_leaking_overlaps_chips_groups_and_counts_per_split_pair(tmp_path, found):
    split = tmp_path / "split.csv"
    # other column names, paths and missing extensions, an unknown chip; f is not in the split
    split.write_text("Filename,Subset\nimgs/a.jpg,train\nb,Test\nc.jpg,train\nd.jpg,val\ne.jpg,test\nz.jpg,train\n")
    s = check_split(split, *found, out_path=tmp_path / "check.json", csv_path=tmp_path / "leaks.csv")
    assert s["leaking_overlaps"] == 2 and s["decided_duplicate_overlaps"] == 2
    assert [o["by_verdict"] for o in s["leaking"]] == [False, False]  # verify decided them
    assert s["leaking_overlaps_by_split_pair"] == {"test / train": 2}
    assert s["leaking_chips"] == 3 and s["units_cut"] == 1 and s["groups_cut"] == 1
    assert s["cut_groups"] == [{"group": 0, "splits": ["test", "train"]}]
    assert s["n_unknown_images"] == 1 and s["unknown_images"] == ["z.jpg"] and s["n_images_not_in_split"] == 1
    assert s["images_per_split"] == {"test": 2, "train": 2, "val": 1}
    assert "; 1 not among the tiled chips (z.jpg), 1 tiled chips not in it" in describe(s)[0]
    leaks = pd.read_csv(tmp_path / "leaks.csv", dtype={"tag": str})
    assert leaks[["img1", "img2", "tag", "split1", "split2"]].values.tolist() == [
        ["b.jpg", "c.jpg", "38", "test", "train"], ["a.jpg", "b.jpg", "18", "train", "test"]]  # by split pair
    assert json.loads((tmp_path / "check.json").read_text())["leaking_overlaps"] == 2


def test_a_clean_split_and_the_same_place_at_another_time(tmp_path, found):
    split = tmp_path / "split.csv"
    split.write_text("image_id,split\na.jpg,train\nb.jpg,train\nc.jpg,train\nd.jpg,val\ne.jpg,test\nf.jpg,test\n")
    s = check_split(split, *found)
    assert s["leaking_overlaps"] == 0 and s["units_cut"] == 0 and s["groups_cut"] == 0  # d~e: another time


def test_the_run_summary_reports_the_users_split(tmp_path, found, capsys):
    """With `split_check`, the end-of-run summary says what leaks in the user's split and where the list is."""
    from tiledup.discovery.summary import print_summary

    split = tmp_path / "split.csv"
    split.write_text("image_id,split\na.jpg,train\nb.jpg,test\nc.jpg,train\nd.jpg,val\ne.jpg,test\nf.jpg,test\n")
    check_split(split, *found, out_path=tmp_path / "split_check.json")
    missing = {k: tmp_path / f"none.{k}" for k in ("manifest", "rejects", "overlaps", "groups", "split", "conflicts",
                                                    "removable", "report")}  # a run that reached only split_check
    print_summary(**missing, split_check=tmp_path / "split_check.json")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Your split checked ({tmp_path / 'split_check.json'}, every leak in {tmp_path / 'split_check.csv'}):"
    assert out[2].startswith("  2 of 2 decided-duplicate overlaps leak across splits (test / train: 2)")


def test_verdicts_change_what_leaks(tmp_path, found):
    split = tmp_path / "split.csv"
    split.write_text("image_id,split\na.jpg,train\nb.jpg,train\nc.jpg,train\nd.jpg,val\ne.jpg,test\nf.jpg,test\n")
    verdicts = tmp_path / "verdicts.txt"
    verdicts.write_text("d.jpg e.jpg 08 1\n")
    s = check_split(split, *found, verdicts_path=verdicts)
    assert s["leaking_overlaps"] == 1 and s["leaking"][0]["by_verdict"] is True  # a person's, not verify's


@pytest.mark.parametrize("text, message", [
    ("name_of_image,split\na.jpg,train\n", r"split.csv:1: no image column among 'name_of_image', 'split'"),
    ("image_id,kind\na.jpg,train\n", r"split.csv:1: no split column"),
    ("image_id,split\na.jpg,train\nb.jpg,\n", r"split.csv:3: empty 'image_id' or 'split'"),
    ("image_id,split\na.jpg,train\nb.jpg,val\na.jpg,test\n", r"split.csv:4: a.jpg in test"),
])
def test_bad_split_files_name_the_file_and_line(tmp_path, text, message):
    split = tmp_path / "split.csv"
    split.write_text(text)
    with pytest.raises(TiledupError, match=message):
        read_split(split, IDS)


def test_command_line(tmp_path, found, capsys, caplog):
    split = tmp_path / "split.csv"
    split.write_text("image,fold\na.jpg,0\nb.jpg,1\nc.jpg,1\n")
    out = tmp_path / "check.json"
    assert cli.main(["check-split", str(split), "--overlaps", str(found[0]), "--groups", str(found[1]),
                     "--out", str(out)]) == 0
    assert json.loads(out.read_text())["leaking_overlaps_by_split_pair"] == {"0 / 1": 1}
    assert "1 of 2 decided-duplicate overlaps leak across splits (0 / 1: 1)" in capsys.readouterr().out
    assert "overlaps leak across splits" not in caplog.text  # printed once: not logged as well
    assert cli.main(["check-split", str(tmp_path / "nope.csv"), "--overlaps", str(found[0]),
                     "--groups", str(found[1])]) == 2
    assert "nope.csv: cannot read the split as CSV" in caplog.text

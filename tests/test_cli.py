"""The command line: parsing, option errors, and the one-line error for bad input."""

import pytest

from tiledup.cli import main


def test_bad_options_json_is_a_clear_error(tmp_path, caplog):
    code = main(["pairs", "--tiles", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "p.parquet"),
                 "--options", "{not json"])
    assert code == 2
    assert "--options is not valid JSON" in caplog.text


def test_missing_images_folder_names_it(tmp_path, caplog):
    code = main(["manifest", "--images", str(tmp_path / "absent"), "--shards", "2",
                 "--out", str(tmp_path / "m.parquet"), "--lists", str(tmp_path / "shards")])
    assert code == 2
    assert str(tmp_path / "absent") in caplog.text


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["frobnicate"])


def test_unknown_config_key_is_named(tmp_path, caplog):
    code = main(["tiles", "--images", str(tmp_path), "--list", str(tmp_path / "l.txt"),
                 "--out", str(tmp_path / "t.parquet"), "--rejects", str(tmp_path / "r.parquet"),
                 "--options", '{"noise_levels": 3, "bogus": 1}'])
    assert code == 2
    assert "unknown `tiles` config key(s): bogus" in caplog.text


def test_corrupt_parquet_input_names_the_file(tmp_path, caplog):
    bad = tmp_path / "000.parquet"
    bad.write_bytes(b"not parquet at all")
    code = main(["pairs", "--tiles", str(bad), "--out", str(tmp_path / "p.parquet")])
    assert code == 2
    assert f"{bad}: tile table is not readable Parquet" in caplog.text

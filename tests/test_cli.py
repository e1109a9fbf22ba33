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


def test_version_comes_from_the_package_metadata(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"tiledup {metadata.version('tiledup')}"


def test_help_says_what_the_tool_and_each_command_are_for(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "same-place, same-time duplicate chips" in text and "delegates" not in text
    for command in ("demo", "manifest", "tiles", "pairs", "dataset", "train", "evaluate"):
        assert f"\n    {command} " in text, command
    assert "tail -f results/logs/" in text


def test_every_option_of_every_command_has_help():
    import argparse

    from tiledup.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = {"tiledup": parser, **sub.choices}
    missing = [f"{name} {'/'.join(a.option_strings)}" for name, p in parsers.items() for a in p._actions
               if a.option_strings and not (a.help and a.help.strip() and a.help != argparse.SUPPRESS)]
    assert missing == []
    assert all(p.description and len(p.description) > 40 for p in sub.choices.values())

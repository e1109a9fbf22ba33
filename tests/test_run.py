"""`tiledup run`: one command per folder (a real Snakemake run on the real chips), the record that keeps
two folders apart, stale shard tables removed, the end-of-run summary, and the exports."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tiledup.discovery.exports import duplicate_map, removable
from tiledup.run.errors import TiledupError
from tiledup.run.inputs import check_inputs, write_inputs
from tiledup.run.launch import parse_sets
from tiledup.tiles.manifest import remove_stale_shards

from conftest import copy_chips
from procs import kill_tagged, tagged, tagged_env, wait_until

FAST = ["--set", "train.epochs=1", "--set", "train.model.width=8", "--set", "train.pretrained=none", "--set", "sample.pairs=200",
        "--set", "evaluate.val_pairs=200", "--set", "evaluate.val_repeats=1", "--set", "shards=3"]


def test_set_options_nest_and_parse_as_yaml():
    assert parse_sets(["train.epochs=1", "train.model.width=8", "groups.fractions={train: 0.5, val: 0.5, test: 0}",
                       "truth="]) == {"train": {"epochs": 1, "model": {"width": 8}},
                                      "groups": {"fractions": {"train": 0.5, "val": 0.5, "test": 0}}, "truth": ""}
    for bad in ("train.epochs", "=1", "train..epochs=1"):
        with pytest.raises(TiledupError, match="expected key.path=value"):
            parse_sets([bad])


def test_results_folder_refuses_another_images_folder(tmp_path):
    write_inputs(tmp_path, str(tmp_path / "a"), "", {"shards": 4})
    check_inputs(tmp_path, str(tmp_path / "a"))  # the same folder: a re-run
    with pytest.raises(TiledupError) as e:
        check_inputs(tmp_path, str(tmp_path / "b"))
    assert f"holds the results of another images folder ({tmp_path / 'a'})" in str(e.value)
    assert "--out DIR" in str(e.value) and "--force" in str(e.value)
    check_inputs(tmp_path / "new", str(tmp_path / "b"))  # a new folder is always fine


def test_stale_shard_tables_are_removed(tmp_path):
    for folder in ("tiles", "rejects", "pairs", "logs/tiles"):
        (tmp_path / folder).mkdir(parents=True)
        for k in range(8):
            (tmp_path / folder / f"{k:03d}.{'log' if 'logs' in folder else 'parquet'}").write_text("x")
    gone = remove_stale_shards(tmp_path, 3)
    assert len(gone) == 4 * 5
    for folder in ("tiles", "rejects", "pairs", "logs/tiles"):
        assert sorted(p.stem for p in (tmp_path / folder).iterdir()) == ["000", "001", "002"]


def test_duplicate_map_and_removable_chips():
    overlaps = pd.DataFrame({"img1": ["a", "a", "b", "c", "d"], "img2": ["b", "c", "c", "e", "e"],
                             "tag": ["08", "38", "38", "08", "08"], "score": [0.9, 0.7, 0.8, 0.95, 0.2],
                             "is_dup": [True, True, True, True, None]})
    dmap = duplicate_map(["a", "b", "c", "d", "e", "f"], overlaps)
    assert list(dmap) == ["a", "b", "c", "d", "e", "f"] and dmap["f"] == [] and dmap["d"] == []
    assert dmap["a"] == [{"image": "b", "tag": "08", "score": 0.9}, {"image": "c", "tag": "38", "score": 0.7}]
    assert dmap["c"] == [{"image": "e", "tag": "08", "score": 0.95}, {"image": "b", "tag": "05", "score": 0.8},
                         {"image": "a", "tag": "05", "score": 0.7}]  # the partner tag, seen from c
    # a = b at one position (kept: a); c = e by a tag-08 decision but the groups cut it (other positions);
    # d and f have identical pixels at one position: f goes
    groups = pd.DataFrame({"image_id": list("abcdef"), "group": [0, 0, 0, 1, 2, 1], "row": [0, 0, 1, 0, 0, 0],
                           "col": [0, 0, 0, 0, 0, 0]})
    assert removable(groups, overlaps, [["d", "f"]]) == ["b", "f"]
    assert removable(groups, overlaps.iloc[:0], []) == []


@pytest.fixture(scope="module")
def chips_run(tmp_path_factory, airbus_chips):
    """`tiledup run` on the real chips, no truth, into a named folder (a real Snakemake run)."""
    root = tmp_path_factory.mktemp("run")
    images = copy_chips(airbus_chips, root / "my chips")
    out = root / "found"
    proc = tiledup_run(str(images), "--out", str(out), *FAST)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return images, out, proc.stdout


def tiledup_run(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([sys.executable, "-m", "tiledup.cli", "run", "--cores", "2", *args], env=env,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_run_writes_everything_into_the_named_folder(chips_run, airbus_chips):
    images, out, output = chips_run
    record = json.loads((out / "inputs.json").read_text())
    assert record["images"] == str(images) and record["truth"] == ""
    groups = pq.read_table(out / "groups/groups.parquet").to_pandas()
    assert sorted(groups.image_id) == sorted(c.name for c in airbus_chips)
    split = pd.read_csv(out / "groups/split.csv")
    assert (split.groupby("group").split.nunique() == 1).all()
    assert not Path("results/groups/duplicates.json").resolve().is_relative_to(out)  # nothing elsewhere
    # the console ends with what was found and where
    tail = output[output.rindex("Duplicates found:"):]
    assert f"Split: " in tail and str(out / "groups/split.csv") in tail
    assert f"Report: {out / 'eval/report.html'}" in tail and "Rejected images: none of 24." in tail
    assert "Shell command:" not in output  # the shell commands are not echoed
    # the report: the found duplicates first, without a truth and without "no overlap was scored"
    page = (out / "eval/report.html").read_text()
    assert "No truth was given" in page and "no overlap was scored" not in page
    assert page.index('id="duplicates"') < page.index('id="groups"') < page.index('id="model"')


@pytest.mark.slow
def test_exports_on_real_chips(chips_run):
    _, out, _ = chips_run
    found = pq.read_table(out / "overlaps/overlaps.parquet").to_pandas()
    dups = found[found.is_dup.fillna(False).astype(bool)]
    dmap = json.loads((out / "groups/duplicates.json").read_text())
    assert len(dmap) == 24 and sum(len(v) for v in dmap.values()) == 2 * len(dups)
    for a, b, tag in zip(dups.img1, dups.img2, dups.tag):
        assert tag in [e["tag"] for e in dmap[a] if e["image"] == b]
    groups = pq.read_table(out / "groups/groups.parquet").to_pandas().set_index("image_id")
    drop = (out / "groups/removable.txt").read_text().split()
    full = dups[dups.tag == "08"]
    for chip in drop:  # each one a full-overlap duplicate of a chip at its position, never all of a set
        partners = set(full.img2[full.img1 == chip]) | set(full.img1[full.img2 == chip])
        assert any((groups.loc[p, ["group", "row", "col"]] == groups.loc[chip, ["group", "row", "col"]]).all()
                   for p in partners) or partners == set(), chip
    kept = set(groups.index) - set(drop)
    assert set(full.img1) | set(full.img2) <= kept | set(drop) and kept


@pytest.mark.slow
def test_a_rerun_with_nothing_to_do_shows_the_last_summary(chips_run):
    """Snakemake runs no end-of-run handler when nothing is to be done; the run's saved summary is shown."""
    images, out, output = chips_run
    proc = tiledup_run(str(images), "--out", str(out), *FAST)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Nothing to be done" in proc.stdout and "Every result is up to date" in proc.stdout
    saved = (out / "logs/summary.txt").read_text()
    assert saved.strip() and saved in output and proc.stdout.endswith(saved)


@pytest.mark.slow
def test_second_folder_into_the_same_results_is_refused(chips_run, tmp_path, airbus_chips):
    images, out, _ = chips_run
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(airbus_chips[0], other / airbus_chips[0].name)
    before = (out / "inputs.json").read_text()
    # a dry run of the replacement plans it and leaves the record: the folder is still the first one's
    proc = tiledup_run(str(other), "--out", str(out), "--force", *FAST, "--", "-n")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "This was a dry-run" in proc.stdout and (out / "inputs.json").read_text() == before
    proc = tiledup_run(str(other), "--out", str(out), *FAST)
    assert proc.returncode == 2
    assert f"{out} holds the results of another images folder ({images})" in proc.stdout + proc.stderr
    assert (out / "inputs.json").read_text() == before and "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_stop_signal_says_in_one_line_what_stopped_and_how_to_resume(chips_run):
    """SIGTERM to `tiledup run` while DupNet trains, launched as a script's background job (SIGINT
    ignored, which children inherit): Snakemake and its jobs stop all the same, and the console gets
    one line naming the step and the command that resumes, instead of Snakemake's report of the killed job."""
    images, work, _ = chips_run  # the run's own folder: a stopped training keeps the finished model
    tag, env = tagged_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    args = [sys.executable, "-m", "tiledup.cli", "run", str(images), "--out", str(work), "--cores", "2", *FAST,
            "--set", "train.epochs=1000", "--set", "train.early_stop=0"]  # a training that outlasts the signal
    # `tiledup run ... &` in a script: SIGINT ignored from the start
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("localrule train:"):
                break
        assert wait_until(lambda: any("tiledup train" in cmd for _, _, cmd in tagged(tag)), 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM  # before reading: a run that goes on fails here
        rest = proc.stdout.read()
        # the rest of the job's block (printed before the signal), then the one line; no error report
        assert rest.strip().splitlines()[-1] == (
            "tiledup run stopped by SIGTERM during train; finished steps are kept, so the same command resumes: "
            + shlex.join(["tiledup", *args[3:]]))
        assert rest.count("tiledup run stopped") == 1
        assert not any(word in rest for word in ("RuleException", "Error", "Traceback", "Shell command"))
        assert wait_until(lambda: not tagged(tag), 30) is not None, tagged(tag)
    finally:
        proc.kill()
        kill_tagged(tag)


@pytest.mark.slow
def test_lower_shard_count_leaves_no_tables_of_the_earlier_count(chips_run):
    # the run's own folder (Snakemake's record of its params is kept by path), so this test comes last
    images, work, _ = chips_run
    before = sorted(p.name for p in (work / "tiles").glob("*.parquet"))
    assert before == ["000.parquet", "001.parquet", "002.parquet"]
    proc = tiledup_run(str(images), "--out", str(work), *FAST, "--set", "shards=2", "--", "pairs")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for folder in ("tiles", "rejects", "pairs"):
        assert sorted(p.name for p in (work / folder).glob("*.parquet")) == ["000.parquet", "001.parquet"]
    tiles = pq.read_table(sorted((work / "tiles").glob("*.parquet"))).to_pandas()
    assert tiles.image_id.nunique() == 24 and len(tiles) == 9 * 24  # no image twice


def test_a_users_config_file_sits_between_the_defaults_and_the_runs_own(tmp_path):
    """`tiledup run --configfile my.yaml`: my.yaml over config/config.yaml, the run's --set and folders last."""
    from tiledup.run.launch import snakemake_command

    mine = tmp_path / "my.yaml"
    mine.write_text("train: {epochs: 1}\n")
    cmd = snakemake_command(Path("/clone/Snakefile"), tmp_path / "run.yaml", 2, None, ["-n"], [mine])
    assert cmd[-4:] == ["--configfile", "/clone/config/config.yaml", str(mine), str(tmp_path / "run.yaml")]
    assert cmd[1] == "-n"  # Snakemake's own arguments come before --configfile takes every word after it


def test_files_named_with_set_are_the_users_from_where_the_command_was_typed(tmp_path, monkeypatch, airbus_chips):
    """Snakemake runs in the clone, so verdicts, split_check and a start model given relative to the user's
    folder are written into run.yaml as absolute paths; the words packaged and none stay words."""
    import yaml

    from tiledup.run.launch import prepare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("")
    run = prepare(airbus_chips[0].parent, tmp_path / "out", None,
                  ["verdicts=mine.txt", "split_check=sub/split.csv", "train.pretrained=none"])
    config = yaml.safe_load(run.read_text())
    assert config["verdicts"] == str(tmp_path / "mine.txt")
    assert config["split_check"] == str(tmp_path / "sub" / "split.csv")
    assert config["train"]["pretrained"] == "none"
    run = prepare(airbus_chips[0].parent, tmp_path / "out", None, ["train.pretrained=models/dupnet.pt"])
    assert yaml.safe_load(run.read_text())["train"]["pretrained"] == str(tmp_path / "models" / "dupnet.pt")


def test_files_named_in_a_users_config_file_are_the_users_too(tmp_path, monkeypatch, airbus_chips):
    """The same for paths in a --configfile: run.yaml holds them resolved from where the command was
    typed (a --set of the same key wins); other keys of the file are left to the file."""
    import yaml

    from tiledup.run.launch import prepare

    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "my.yaml"
    mine.write_text("verdicts: review/verdicts.txt\ntrain: {pretrained: models/start.pt, epochs: 1}\n")
    run = prepare(airbus_chips[0].parent, tmp_path / "out", None, [], configfiles=[mine])
    config = yaml.safe_load(run.read_text())
    assert config["verdicts"] == str(tmp_path / "review" / "verdicts.txt")
    assert config["train"] == {"pretrained": str(tmp_path / "models" / "start.pt")}
    run = prepare(airbus_chips[0].parent, tmp_path / "out", None, ["verdicts=other.txt"], configfiles=[mine])
    assert yaml.safe_load(run.read_text())["verdicts"] == str(tmp_path / "other.txt")
    mine.write_text("verdicts: [unclosed\n")
    with pytest.raises(TiledupError, match="my.yaml"):
        prepare(airbus_chips[0].parent, tmp_path / "out", None, [], configfiles=[mine])

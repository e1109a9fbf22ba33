"""The real Snakemake workflow: tiny demo end to end, incremental shards, config edits, lint,
shard-count changes, early truth checks, rejects surfaced, and recovery from a hard kill."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from tiledup.tiles.manifest import shard_name, shard_of
from tiledup.model.dupnet import load_dupnet

from bad_chips import write_bad_chips
from conftest import copy_chips
from procs import kill_tagged, tagged, tagged_env, wait_until
from workflow import TINY, planned_jobs, snakemake, snakemake_command, workflow_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One end-to-end run of the tiny demo (demo -> tiles -> pairs -> dataset -> train -> evaluate)."""
    work = workflow_copy(tmp_path_factory.mktemp("demo"))
    proc = snakemake(work, "--configfile", "config/config.yaml", str(TINY))
    (work / "snakemake.out").write_text(proc.stdout + proc.stderr)
    return work


def test_demo_run_produces_every_stage(demo_run):
    shards = [p.stem for p in sorted((demo_run / "results/tiles").glob("*.parquet"))]
    assert shards == [shard_name(k) for k in range(len(shards))] and shards
    layout = pq.read_table(demo_run / "results/demo/layout.parquet").to_pandas()
    tiles = pq.read_table(sorted((demo_run / "results/tiles").glob("*.parquet"))).to_pandas()
    assert sorted(tiles.image_id.unique()) == sorted(layout.image_id)
    assert all(sorted(t) == list(range(9)) for t in tiles.groupby("image_id").tile.apply(list))
    counts = json.loads((demo_run / "results/dataset/counts.json").read_text())
    assert set(counts) >= {"train", "val", "test"}
    history = (demo_run / "results/model/history.csv").read_text().splitlines()
    val_acc = float(history[-1].split(",")[5])
    assert val_acc >= 0.7, f"tiny demo: validation accuracy {val_acc} is not clearly above chance"
    metrics = json.loads((demo_run / "results/eval/metrics.json").read_text())
    assert metrics["n_overlaps"] > 0 and "dupnet" in metrics["methods"]
    html = (demo_run / "results/eval/report.html").read_text()
    assert "<table" in html and "dupnet" in html.lower()
    logs = {p.relative_to(demo_run / "results/logs").as_posix() for p in (demo_run / "results/logs").rglob("*.log")}
    assert {"demo.log", "manifest.log", "rejects.log", "truth.log", "dataset.log", "train.log",
            "evaluate.log", "candidates.log", "verify.log", "groups.log"} <= logs
    # the truth was checked into a table of its own, which evaluate scored
    checked = pq.read_table(demo_run / "results/truth/overlaps.parquet")
    assert checked.column_names == ["img1", "img2", "tag", "is_dup", "source"]
    assert checked.num_rows == metrics["n_overlaps"] and metrics["skipped_truth_lines"] == []
    assert metrics["rejects"] == {"n_images": len(layout), "n_rejected": 0, "by_reason": {}, "images": []}
    assert f"Rejected images: none of {len(layout)}." in (demo_run / "snakemake.out").read_text()


def test_demo_run_discovers_overlaps_groups_and_a_split(demo_run):
    results = demo_run / "results"
    candidates = pq.read_table(results / "overlaps/candidates.parquet").to_pandas()
    overlaps = pq.read_table(results / "overlaps/overlaps.parquet").to_pandas()
    assert len(candidates) == len(overlaps) > 0
    assert (candidates.img1 < candidates.img2).all() and set(candidates.how) <= {"hash", "implied"}
    groups = pq.read_table(results / "groups/groups.parquet").to_pandas()
    layout = pq.read_table(results / "demo/layout.parquet").to_pandas()
    assert sorted(groups.image_id) == sorted(layout.image_id)  # every chip in exactly one group
    split = pd.read_csv(results / "groups/split.csv")
    assert (split.groupby("group").split.nunique() == 1).all()
    lines = [line for line in (results / "overlaps/dup_truth.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert len(lines) == int(overlaps.is_dup.notna().sum())
    d = json.loads((results / "eval/metrics.json").read_text())["discovery"]
    assert d["candidates"]["recall"] is not None and d["decisions"]["n_overlaps"] == len(overlaps)
    assert 'id="discovery"' in (results / "eval/report.html").read_text()


def test_nothing_left_to_do_after_a_run(demo_run):
    proc = snakemake(demo_run, "--configfile", "config/config.yaml", str(TINY), "-n")
    assert planned_jobs(proc) == {}, proc.stdout


def test_pairs_edit_reruns_pairs_and_downstream_only(demo_run, tmp_path):
    edit = tmp_path / "edit.yaml"
    edit.write_text("pairs:\n  min_bmh_sim: 0.123\n")  # nested keys merge into the block
    proc = snakemake(demo_run, "--configfile", "config/config.yaml", str(TINY), str(edit), "-n")
    jobs = planned_jobs(proc)
    assert {"pair_shard", "dataset", "train", "verify", "groups", "evaluate"} <= set(jobs), jobs
    assert not {"demo", "manifest", "tile_shard", "candidates"} & set(jobs), jobs


@pytest.mark.parametrize("edit, reruns", [
    ("candidates:\n  radius: 12\n", {"candidates", "verify", "groups", "exports", "evaluate"}),
    ("verify:\n  chunk: 77\n", {"verify", "groups", "exports", "evaluate"}),
    ("groups:\n  seed: 3\n", {"groups", "exports", "evaluate"}),
    # the truth is re-checked and re-scored, but nothing is retrained or re-verified
    ("on_bad_truth: skip\n", {"manifest", "rejects", "truth", "evaluate"}),
])
def test_config_edits_rerun_that_rule_and_downstream_only(demo_run, tmp_path, edit, reruns):
    (tmp_path / "edit.yaml").write_text(edit)
    proc = snakemake(demo_run, "--configfile", "config/config.yaml", str(TINY), str(tmp_path / "edit.yaml"), "-n")
    jobs = set(planned_jobs(proc)) - {"all"}
    assert jobs == reruns, proc.stdout


def test_verdicts_rerun_groups_exports_and_evaluate_only_and_a_split_check_adds_its_rule(demo_run, tmp_path):
    """A person's verdicts are inputs of groups, exports and evaluate only; split_check adds one rule after
    groups."""
    first = pd.read_csv(demo_run / "results/groups/split.csv").image_id.iloc[0]
    other = pd.read_csv(demo_run / "results/groups/split.csv").image_id.iloc[1]
    verdicts = tmp_path / "verdicts.txt"
    verdicts.write_text(f"{first} {other} 08 0\n")
    proc = snakemake(demo_run, "--configfile", "config/config.yaml", str(TINY), "--config", f"verdicts={verdicts}", "-n")
    assert set(planned_jobs(proc)) - {"all"} == {"groups", "exports", "evaluate"}, proc.stdout
    for rule in ("groups", "exports", "evaluate"):  # each reads the file itself, not only groups' outputs
        inputs = re.search(rf"^rule {rule}:\n    input: ([^\n]*)", proc.stdout, re.M).group(1).split(", ")
        assert str(verdicts) in inputs, (rule, inputs)
    split = tmp_path / "my_split.csv"
    split.write_text(f"filename,subset\n{first},train\n{other},test\n")
    proc = snakemake(demo_run, "--configfile", "config/config.yaml", str(TINY), "--config", f"split_check={split}", "-n")
    assert set(planned_jobs(proc)) - {"all"} == {"split_check"}, proc.stdout


def test_ctrl_c_during_training_leaves_nothing_running(demo_run, tmp_path):
    """Ctrl-C in the terminal (SIGINT to snakemake's process group) while DupNet trains with
    its loader workers: snakemake, the job and every worker are gone within seconds."""
    work = tmp_path / "run"
    shutil.copytree(demo_run, work, symlinks=True)
    longer = tmp_path / "longer.yaml"
    longer.write_text("train:\n  epochs: 50\n  early_stop: 0\n")  # extends the finished run
    tag, env = tagged_env()
    cmd, env = snakemake_command("train", "--configfile", "config/config.yaml", str(TINY), str(longer), env=env)
    out = tmp_path / "snakemake.out"
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True,  # its own process group, as a terminal gives it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        loader = lambda: sum("multiprocessing.forkserver" in cmd for _, _, cmd in tagged(tag)) >= 3  # noqa: E731
        assert wait_until(lambda: loader() or proc.poll() is not None, 180, step=0.2) is not None
        assert proc.poll() is None, f"snakemake ended before training had its workers:\n{out.read_text()}"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) != 0
        left = wait_until(lambda: not tagged(tag), 5)
        assert left is not None, f"left running after Ctrl-C: {tagged(tag)}"
        assert "tiledup train stopped by SIGINT" in (work / "results/logs/train.log").read_text()
    finally:
        proc.kill()
        kill_tagged(tag)


def test_adding_images_reruns_only_their_shards(tmp_path, airbus_chips):
    images = copy_chips(airbus_chips[:12], tmp_path / "images")
    (tmp_path / "wf").mkdir()
    work = workflow_copy(tmp_path / "wf")
    config = ["--config", f"images={images}", "shards=8"]
    snakemake(work, "tiles", *config)

    added = airbus_chips[12:14]
    copy_chips(added, images)
    # The manifest re-runs (the folder changed); its per-shard lists decide the rest.
    snakemake(work, "results/manifest/manifest.parquet", *config)
    proc = snakemake(work, "tiles", "-n", "-p", *config)
    touched = {shard_name(shard_of(c.name, 8)) for c in added}
    planned = {line.split("results/tiles/")[1][:3] for line in proc.stdout.splitlines()
               if "output:" in line and "results/tiles/" in line}
    assert planned == touched, proc.stdout
    assert planned_jobs(proc)["tile_shard"] == len(touched)


# Real chips of tests/data/airbus_samples among which the candidate search finds no overlap at all
# (an independent set of its candidate graph on all 24; 9a2f9d347 left out: it covers 73fec0637).
NO_OVERLAP = ["119d6a3d6.jpg", "2b6c7fd55.jpg", "4add7aa1d.jpg", "5a70ef013.jpg", "73fec0637.jpg", "770c46cd4.jpg",
              "996f92939.jpg", "9ddeed533.jpg", "addc11de0.jpg", "b4eba96e8.jpg"]


def test_real_chips_that_overlap_nothing_run_to_the_end(tmp_path, real_data):
    """No candidate, no duplicate: every stage still runs, with groups of one chip, a split and a report."""
    images = _images(tmp_path, [real_data / "airbus_samples" / name for name in NO_OVERLAP])
    (tmp_path / "wf").mkdir()
    work = workflow_copy(tmp_path / "wf")
    snakemake(work, "--configfile", "config/config.yaml", str(TINY), "--config", f"images={images}")
    results = work / "results"
    assert pq.read_table(results / "overlaps/candidates.parquet").num_rows == 0
    assert pq.read_table(results / "overlaps/overlaps.parquet").num_rows == 0
    groups = pq.read_table(results / "groups/groups.parquet").to_pandas()
    assert sorted(groups.image_id) == NO_OVERLAP and (groups.n_images == 1).all()
    split = pd.read_csv(results / "groups/split.csv")
    assert sorted(split.image_id) == NO_OVERLAP and set(split.split) == {"train", "val", "test"}
    leaks = json.loads((results / "groups/leaks.json").read_text())
    assert leaks["decided_duplicate_overlaps"] == 0 and leaks["leaked_decided_duplicates"] == 0
    d = json.loads((results / "eval/metrics.json").read_text())["discovery"]
    assert d["counts"]["candidates"] == 0 and d["counts"]["found_dups"] == 0 and d["counts"]["groups"] == 10
    assert d["split"]["leaked_decided_duplicates"] == 0
    page = (results / "eval/report.html").read_text()
    assert 'id="groups"' in page and "No group holds two or more chips" in page
    assert "no found duplicate crosses two splits" in page  # the summary's leak check


def test_missing_images_folder_fails_before_any_job(tmp_path):
    work = workflow_copy(tmp_path)
    proc = snakemake(work, "-n", "--config", f"images={tmp_path / 'nope'}", check=False)
    assert proc.returncode != 0
    assert "does not exist" in proc.stdout + proc.stderr


def test_lint_passes(tmp_path):
    work = workflow_copy(tmp_path)
    proc = snakemake(work, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def chips_run(tmp_path_factory, airbus_chips):
    """A user's own folder without truth: the 24 real chips and 4 files the tile stage must reject."""
    root = tmp_path_factory.mktemp("chips")
    images = copy_chips(airbus_chips, root / "images")
    bad = write_bad_chips(images, airbus_chips[0])
    (root / "wf").mkdir()
    work = workflow_copy(root / "wf")
    proc = snakemake(work, "--configfile", "config/config.yaml", str(TINY), "--config", f"images={images}")
    return work, images, bad, proc.stdout + proc.stderr


def test_real_chips_without_truth_say_so(chips_run, airbus_chips):
    """A user's own folder (the real Airbus chips) and no truth: every stage runs, evaluation says so."""
    work, _, _, _ = chips_run
    metrics = json.loads((work / "results/eval/metrics.json").read_text())
    assert metrics["n_overlaps"] == 0 and metrics["methods"] == {}
    assert "no truth given" in metrics["note"]
    assert "no truth was given" in (work / "results/eval/report.html").read_text().lower()
    tiles = pq.read_table(sorted((work / "results/tiles").glob("*.parquet")))
    assert tiles.num_rows == 9 * len(airbus_chips)
    assert not (work / "results/truth").exists()


def test_rejects_are_summarised_in_metrics_report_and_console(chips_run, airbus_chips):
    work, _, bad, output = chips_run
    rejects = json.loads((work / "results/eval/metrics.json").read_text())["rejects"]
    n = len(airbus_chips) + len(bad)
    assert rejects["n_images"] == n and rejects["n_rejected"] == len(bad)
    assert rejects["by_reason"] == {kind: 1 for kind in sorted(bad.values())}
    assert [r["image_id"] for r in rejects["images"]] == sorted(bad)
    page = (work / "results/eval/report.html").read_text()
    section = page[page.index('<section id="rejects">'):]
    assert f"Rejected images ({len(bad)} of {n})" in section
    assert all(name in section and kind in section for name, kind in bad.items())
    # the console, at the very end of the run: one line per reason naming its images, and where the full list is
    tail = output[output.rindex("Rejected images:"):].splitlines()
    assert tail[0] == f"Rejected images: {len(bad)} of {n} (full list: results/rejects.parquet):"
    assert sorted(line.split(None, 1)[1] for line in tail[1:1 + len(bad)]) == sorted(
        f"{kind}: {name}" for name, kind in bad.items())
    assert pq.read_table(work / "results/rejects.parquet").column("image_id").to_pylist() == sorted(bad)


def test_shard_count_changes_rebuild_every_shard(chips_run, tmp_path):
    """4 -> 8 -> 3 shards: the manifest re-runs, every shard's tiles and pairs follow, no image is
    lost or repeated, and nothing is left to do afterwards."""
    work = tmp_path / "wf"
    shutil.copytree(chips_run[0], work, symlinks=True)
    images, bad = chips_run[1], chips_run[2]
    good = sorted(set(os.listdir(images)) - set(bad))
    previous = 4  # tests/cluster/tiny.yaml
    for shards in (8, 3):
        config = ["--configfile", "config/config.yaml", str(TINY), "--config", f"images={images}",
                  f"shards={shards}"]
        dry = snakemake(work, "pairs", "-n", *config)
        assert planned_jobs(dry).get("manifest") == 1, dry.stdout
        assert f"Params have changed since last execution: Union of exclusive params before and now " \
               f"across all output: before: {previous} now: {shards}" in dry.stdout
        lists = work / "results/manifest/shards"
        before = {p.name: p.read_bytes() for p in lists.glob("*.txt")}
        snakemake(work, "results/manifest/manifest.parquet", *config)
        changed = {p.stem for p in lists.glob("*.txt") if before.get(p.name) != p.read_bytes()}
        dry = snakemake(work, "pairs", "-n", *config)  # the lists are known: the exact jobs
        planned = {line.split("results/tiles/")[1][:3] for line in dry.stdout.splitlines()
                   if "output:" in line and "results/tiles/" in line}
        assert planned == changed and planned_jobs(dry)["pair_shard"] == len(changed), dry.stdout
        snakemake(work, "pairs", *config)
        previous = shards
        assert planned_jobs(snakemake(work, "pairs", "-n", *config)) == {}
        tiled, rejected, all_paired = [], [], set()
        for k in range(shards):
            name = shard_name(k)
            ids = pq.read_table(work / f"results/tiles/{name}.parquet").column("image_id").to_pylist()
            assert len(ids) == 9 * len(set(ids))
            shard_ids = sorted(set(ids)) + pq.read_table(work / f"results/rejects/{name}.parquet").column(
                "image_id").to_pylist()
            assert all(shard_of(i, shards) == k for i in shard_ids), (shards, name)
            paired = set(pq.read_table(work / f"results/pairs/{name}.parquet").column("image_id").to_pylist())
            assert paired <= set(ids)  # a shard's pairs come from its own tiles
            all_paired |= paired
            tiled += sorted(set(ids))
            rejected += pq.read_table(work / f"results/rejects/{name}.parquet").column("image_id").to_pylist()
        assert sorted(tiled) == good and sorted(rejected) == sorted(bad)  # none lost, none repeated
        assert len(all_paired) > len(good) // 2
        assert sorted(p.stem for p in lists.glob("*.txt")) == [shard_name(k) for k in range(shards)]


def test_every_image_rejected_fails_with_the_summary(tmp_path, airbus_chips):
    images = tmp_path / "images"
    images.mkdir()
    bad = write_bad_chips(images, airbus_chips[0])
    (tmp_path / "wf").mkdir()
    work = workflow_copy(tmp_path / "wf")
    proc = snakemake(work, "--configfile", "config/config.yaml", str(TINY), "--config", f"images={images}",
                     check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"Rejected images: {len(bad)} of {len(bad)} (every one" in out
    for name, kind in bad.items():
        assert f"       1  {kind}" in out and name in out
    assert not (work / "results/dataset").exists()


def _images(tmp_path, chips):
    images = copy_chips(chips, tmp_path / "images")
    return images


def test_truth_naming_missing_images_stops_before_any_tile_job(tmp_path, airbus_chips):
    chips = [c.name for c in airbus_chips[:6]]
    images = _images(tmp_path, airbus_chips[:6])
    truth = tmp_path / "dup_truth.txt"
    lines = [f"{chips[0]} {chips[1]} 08 1"] + [f"{chips[k]} gone{k}.jpg 05 0" for k in range(3)]
    truth.write_text("\n".join(lines + [f"{chips[2]} {chips[3]} 99 1"]) + "\n")
    (tmp_path / "wf").mkdir()
    work = workflow_copy(tmp_path / "wf")
    proc = snakemake(work, "--configfile", "config/config.yaml", str(TINY), "--config", f"images={images}",
                     f"truth={truth}", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{truth}: 4 bad line(s)" in out
    for k in range(3):
        assert f"{truth}:{k + 2}: image gone{k}.jpg is not in the images folder {images}" in out
    assert f"{truth}:5: unknown overlap tag '99'" in out
    assert "rule tile_shard" not in out and not (work / "results/tiles").exists()


def test_truth_naming_a_rejected_chip_stops_before_training(tmp_path, airbus_chips):
    """A chip named in 18 truth lines that the tile stage rejects: all 18 listed, no dataset, no training;
    with on_bad_truth=skip the same lines are skipped and listed."""
    images = _images(tmp_path, airbus_chips[:6])
    write_bad_chips(images, airbus_chips[0])
    chips = [c.name for c in airbus_chips[:6]]
    lines = [f"{chips[0]} {chips[1]} 08 1"]
    lines += [f"{c} bad000001.jpg {tag} {k % 2}" for k, (c, tag) in
              enumerate((c, tag) for c in chips for tag in ("08", "05", "38"))]
    truth = tmp_path / "dup_truth.txt"
    truth.write_text("\n".join(lines) + "\n")
    (tmp_path / "wf").mkdir()
    work = workflow_copy(tmp_path / "wf")
    config = ["--configfile", "config/config.yaml", str(TINY), "--config", f"images={images}", f"truth={truth}"]
    proc = snakemake(work, *config, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{truth}: 18 bad line(s)" in out
    for n in range(2, 20):
        assert f"{truth}:{n}: image bad000001.jpg was rejected by the tile stage (corrupt JPEG" in out
    assert (work / "results/rejects.parquet").exists() and not (work / "results/dataset").exists()
    assert not (work / "results/model").exists()

    snakemake(work, "results/truth/overlaps.parquet", *config, "on_bad_truth=skip")
    skipped = pq.read_table(work / "results/truth/skipped.parquet").to_pylist()
    assert [s["source"] for s in skipped] == [f"{truth}:{n}" for n in range(2, 20)]
    checked = pq.read_table(work / "results/truth/overlaps.parquet").to_pylist()
    assert checked == [{"img1": min(chips[:2]), "img2": max(chips[:2]), "tag": "08", "is_dup": True,
                        "source": f"{truth}:1"}]


def test_truth_complete_on_the_command_line_is_a_boolean(tmp_path):
    """`--config truth_complete=true` arrives as text; it is read as the boolean, anything else named."""
    work = workflow_copy(tmp_path)
    assert snakemake(work, "-n", "--config", "truth_complete=true", check=False).returncode == 0
    proc = snakemake(work, "-n", "--config", "truth_complete=yes", check=False)
    assert proc.returncode != 0 and "`truth_complete` must be true or false; got 'yes'" in proc.stdout + proc.stderr


def test_fractions_not_adding_up_fail_before_any_job(tmp_path):
    work = workflow_copy(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sample:\n  fractions: {train: 0.7, val: 0.1, test: 0.1}\n")
    proc = snakemake(work, "-n", "--configfile", "config/config.yaml", str(bad), check=False)
    assert proc.returncode != 0
    assert "sample.fractions add up to 0.9" in proc.stdout + proc.stderr
    assert not (work / "results").exists()


@pytest.mark.parametrize("edit, names", [
    ("--config bogus=1", ["unknown key `bogus`", "allowed keys at the top level: candidates, demo, evaluate, evidence, groups, images, "]),
    ("tiles:\n  noise_level: 3\n", ["unknown key `tiles.noise_level` (did you mean `tiles.noise_levels`?)",
                                   "allowed keys in `tiles`: ", "noise_levels"]),
    ("train:\n  epochs: five\n", ["`train.epochs` must be an integer >= 1; got 'five'"]),
])
def test_config_mistakes_are_short_and_name_the_key_path(tmp_path, edit, names):
    work = workflow_copy(tmp_path)
    if edit.startswith("--config"):
        args = edit.split()
    else:
        (tmp_path / "bad.yaml").write_text(edit)
        args = ["--configfile", "config/config.yaml", "bad.yaml"]
    proc = snakemake(work, "-n", *args, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for name in names:
        assert name in out, out
    assert len(out.splitlines()) <= 10, out  # no schema dump (it was ~530 lines)
    assert "Failed validating" not in out and "'properties'" not in out
    assert not (work / "results").exists()


def _same_bytes(a: Path, b: Path, pattern: str) -> list[str]:
    """Relative paths matching `pattern` under a and b; asserts both hold the same files, byte for byte."""
    files = sorted(p.relative_to(a).as_posix() for p in a.glob(pattern))
    assert files == sorted(p.relative_to(b).as_posix() for p in b.glob(pattern))
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    return files


def test_hard_kill_during_training_keeps_the_model_and_recovers_after_unlock(demo_run, tmp_path):
    """kill -9 of the whole run while DupNet retrains: the previous model, history and curves stay;
    Snakemake then refuses until `--unlock`, and finishes with the uninterrupted run's outputs."""
    work = tmp_path / "wf"
    shutil.copytree(demo_run, work, symlinks=True)
    model = work / "results/model"
    previous = {p.name: p.read_bytes() for p in model.glob("*") if p.name in ("dupnet.pt", "history.csv", "curves.png")}
    assert len(previous) == 3
    (model / "resume.pt").unlink()  # train from scratch again: the documented way to start over
    config = ["--configfile", "config/config.yaml", str(TINY)]
    cmd, env = snakemake_command(*config, "--forcerun", "train")
    with open(tmp_path / "killed.out", "w") as out:
        run = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.time() + 600
        while not (model / "resume.pt").exists():  # epoch 1 is checkpointed; epoch 2 is training
            assert run.poll() is None and time.time() < deadline, (tmp_path / "killed.out").read_text()
            time.sleep(0.1)
        during = {name: (model / name).read_bytes() if (model / name).exists() else None for name in previous}
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the whole run: snakemake, its job shell, train, loader workers
        run.wait()
    assert during == previous, "the previous model was removed or changed while training"
    deadline = time.time() + 30
    while _group_alive(run.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert {name: (model / name).read_bytes() for name in previous} == previous

    refused = snakemake(work, *config, check=False)
    assert refused.returncode != 0 and "Directory cannot be locked" in refused.stdout + refused.stderr
    snakemake(work, "--unlock", *config)
    resumed = snakemake(work, *config)
    assert "resuming from results/model/resume.pt after epoch 1" in (work / "results/logs/train.log").read_text()
    log = (work / "results/logs/train.log").read_text()
    earlier, this_run = log.split("---- this run ----")
    assert "epoch 1:" in earlier and "epoch 2:" in this_run  # the killed run's part is kept
    assert planned_jobs(snakemake(work, *config, "-n")) == {}
    # identical to the uninterrupted run: every table, the model and the metrics
    tables = _same_bytes(demo_run / "results", work / "results", "**/*.parquet")
    assert {"eval/scores.parquet", "dataset/train.parquet", "truth/overlaps.parquet"} <= set(tables)
    nets = [load_dupnet(d / "results/model/dupnet.pt", "cpu") for d in (demo_run, work)]
    assert nets[0].config == nets[1].config  # the same weights (the file's bytes name its temporary file)
    assert all(torch.equal(nets[0].state_dict()[k], v) for k, v in nets[1].state_dict().items())
    _same_bytes(demo_run / "results", work / "results", "eval/metrics.json")
    strip = lambda p: [row.rsplit(",", 1)[0] for row in p.read_text().splitlines()]  # noqa: E731 (seconds)
    assert strip(work / "results/model/history.csv") == strip(demo_run / "results/model/history.csv")
    assert "Rejected images: none of" in resumed.stdout + resumed.stderr


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True

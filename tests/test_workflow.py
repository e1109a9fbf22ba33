"""The real Snakemake workflow: tiny demo end to end, incremental shards, config edits, lint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pyarrow.parquet as pq
import pytest

from tiledup.manifest import shard_name, shard_of

from procs import kill_tagged, tagged, tagged_env, wait_until
from workflow import TINY, planned_jobs, snakemake, snakemake_command, workflow_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One end-to-end run of the tiny demo (demo -> tiles -> pairs -> dataset -> train -> evaluate)."""
    work = workflow_copy(tmp_path_factory.mktemp("demo"))
    snakemake(work, "--configfile", "config/config.yaml", str(TINY))
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
    assert {"demo.log", "manifest.log", "dataset.log", "train.log", "evaluate.log"} <= logs


def test_nothing_left_to_do_after_a_run(demo_run):
    proc = snakemake(demo_run, "--configfile", "config/config.yaml", str(TINY), "-n")
    assert planned_jobs(proc) == {}, proc.stdout


def test_pairs_edit_reruns_pairs_and_downstream_only(demo_run, tmp_path):
    edit = tmp_path / "edit.yaml"
    edit.write_text("pairs:\n  min_bmh_sim: 0.123\n")  # nested keys merge into the block
    proc = snakemake(demo_run, "--configfile", "config/config.yaml", str(TINY), str(edit), "-n")
    jobs = planned_jobs(proc)
    assert {"pair_shard", "dataset", "train", "evaluate"} <= set(jobs), jobs
    assert not {"demo", "manifest", "tile_shard"} & set(jobs), jobs


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
    images = tmp_path / "images"
    images.mkdir()
    for chip in airbus_chips[:12]:
        shutil.copy(chip, images / chip.name)
    (tmp_path / "wf").mkdir()
    work = workflow_copy(tmp_path / "wf")
    config = ["--config", f"images={images}", "shards=8"]
    snakemake(work, "tiles", *config)

    added = airbus_chips[12:14]
    for chip in added:
        shutil.copy(chip, images / chip.name)
    # The manifest re-runs (the folder changed); its per-shard lists decide the rest.
    snakemake(work, "results/manifest/manifest.parquet", *config)
    proc = snakemake(work, "tiles", "-n", "-p", *config)
    touched = {shard_name(shard_of(c.name, 8)) for c in added}
    planned = {line.split("results/tiles/")[1][:3] for line in proc.stdout.splitlines()
               if "output:" in line and "results/tiles/" in line}
    assert planned == touched, proc.stdout
    assert planned_jobs(proc)["tile_shard"] == len(touched)


def test_missing_images_folder_fails_before_any_job(tmp_path):
    work = workflow_copy(tmp_path)
    proc = snakemake(work, "-n", "--config", f"images={tmp_path / 'nope'}", check=False)
    assert proc.returncode != 0
    assert "does not exist" in proc.stdout + proc.stderr


def test_lint_passes(tmp_path):
    work = workflow_copy(tmp_path)
    proc = snakemake(work, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_real_chips_without_truth_say_so(tmp_path, shared_data):
    """A user's own folder (the real Airbus chips) and no truth: every stage runs, evaluation says so."""
    (tmp_path / "wf").mkdir()
    work = workflow_copy(tmp_path / "wf")
    images = shared_data / "airbus_samples"
    snakemake(work, "--configfile", "config/config.yaml", str(TINY), "--config", f"images={images}")
    metrics = json.loads((work / "results/eval/metrics.json").read_text())
    assert metrics["n_overlaps"] == 0 and metrics["methods"] == {}
    assert "no truth given" in metrics["note"]
    assert "no truth was given" in (work / "results/eval/report.html").read_text().lower()
    tiles = pq.read_table(sorted((work / "results/tiles").glob("*.parquet")))
    assert tiles.num_rows == 9 * len(list(images.glob("*.jpg")))


def test_fractions_not_adding_up_fail_before_any_job(tmp_path):
    work = workflow_copy(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sample:\n  fractions: {train: 0.7, val: 0.1, test: 0.1}\n")
    proc = snakemake(work, "-n", "--configfile", "config/config.yaml", str(bad), check=False)
    assert proc.returncode != 0
    assert "sample.fractions add up to 0.9" in proc.stdout + proc.stderr
    assert not (work / "results").exists()

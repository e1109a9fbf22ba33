"""The real Snakemake workflow: tiny demo end to end, incremental shards, config edits, lint."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tiledup.manifest import shard_name, shard_of

from workflow import TINY, planned_jobs, snakemake, workflow_copy

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
    assert {"demo.log", "manifest.log", "dataset.log", "train.log", "evaluate.log", "candidates.log",
            "verify.log", "groups.log"} <= logs


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
    ("candidates:\n  radius: 12\n", {"candidates", "verify", "groups", "evaluate"}),
    ("verify:\n  chunk: 77\n", {"verify", "groups", "evaluate"}),
    ("groups:\n  seed: 3\n", {"groups", "evaluate"}),
])
def test_discovery_edits_rerun_that_rule_and_downstream_only(demo_run, tmp_path, edit, reruns):
    (tmp_path / "edit.yaml").write_text(edit)
    proc = snakemake(demo_run, "--configfile", "config/config.yaml", str(TINY), str(tmp_path / "edit.yaml"), "-n")
    jobs = set(planned_jobs(proc)) - {"all"}
    assert jobs == reruns, proc.stdout


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

"""The real Snakemake workflow: tiny demo end to end, incremental shards, config edits, lint."""

from __future__ import annotations

import json
import shutil

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


def test_real_chips_without_truth_say_so(tmp_path, real_data):
    """A user's own folder (the real Airbus chips) and no truth: every stage runs, evaluation says so."""
    (tmp_path / "wf").mkdir()
    work = workflow_copy(tmp_path / "wf")
    images = real_data / "airbus_samples"
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


@pytest.mark.parametrize("edit, names", [
    ("--config bogus=1", ["unknown key `bogus`", "allowed keys at the top level: demo, evaluate, images, "]),
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

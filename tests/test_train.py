"""DupNet training on real chips: learns, resumes after a kill, refuses bad input."""

import csv
import logging
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiledup.run.errors import TiledupError
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.model.dupnet import load_dupnet
from tiledup.model.train import train

from configured import options

TINY = {"model": {"width": 8, "depth": 2}, "batch_size": 16, "lr": 0.003, "pretrained": "none"}


def _write(rows, path):
    pq.write_table(pa.table({"image_id": [r[0] for r in rows],
                             "tile1": pa.array([r[1] for r in rows], pa.int8()),
                             "tile2": pa.array([r[2] for r in rows], pa.int8()),
                             "is_dup": pa.array([r[1] == r[2] for r in rows], pa.bool_()),
                             "bmh_sim": pa.array([0.0] * len(rows), pa.float32())}), path)
    return path


def _rows(chips, negatives_per_image):
    """The self-supervised pairs of real chips: i vs i duplicates, i vs j non-duplicates (textured tiles)."""
    rows = []
    rng = np.random.default_rng(0)
    for path in chips:
        tiles = cut_tiles(read_chip(path))
        ok = [t for t in range(9) if tiles[t].std() > 4]  # skip solid-looking tiles
        rows += [(path.name, t, t) for t in ok]
        neg = [(i, j) for i in ok for j in ok if i < j]
        for k in rng.permutation(len(neg))[:negatives_per_image]:
            rows.append((path.name, *neg[k]))
    return rows


@pytest.fixture(scope="module")
def tables(tmp_path_factory, airbus_chips):
    d = tmp_path_factory.mktemp("dataset")
    return (_write(_rows(airbus_chips[:18], 6), d / "train.parquet"),
            _write(_rows(airbus_chips[18:], 6), d / "val.parquet"))


def _history(out_dir):
    with open(out_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_short_cpu_run_learns(tables, real_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    best = train(*tables, real_data / "airbus_samples", tmp_path, workers=0, **options("train", epochs=3, **TINY))
    said = [r.getMessage() for r in caplog.records]
    # progress: within each epoch (training + validation pairs) and over the epochs, with an ETA
    n_pairs = sum(pq.read_metadata(t).num_rows for t in tables)
    assert f"epoch 1/3: started, {n_pairs} pairs" in said
    assert any(m.startswith(f"epoch 3/3: done, {n_pairs} pairs in ") for m in said)
    assert any(m.startswith("training: 2/3 epochs (67 %), ") and "ETA" in m for m in said)
    assert any(m.startswith("training: done, 3 epochs in ") for m in said)
    hist = _history(tmp_path)
    assert [int(r["epoch"]) for r in hist] == [1, 2, 3]
    assert list(hist[0]) == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
    assert best["val_acc"] >= 0.75, f"validation accuracy {best['val_acc']:.3f} after 3 epochs: {hist}"
    assert (tmp_path / "curves.png").stat().st_size > 1000
    model = load_dupnet(tmp_path / "dupnet.pt", "cpu")
    assert model.config["width"] == 8


def test_resume_after_kill_continues_and_matches_an_uninterrupted_run(tables, real_data, tmp_path):
    images = real_data / "airbus_samples"
    opts = dict(TINY, model={"width": 4, "depth": 1})
    run = tmp_path / "killed"
    # A real kill: the CLI training for many epochs, killed once epoch 1 is checkpointed.
    import json
    proc = subprocess.Popen([sys.executable, "-m", "tiledup.cli", "train", "--train", str(tables[0]),
                             "--val", str(tables[1]), "--images", str(images), "--out-dir", str(run),
                             "--workers", "0", "--options", json.dumps(dict(opts, epochs=50))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "resume.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "resume.pt").exists() and not (run / "dupnet.pt").exists()

    # An edited run-defining key meets the interrupted checkpoint: a clear error naming it.
    with pytest.raises(TiledupError, match=r"lr: 0\.003 -> 0\.01"):
        train(*tables, images, run, workers=0, **options("train", epochs=2, **dict(opts, lr=0.01)))

    # The same config with fewer epochs resumes: epoch 1 is kept, only epoch 2 runs.
    train(*tables, images, run, workers=0, **options("train", epochs=2, **opts))
    resumed = _history(run)
    assert [int(r["epoch"]) for r in resumed] == [1, 2]

    # Extending the finished run continues from epoch 3 and keeps epochs 1-2 untouched.
    train(*tables, images, run, workers=0, **options("train", epochs=3, **opts))
    extended = _history(run)
    assert [int(r["epoch"]) for r in extended] == [1, 2, 3] and extended[:2] == resumed

    # Same seed, same device: an uninterrupted run gives the same losses.
    fresh = tmp_path / "fresh"
    train(*tables, images, fresh, workers=0, **options("train", epochs=3, **opts))
    for a, b in zip(_history(fresh), extended):
        assert (a["train_loss"], a["val_loss"], a["val_acc"]) == (b["train_loss"], b["val_loss"], b["val_acc"])

    # A finished run of another config is replaced by a fresh start, not an error.
    train(*tables, images, run, workers=0, **options("train", epochs=1, **dict(opts, seed=5)))
    assert [int(r["epoch"]) for r in _history(run)] == [1]


def test_bad_input_is_named(tables, real_data, tmp_path, airbus_chips):
    images = real_data / "airbus_samples"
    empty = _write([], tmp_path / "empty.parquet")
    with pytest.raises(TiledupError, match="empty.parquet: training table has no rows"):
        train(empty, tables[1], images, tmp_path / "m", workers=0, **options("train", **TINY))
    one = _write([(airbus_chips[0].name, t, t) for t in range(9)], tmp_path / "one.parquet")
    with pytest.raises(TiledupError, match="one class only"):
        train(one, tables[1], images, tmp_path / "m", workers=0, **options("train", **TINY))
    ghost = _write([("nothere.jpg", 1, 1), ("nothere.jpg", 1, 2)], tmp_path / "ghost.parquet")
    with pytest.raises(TiledupError, match="nothere.jpg"):
        train(ghost, tables[1], images, tmp_path / "m", workers=0, **options("train", **TINY))
    pq.write_table(pa.table({"image_id": ["a.jpg"], "tile1": [1]}), tmp_path / "cols.parquet")
    with pytest.raises(TiledupError, match="lacks column"):
        train(tmp_path / "cols.parquet", tables[1], images, tmp_path / "m", workers=0, **options("train", **TINY))
    with pytest.raises(TiledupError, match="train.model: unknown"):
        train(*tables, images, tmp_path / "m", workers=0, **options("train", model={"heads": 2}))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "resume.pt").write_bytes(b"garbage")
    with pytest.raises(TiledupError, match="unreadable resume checkpoint"):
        train(*tables, images, tmp_path / "junk", workers=0, **options("train", epochs=1, **TINY))


def test_resume_log_keeps_the_earlier_part_of_this_training_only(tables, real_data, tmp_path, capfd):
    """An extended run repeats the earlier runs' lines in its log; a run of another config does not."""
    from tiledup.model.train import recorded_log

    images, opts = real_data / "airbus_samples", dict(TINY, model={"width": 4, "depth": 1})
    logging.getLogger("tiledup").setLevel(logging.INFO)

    def run(**changes):
        capfd.readouterr()
        with recorded_log(tmp_path) as record:
            train(*tables, images, tmp_path, workers=0, record=record, **options("train", **{**opts, "epochs": 1, **changes}))
        return capfd.readouterr().err, (tmp_path / "resume.log").read_text()

    _, first = run()
    assert "epoch 1:" in first and "earlier runs" not in first
    err, log = run(epochs=2)  # extended: resumes from the finished checkpoint
    assert err.index("earlier runs of this training") < err.index("this run") and first in err
    assert log.startswith(first) and "epoch 2:" in log and "resuming" in log
    err, log = run(seed=5)  # another config: starts over, a new record
    assert "earlier runs" not in err and "epoch 2:" not in log and "starting over" in log
    assert not [h for h in logging.getLogger().handlers if getattr(h, "baseFilename", "").endswith("resume.log")]

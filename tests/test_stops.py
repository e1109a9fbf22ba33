"""Clean stops with real processes: `tiledup train` (DataLoader workers from a forkserver)
and `tiledup evaluate` stopped by SIGTERM, SIGINT or SIGKILL leave no process behind.

Processes are found in /proc by an environment variable each command and its
descendants inherit (tests/procs.py), so orphans re-parented to PID 1 count too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch

from tiledup.model.train import RESUME, train

from procs import kill_tagged, tagged, tagged_env, wait_until
from test_evaluate import make_case
from test_train import TINY, tables  # noqa: F401 (tables: the real-chip dataset fixture)

from configured import options

OPTS = dict(TINY, model={"width": 4, "depth": 1})
GONE_WITHIN = 5.0  # seconds for every process of a stopped command to be gone


@pytest.fixture
def tag_env():
    """(tag, environment) for the test's command; anything still running at the end is killed."""
    tag, env = tagged_env()
    yield tag, env
    kill_tagged(tag)


def _terminal_like():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, whatever pytest's parent ignores


def start_train(tag_env, tables, images, out, log, epochs=50):
    """`tiledup train` with 2 DataLoader workers as its own process; (process, tag)."""
    tag, env = tag_env
    args = [sys.executable, "-m", "tiledup.cli", "train", "--train", str(tables[0]), "--val", str(tables[1]),
            "--images", str(images), "--out-dir", str(out), "--workers", "2",
            "--options", json.dumps(dict(OPTS, epochs=epochs))]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            preexec_fn=_terminal_like)
    return proc, tag


def workers_of(proc, tag):
    """The processes a command started that are not its direct children (the loader's workers)."""
    return [p for p in tagged(tag) if p[0] != proc.pid and p[1] != proc.pid]


def wait_for_workers(proc, tag, also=lambda: True, timeout=180):
    if wait_until(lambda: len(workers_of(proc, tag)) >= 2 and also() or proc.poll() is not None,
                  timeout, step=0.2) is None or proc.poll() is not None:
        proc.kill()
        pytest.fail(f"training never had its workers running (exit {proc.poll()})")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopped_training_ends_its_workers_and_resumes(sig, tag_env, tables, real_data, tmp_path, caplog):
    images, out = real_data / "airbus_samples", tmp_path / "model"
    proc, tag = start_train(tag_env, tables, images, out, tmp_path / "train.log")
    wait_for_workers(proc, tag, also=lambda: (out / RESUME).exists())  # epoch 1 checkpointed
    assert len(tagged(tag)) >= 4  # command, forkserver, 2 workers (+ resource tracker)

    proc.send_signal(sig)
    assert proc.wait(timeout=20) == 128 + sig
    left = wait_until(lambda: not tagged(tag), GONE_WITHIN)
    assert left is not None, f"still running {GONE_WITHIN} s after {sig.name}: {tagged(tag)}"
    log = (tmp_path / "train.log").read_text()
    assert f"tiledup train stopped by {sig.name}; ended its" in log
    assert not list(out.glob(".*tmp*")), list(out.iterdir())

    # The checkpoint of the last finished epoch is what a re-run resumes from.
    done = len(torch.load(out / RESUME, weights_only=True)["state"]["history"])
    assert done >= 1
    with caplog.at_level("INFO", logger="tiledup.model.train"):
        train(*tables, images, out, workers=0, **options("train", epochs=done + 1, **OPTS))
    assert f"after epoch {done}" in caplog.text
    assert len((out / "history.csv").read_text().splitlines()) == 1 + done + 1


def test_killed_training_leaves_no_workers(tag_env, tables, real_data, tmp_path):
    """SIGKILL runs no code in the command: its workers notice its death by themselves.

    (Killed while its workers are still starting, they exit once started: seconds later.)"""
    out = tmp_path / "model"
    proc, tag = start_train(tag_env, tables, real_data / "airbus_samples", out, tmp_path / "train.log")
    wait_for_workers(proc, tag, also=lambda: (out / RESUME).exists())
    proc.kill()
    proc.wait(timeout=10)
    left = wait_until(lambda: not tagged(tag), GONE_WITHIN)
    assert left is not None, f"still running {GONE_WITHIN} s after SIGKILL: {tagged(tag)}"


def test_stopped_evaluation_leaves_no_half_written_output(tag_env, tmp_path):
    paths = make_case(tmp_path)
    out = tmp_path / "eval"
    tag, env = tag_env
    args = [sys.executable, "-m", "tiledup.cli", "evaluate", "--truth", str(paths["truth_path"]),
            "--overlaps", str(paths["overlaps_path"]), "--skipped", str(paths["skipped_path"]),
            "--images", str(paths["images_dir"]), "--model", str(paths["model_path"]),
            "--val", str(paths["val_path"]), "--tiles", *map(str, paths["tiles_paths"]),
            "--rejects", str(paths["rejects_path"]), "--out-dir", str(out),
            "--options", json.dumps({"device": "cpu", "batch_size": 16})]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    for line in proc.stderr:  # stop it once the truth is scored: the outputs are being written
        log.append(line)
        if "tile pairs" in line:
            proc.send_signal(signal.SIGTERM)
            break
    log += proc.stderr.readlines()
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM, "".join(log)
    assert "tiledup evaluate stopped by SIGTERM" in "".join(log)
    assert wait_until(lambda: not tagged(tag), GONE_WITHIN) is not None, tagged(tag)
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not [n for n in written if ".tmp" in n], written
    # Whatever was written before the stop is complete.
    if "scores.parquet" in written:
        assert pq.read_table(out / "scores.parquet").num_rows > 0
    if "metrics.json" in written:
        json.loads((out / "metrics.json").read_text())


HALF_WRITE = """
import os, signal, sys, time
from tiledup.run import stops
from tiledup.run.io import atomic_path
try:
    with stops.stop_on_signals(), atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        tmp.write_text("whole")
except stops.Stopped as e:
    sys.exit(128 + e.signum)
"""


def test_signal_during_an_atomic_write_leaves_no_file(tmp_path):
    """A real SIGTERM while an output is half written: no output, no temp file, exit 143 at once."""
    proc = subprocess.run([sys.executable, "-c", HALF_WRITE, str(tmp_path / "out.txt")], timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def _start_demo(env: dict, folder) -> subprocess.Popen:
    """`tiledup demo` into folder, its scenes rendered by 2 worker processes."""
    args = [sys.executable, "-m", "tiledup.cli", "demo", "--images", str(folder / "images"),
            "--truth", str(folder / "dup_truth.txt"), "--layout", str(folder / "layout.parquet"),
            "--workers", "2"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_stopped_demo_ends_its_renderers_and_leaves_no_images_folder(tag_env, tmp_path):
    """The demo renders scenes in a process pool: a stop ends the pool and drops the half folder."""
    tag, env = tag_env
    proc = _start_demo(env, tmp_path)
    renderers = wait_until(lambda: len(tagged(tag)) >= 3 or proc.poll() is not None, 60)
    assert renderers is not None and proc.poll() is None, "the demo never started its renderers"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert "tiledup demo stopped by SIGTERM; ended its" in proc.stderr.read()
    assert wait_until(lambda: not tagged(tag), GONE_WITHIN) is not None, tagged(tag)
    assert list(tmp_path.iterdir()) == []


def test_killed_demo_renderer_is_named_and_leaves_no_images_folder(tag_env, tmp_path):
    """A worker taken by the OOM killer or a kill -9: the command says so in one line, not a traceback."""
    tag, env = tag_env
    proc = _start_demo(env, tmp_path)
    spawned = lambda: [pid for pid, _, cmd in tagged(tag) if "spawn_main" in cmd]  # noqa: E731
    # killed at work, a chip on disk (the OOM killer's case), not while the pool still starts it
    assert wait_until(lambda: any(tmp_path.rglob("*.jpg")) or proc.poll() is not None, 60) is not None
    assert proc.poll() is None and spawned(), "the demo ended before its renderers wrote a chip"
    os.kill(spawned()[0], signal.SIGKILL)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:  # say where it stood, and leave nothing running
        proc.kill()
        raise AssertionError(f"the demo did not end after a renderer was killed: {proc.stderr.read()[-3000:]}")
    assert code == 1
    err = proc.stderr.read()
    assert "tiledup demo: a worker process ended abruptly" in err and "Traceback" not in err, err
    assert wait_until(lambda: not tagged(tag), GONE_WITHIN) is not None, tagged(tag)
    assert list(tmp_path.iterdir()) == []

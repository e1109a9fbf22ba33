"""DAG size and build time at Airbus scale: `snakemake -n` over 200,000 images in hundreds of shards.

Makes a temporary folder of empty .jpg files (DAG building never opens an image), copies
the workflow beside it and times, in one run:
  1. a dry run before the manifest exists (the manifest checkpoint and everything after it),
  2. the manifest rule itself (the one job that lists the folder),
  3. a dry run once the manifest exists (the full per-shard DAG).
Each dry run runs in a child process that counts every directory entry it reads from the
images folder (os.scandir / os.listdir), to show that parsing the Snakefile and building
the DAG do not list the folder: every cluster job re-parses the Snakefile.

    .venv/bin/python benchmarks/bench_dag.py [--images 200000] [--shards 256]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Runs snakemake in this interpreter after wrapping os.scandir/os.listdir so that reading
# entries of the images folder is counted; prints the count as JSON on stderr at exit.
PROBE = r"""
import atexit, json, os, sys
folder = os.path.realpath(sys.argv[1])
seen = {"calls": 0, "entries": 0}
_scandir, _listdir = os.scandir, os.listdir

def _ours(path):
    try:
        return os.path.realpath(os.fsdecode(path)) == folder
    except TypeError:
        return False

class _Counted:
    def __init__(self, it):
        self._it = it
    def __iter__(self):
        return self
    def __next__(self):
        entry = next(self._it)
        seen["entries"] += 1
        return entry
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self._it.close()
    def close(self):
        self._it.close()

def scandir(path="."):
    it = _scandir(path)
    if _ours(path):
        seen["calls"] += 1
        return _Counted(it)
    return it

def listdir(path="."):
    names = _listdir(path)
    if _ours(path):
        seen["calls"] += 1
        seen["entries"] += len(names)
    return names

os.scandir, os.listdir = scandir, listdir
atexit.register(lambda: print("PROBE " + json.dumps(seen), file=sys.stderr))
from snakemake.cli import main
sys.argv = ["snakemake", *sys.argv[2:]]
main()
"""


def job_stats(text: str) -> dict[str, int]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Job stats:")), None)
    stats = {}
    for line in lines[start + 3:] if start is not None else []:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


def run(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc


def dry_run(work: Path, images: Path, config: list[str]) -> tuple[float, dict, dict]:
    seconds, proc = run([sys.executable, "-c", PROBE, str(images), "-n", "--cores", "1",
                         "--workflow-profile", "none", *config], work)
    probe = json.loads(re.search(r"^PROBE (.*)$", proc.stderr, re.M).group(1))
    return seconds, job_stats(proc.stdout + proc.stderr), probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200_000, help="empty .jpg files to create")
    ap.add_argument("--shards", type=int, default=256)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tiledup-dag-"))
    try:
        images = tmp / "images"
        images.mkdir()
        t0 = time.perf_counter()
        for i in range(a.images):
            # Airbus-like 9-hex-digit ids; an odd multiplier keeps them distinct.
            (images / f"{(i * 2654435761) % 16 ** 9:09x}.jpg").touch()
        make_s = time.perf_counter() - t0

        work = tmp / "work"
        work.mkdir()
        shutil.copy(REPO / "Snakefile", work)
        for folder in ("workflow", "config", "envs"):
            shutil.copytree(REPO / folder, work / folder)
        config = ["--config", f"images={images}", f"shards={a.shards}"]

        before_s, before_jobs, before_probe = dry_run(work, images, config)
        manifest_s, _ = run([str(BIN / "snakemake"), "--cores", "1", "--workflow-profile", "none",
                             "results/manifest/manifest.parquet", *config], work)
        after_s, after_jobs, after_probe = dry_run(work, images, config)

        def jobs(stats):
            return ", ".join(f"{rule} {n}" for rule, n in stats.items()) + f" (total {sum(stats.values())})"

        print(f"images: {a.images:,} empty .jpg files (created in {make_s:.1f} s), shards: {a.shards}")
        print(f"dry run, no manifest yet:   {before_s:6.2f} s   jobs: {jobs(before_jobs)}")
        print(f"manifest rule (lists once): {manifest_s:6.2f} s")
        print(f"dry run, manifest built:    {after_s:6.2f} s   jobs: {jobs(after_jobs)}")
        for name, probe in (("before", before_probe), ("after", after_probe)):
            print(f"images-folder entries read by the {name}-manifest dry run: {probe['entries']} "
                  f"(in {probe['calls']} listing call(s))")
    finally:
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

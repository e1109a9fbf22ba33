"""verify throughput: candidate overlaps scored per second, this code against an earlier commit, in one run.

    .venv/bin/python benchmarks/bench_verify.py --results RESULTS [--before REF] [--repeat 2] [--threads 2]

RESULTS is a finished workflow's results/ folder (a development demo, e.g. demo.seed 1):
its overlaps/candidates.parquet, model/dupnet.pt, tiles/*.parquet and demo/images are
read, never written. verify runs in a fresh Python process per measurement (torch limited
to --threads), on this checkout's src/ and, with --before, on `git archive REF src` of this
repository, alternately --repeat times; the figure is candidates / wall time of the verify()
call (imports and model loading included, Python start-up not), best of the repeats. The
two overlaps.parquet are then compared: the decisions (is_dup, null = undecidable) must
be equal row for row; the largest difference of DupNet's score is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]

RUN = """
import json, sys, time
import torch
torch.set_num_threads({threads})
start = time.perf_counter()
from tiledup.discovery.verify import verify
verify({candidates!r}, {images!r}, {model!r}, {tiles!r}, {out!r}, {truth!r}, device="cpu")
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""


def run_verify(src: Path, results: Path, out: Path, threads: int) -> float:
    """Seconds of one verify() call on `results` with the package in `src`."""
    code = RUN.format(threads=threads, candidates=str(results / "overlaps" / "candidates.parquet"),
                      images=str(results / "demo" / "images"), model=str(results / "model" / "dupnet.pt"),
                      tiles=[str(p) for p in sorted((results / "tiles").glob("*.parquet"))],
                      out=str(out), truth=str(out.with_suffix(".txt")))
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"verify failed with {src}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def checkout(ref: str, dest: Path) -> Path:
    """src/ of commit `ref` of this repository, unpacked into dest."""
    archive = dest / "src.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), ref, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def compare(before: Path, after: Path) -> str:
    a = pq.read_table(before).to_pandas()
    b = pq.read_table(after).to_pandas()
    keys = ["img1", "img2", "tag"]
    if len(a) != len(b) or not a[keys].equals(b[keys]):
        return "DIFFERENT candidates in the two tables"
    same = (a.is_dup.isna() == b.is_dup.isna()) & ((a.is_dup == b.is_dup) | a.is_dup.isna())
    diff = (a.score - b.score).abs().max()
    return (f"decisions equal on {int(same.sum())} of {len(a)} overlaps "
            f"({int((~same).sum())} differ); largest |score difference| {diff:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, type=Path, help="a finished workflow's results/ folder")
    ap.add_argument("--before", default="", help="git commit to measure against (e.g. main)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    n = pq.read_metadata(a.results / "overlaps" / "candidates.parquet").num_rows
    with tempfile.TemporaryDirectory(prefix="bench_verify_") as tmp:
        tmp = Path(tmp)
        codes = {"this checkout": REPO / "src"}
        if a.before:
            codes[f"before ({a.before})"] = checkout(a.before, tmp)
        best: dict[str, float] = {}
        for k in range(a.repeat):
            for i, (name, src) in enumerate(codes.items()):
                seconds = run_verify(src, a.results, tmp / f"overlaps{i}.parquet", a.threads)
                best[name] = min(best.get(name, seconds), seconds)
                print(f"  run {k + 1}: {name}: {seconds:.1f} s", flush=True)
        print(f"{n:,} candidate overlaps, {a.threads} torch threads, best of {a.repeat}:")
        for name, seconds in best.items():
            print(f"  {name:>24}: {seconds:7.1f} s, {n / seconds:8.0f} overlaps/s")
        if a.before:
            print("  " + compare(tmp / "overlaps1.parquet", tmp / "overlaps0.parquet"))


if __name__ == "__main__":
    main()

"""verify throughput: candidate overlaps scored per second, this code against an earlier commit, in one run.

    .venv/bin/python benchmarks/bench_verify.py --results RESULTS [--before REF] [--after REF] [--repeat 2] [--threads 2]
        [--workers 1] [--held-chips N [N ...]]
    .venv/bin/python benchmarks/bench_verify.py --results RESULTS --profile 8000

--profile N: where the time goes instead. verify() on the first N candidates, this
checkout, one thread, under cProfile: the seconds of each part of the scoring
(DupNet, certain evidence, the solid-side pixel test, the pixel baselines, decoding
chips; each cumulative, so a part's own calls are inside it) and the 15
functions with the most time of their own.

RESULTS is a finished workflow's results/ folder (a development demo, e.g. demo.seed 1):
its overlaps/candidates.parquet, model/dupnet.pt, tiles/*.parquet and demo/images are
read, never written. verify runs in a fresh Python process per measurement (torch limited
to --threads), on this checkout's src/ (or, with --after, `git archive REF src` of this
repository) and, with --before, on `git archive REF src`, alternately --repeat times; the figures are candidates / wall time of the verify()
call (imports and model loading included, Python start-up not), best of the repeats, and
candidates / CPU time of that process (all its threads) and of its --workers worker processes
(verify's own, one torch thread each; code from before them runs in one process): on a machine other jobs share, wall
time says little, while 2 x candidates per CPU second is what 2 quiet cores would give when
the threads keep both busy (an upper bound on the wall-clock rate). The
two overlaps.parquet are then compared: the decisions (is_dup, null = undecidable) must
be equal row for row; the largest difference of DupNet's score is printed too.
Memory: the peak RSS of the verify process and of its largest child (a worker; the kernel's
rusage, exact), and the peak of all of verify's proportional set size (shared pages
counted once, as a cgroup charges them; sampled every PSS_EVERY seconds).
--held-chips: measure each of these `verify.held_chips` values (in turn, in each repeat)
instead of the configured one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]

RUN = """
import inspect, json, resource, sys, time
import torch
torch.set_num_threads({threads})
def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
start, cpu, cpu_children = time.perf_counter(), time.process_time(), children_cpu()
from tiledup.discovery.verify import verify
workers = {{"workers": {workers}}} if "workers" in inspect.signature(verify).parameters else {{}}
try:  # the configured options (config/config.yaml); commits before it stated them as defaults
    from tiledup.run.config import defaults
    options = {{**defaults()["verify"], "evidence": defaults()["evidence"]}}
    if "place_votes" in inspect.signature(verify).parameters:  # the workflow passes candidates.place_votes
        options["place_votes"] = defaults()["candidates"]["place_votes"]
except ImportError:
    options = {{}}
if {profile}:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
verify({candidates!r}, {images!r}, {model!r}, {tiles!r}, {out!r}, {truth!r}, **{{**options, "device": "cpu", **{overrides!r}}},
       **workers)
if {profile}:
    profiler.disable()
    profiler.dump_stats({out!r} + ".prof")
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "cpu": time.process_time() - cpu + children_cpu() - cpu_children,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


# The parts of verify's scoring, by the function that does each (tiledup.scoring, tiledup.tiles.decode).
PARTS = {"DupNet": "run_net", "certain evidence": "certain_pairs", "solid-side pixel test": "solid_evidence",
         "pixel baselines (pixel_eq, pixel_mad)": "pixel_scores", "decoding chips": "read_chip"}


def run_verify(src: Path, results: Path, out: Path, threads: int, candidates: Path | None = None,
               profile: bool = False, workers: int = 1, overrides: dict | None = None) -> dict:
    """seconds (wall), cpu (seconds), rss and worker_rss (MB) of one verify() call on `results` with the
    package in `src` (profile: also out.prof, cProfile's statistics; workers: verify's worker processes,
    where the code has them; overrides: verify options instead of the configured ones)."""
    code = RUN.format(threads=threads, profile=profile, workers=workers, overrides=overrides or {},
                      candidates=str(candidates or results / "overlaps" / "candidates.parquet"),
                      images=str(results / "demo" / "images"), model=str(results / "model" / "dupnet.pt"),
                      tiles=[str(p) for p in sorted((results / "tiles").glob("*.parquet"))],
                      out=str(out), truth=str(out.with_suffix(".txt")))
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=err, text=True)
        pss = 0
        while proc.poll() is None:  # all of verify's memory, shared pages counted once: sampled
            pss = max(pss, tree_pss(proc.pid))
            time.sleep(PSS_EVERY)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"verify failed with {src}:\n{err.read()[-3000:]}")
        return {**json.loads(out.read().strip().splitlines()[-1]), "pss": pss / 2**20}


PSS_EVERY = 0.5  # seconds between samples of the proportional set size


def tree_pss(pid: int) -> int:
    """Bytes of proportional set size of a process and its descendants (0 once it has ended)."""
    import psutil  # Snakemake's dependency

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def checkout(ref: str, dest: Path) -> Path:
    """src/ of commit `ref` of this repository, unpacked into dest (with config/ and workflow/, where the package's
    config files link to)."""
    dest.mkdir()
    archive = dest / "src.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), ref, "src", "config", "workflow"], check=True)
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


def profile(results: Path, n: int) -> None:
    """Where verify's time goes, on the first n candidates (see the module doc)."""
    import pstats

    with tempfile.TemporaryDirectory(prefix="bench_verify_") as tmp:
        tmp = Path(tmp)
        pq.write_table(pq.read_table(results / "overlaps" / "candidates.parquet").slice(0, n), tmp / "candidates.parquet")
        run = run_verify(REPO / "src", results, tmp / "overlaps.parquet", 1, tmp / "candidates.parquet", True)
        wall, cpu = run["seconds"], run["cpu"]
        stats = pstats.Stats(str(tmp / "overlaps.parquet.prof"))
    n = min(n, pq.read_metadata(results / "overlaps" / "candidates.parquet").num_rows)
    print(f"{n:,} candidate overlaps, 1 thread, under cProfile: {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({1000 * cpu / n:.2f} ms per candidate)")
    for part, name in PARTS.items():
        seconds = sum(ct for (_, _, func), (_, _, _, ct, _) in stats.stats.items() if func == name)
        print(f"  {part:>38}: {seconds:6.1f} s ({100 * seconds / cpu:4.1f} %)")
    stats.sort_stats("tottime").print_stats(15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, type=Path, help="a finished workflow's results/ folder")
    ap.add_argument("--before", default="", help="git commit to measure against (e.g. main)")
    ap.add_argument("--after", default="", help="git commit to measure instead of this checkout")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the verify process")
    ap.add_argument("--workers", type=int, default=1,
                    help="verify's worker processes (one torch thread each), for code that has them")
    ap.add_argument("--held-chips", type=int, nargs="+", default=[], metavar="N",
                    help="verify.held_chips values to measure, each in turn (default: the configured one)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="profile verify on the first N candidates")
    a = ap.parse_args()
    if a.profile:
        return profile(a.results, a.profile)
    n = pq.read_metadata(a.results / "overlaps" / "candidates.parquet").num_rows
    with tempfile.TemporaryDirectory(prefix="bench_verify_") as tmp:
        tmp = Path(tmp)
        codes = {f"after ({a.after})": checkout(a.after, tmp / "after")} if a.after else {"this checkout": REPO / "src"}
        if a.before:
            codes[f"before ({a.before})"] = checkout(a.before, tmp / "before")
        runs = [(f"{name}, held_chips {held}" if held else name, src, {"held_chips": held} if held else {})
                for name, src in codes.items() for held in (a.held_chips or [None])]
        best: dict[str, dict] = {}
        for k in range(a.repeat):
            for i, (name, src, overrides) in enumerate(runs):
                run = run_verify(src, a.results, tmp / f"overlaps{i}.parquet", a.threads, workers=a.workers,
                                 overrides=overrides)
                if name not in best or (run["seconds"], run["cpu"]) < (best[name]["seconds"], best[name]["cpu"]):
                    best[name] = run
                print(f"  run {k + 1}: {name}: {run['seconds']:.1f} s wall, {run['cpu']:.1f} s CPU, peak RSS "
                      f"{run['rss']:.0f} MB, largest child {run['worker_rss']:.0f} MB, all {run['pss']:.0f} MB "
                      "(PSS)", flush=True)
        print(f"{n:,} candidate overlaps, {a.threads} torch threads, {a.workers} worker(s), best of {a.repeat} (load average "
              f"{os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} CPUs):")
        for name, run in best.items():
            wall, cpu = run["seconds"], run["cpu"]
            print(f"  {name:>24}: {wall:7.1f} s wall = {n / wall:6.0f} overlaps/s; {cpu:7.1f} s CPU = "
                  f"{n / cpu:6.0f} overlaps per CPU second; peak RSS {run['rss']:.0f} MB + largest child "
                  f"{run['worker_rss']:.0f} MB, all {run['pss']:.0f} MB (PSS)")
        for i in range(1, len(runs)):
            print(f"  {runs[i][0]} against {runs[0][0]}: "
                  + compare(tmp / f"overlaps{i}.parquet", tmp / "overlaps0.parquet"))


if __name__ == "__main__":
    main()

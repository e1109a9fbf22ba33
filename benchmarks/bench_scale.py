"""The whole workflow at N chips (demo.chips), per rule: wall time, CPU time, peak RSS; projected to Airbus.

For each N a copy of the workflow runs in its own folder (SCRATCH/chips-N) on the
built-in demo with `demo.chips: N` (every other key the config's default; shards:
one per about 750 chips, as the Airbus advice in config/README.md, at least 4).
Every rule has a `benchmark:` directive (RESULTS/benchmarks/<rule>[/<shard>].tsv):
Snakemake's wall seconds per job. CPU seconds and peak RSS come from each job's
log, whose last line is the command's exact rusage (`tiledup <command>: X s CPU,
peak RSS Y MB`); Snakemake's own cpu_time and max_rss sample the process tree
every 30 s, so they are used for logs without that line, and where they see
more (DataLoader workers started by a forkserver are not the command's
children, so its rusage leaves them out): such rules are marked "30 s samples". Per rule the
jobs' figures are added up (shard rules: over shards; RSS: the largest), with
the discovery figures of metrics.json and candidates.parquet, into a Markdown
table with a projection to the 192,556 Airbus chips:

- per rule, CPU = a + b x chips fitted to the measured N (one N: proportional);
  train's per pair-epoch instead, for 100,000 pairs (80 % of them trained on)
  and 12 epochs (config/README.md's advice for Airbus); peak RSS = the smallest
  rule's (an interpreter with numpy and pandas) + a part fitted the same way,
  from two sizes or more;
- 2 cores: CPU / 2 for rules that run jobs side by side or use threads (shard
  rules, demo, train, verify, evaluate), CPU otherwise, added up;
- 16-core node: shard rules' and demo's CPU / 16, train / 8, verify and
  evaluate / 4 (profiles/slurm's set-threads; an upper bound on their
  speed-up), the others / 1;
- GPU node: train, verify and evaluate at the wall time a GPU run of this
  script measured (`--gpu-from DIR`: the chips-N folders of a run on a GPU
  machine); without one the column says "not measured". When this machine has
  a CUDA GPU its own runs are GPU runs and the script prints their figures.
  The rest as on the 16-core node.

Wall times are printed as measured, but on a shared machine they say more about
the other users than about tiledup; the projection uses CPU time.

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py --chips 2000 5000 20000 \\
        --scratch /tmp/tiledup-scale --out docs/scale-table.md
    .venv/bin/python benchmarks/bench_scale.py --chips 2000 --scratch DIR --gather-only   # table only

A 20,000-chip run takes over an hour on 2 cores. Runs are resumable: a
folder's finished rules are not re-run (Snakemake), so an interrupted N picks up
where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
AIRBUS = 192_556
# train at Airbus scale: config/README.md's advice of 100,000 pairs (sample.pairs), 12 epochs
AIRBUS_PAIR_EPOCHS = 100_000 * 0.8 * 12
CHIPS_PER_SHARD = 750
SHARD_RULES = ("tile_shard", "pair_shard")
GPU_RULES = ("train", "verify", "evaluate")
# Rules that use more than one core: many jobs, or threads (demo, train, verify, evaluate: 2 here,
# 8 with profiles/slurm's set-threads; bounded by their CPU time measured here).
PARALLEL = (*SHARD_RULES, "demo", *GPU_RULES)
# Threads on a 16-core node: profiles/slurm's set-threads (train 8, verify 4, evaluate 4); demo's
# scenes are independent (--workers = threads). An upper bound on their speed-up.
THREADS_16 = {"train": 8, "verify": 4, "evaluate": 4, "demo": 16}
ORDER = ("demo", "manifest", "tile_shard", "rejects", "truth", "pair_shard", "dataset", "train",
         "candidates", "verify", "groups", "evaluate")


def workflow_copy(dest: Path) -> None:
    """Snakefile, workflow/, config/, profiles/ and envs/ into dest (results land there)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    for folder in ("workflow", "config", "profiles", "envs"):
        shutil.rmtree(dest / folder, ignore_errors=True)
        shutil.copytree(REPO / folder, dest / folder)


def run(folder: Path, chips: int, seed: int, cores: int, train_epochs: int | None, targets: list[str]) -> float:
    """The whole workflow at `chips` chips in folder; returns its wall seconds."""
    workflow_copy(folder)
    scale = {"demo": {"chips": chips, "seed": seed}, "shards": max(4, round(chips / CHIPS_PER_SHARD))}
    if train_epochs:
        scale["train"] = {"epochs": train_epochs}
    (folder / "scale.yaml").write_text(yaml.safe_dump(scale))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(Path(sys.executable).parent / "snakemake"), *targets, "--cores", str(cores),
           "--configfile", "config/config.yaml", "scale.yaml"]
    start = time.perf_counter()
    with open(folder / "snakemake.out", "a") as out:
        subprocess.run(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


LOG_DIRS = {"tile_shard": "tiles", "pair_shard": "pairs"}
USED = re.compile(r"tiledup \S+: ([0-9.]+) s CPU, peak RSS ([0-9.]+) MB")


def rule_costs(results: Path) -> dict[str, dict]:
    """Per rule: jobs, wall (sum of s), cpu (sum), rss (max, MB), exact (every job's log had its rusage).

    Wall time from Snakemake's benchmark TSV. CPU time and peak RSS from the job's log, whose last
    line `tiledup <command>: X s CPU, peak RSS Y MB` is the kernel's exact rusage; Snakemake's
    cpu_time and max_rss sample the process tree every 30 s (a 60 s job read 2 s of CPU), so they
    are used only for a log without that line, and the rule is marked as sampled.
    """
    out = {}
    bench = results / "benchmarks"
    for path in sorted(bench.rglob("*.tsv")):
        rel = path.relative_to(bench)
        rule = rel.parts[0].removesuffix(".tsv")
        log = results / "logs" / (f"{LOG_DIRS.get(rule, rule)}/{rel.stem}.log" if len(rel.parts) > 1 else f"{rule}.log")
        used = USED.findall(log.read_text()) if log.exists() else []
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        cost = out.setdefault(rule, {"jobs": 0, "wall": 0.0, "cpu": 0.0, "rss": 0.0, "exact": True})
        for row in rows[-1:]:  # the last run of the job
            cost["jobs"] += 1
            cost["wall"] += float(row["s"])
            sampled = _number(row.get("cpu_time"))
            if used:  # exact for the command and the children it waited for; worker processes that a
                # forkserver started (DataLoader) are not its children: the sample may see more
                cpu, rss = map(float, used[-1])
                cost["exact"] &= cpu >= sampled
                cpu = max(cpu, sampled)
            else:
                cpu, rss, cost["exact"] = sampled, _number(row.get("max_rss")), False
            cost["cpu"] += cpu
            cost["rss"] = max(cost["rss"], rss, _number(row.get("max_rss")))
    return out


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0  # "NA": the job ended before Snakemake sampled it


def discovery(results: Path) -> dict:
    """Chips, truth overlaps, candidates, overlaps verify scored, candidate recall, decisions (None:
    the run has not got that far)."""
    path = results / "eval/metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    disc = metrics.get("discovery", {})
    cand = disc.get("candidates", {})
    dec = disc.get("decisions", {})
    rows = lambda p: pq.read_metadata(p).num_rows if p.exists() else None  # noqa: E731
    return {
        "chips": rows(results / "demo/layout.parquet"),
        "truth_overlaps": metrics.get("n_overlaps"),
        "candidates": rows(results / "overlaps/candidates.parquet"),
        "verified": rows(results / "overlaps/overlaps.parquet"),
        "recall": cand.get("recall"), "recall_hash": cand.get("recall_without_implied"),
        "dup_precision": dec.get("precision"), "dup_recall": dec.get("recall"),
    }


def pair_epochs(results: Path) -> int:
    """Training pairs x epochs trained (train's cost), 0 before training."""
    counts, history = results / "dataset/counts.json", results / "model/history.csv"
    if not (counts.exists() and history.exists()):
        return 0
    train = json.loads(counts.read_text())["train"]
    pairs = train if isinstance(train, int) else train.get("pairs", train.get("total", 0))
    return pairs * (len(history.read_text().splitlines()) - 1)


def fit(ns: list[int], costs: list[float], n: int) -> float:
    """cost(n) from cost = a + b n fitted to the measured points (one point: b = cost / N). No growth
    seen (b <= 0): the largest measured cost; a < 0 (noise on a nearly proportional cost):
    proportional to the largest N."""
    if len(set(ns)) == 1:
        return costs[-1] / ns[-1] * n
    b, a = np.polyfit(ns, costs, 1)
    if b <= 0:
        return max(costs)
    if a < 0:
        return costs[int(np.argmax(ns))] / max(ns) * n
    return a + b * n


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def table(runs: dict[int, dict], gpu_runs: dict[int, dict]) -> str:
    ns = sorted(runs)
    rules = [r for r in ORDER if any(r in runs[n]["rules"] for n in ns)]
    lines = ["| rule | " + " | ".join(f"{runs[n]['discovery']['chips']:,} chips: wall / CPU / peak RSS"
                                      for n in ns) + " | CPU s per 1k chips (first -> last N) |",
             "|---|" + "---|" * len(ns) + "---|"]
    for r in rules:
        cells = []
        for n in ns:
            c = runs[n]["rules"].get(r)
            cells.append("-" if c is None else f"{fmt_s(c['wall'])} / {fmt_s(c['cpu'])} / {c['rss']:,.0f} MB")
        per_k = [runs[n]["rules"][r]["cpu"] / runs[n]["discovery"]["chips"] * 1000 for n in ns if r in runs[n]["rules"]]
        sampled = "" if all(runs[n]["rules"].get(r, {}).get("exact", True) for n in ns) else " (CPU: 30 s samples)"
        lines.append(f"| {r}{sampled} | " + " | ".join(cells) + f" | {per_k[0]:.1f} -> {per_k[-1]:.1f} |")
    lines.append("| **whole run** (wall) | " + " | ".join(
        "-" if np.isnan(runs[n]["wall"]) else fmt_s(runs[n]["wall"]) for n in ns) + " | |")
    lines += ["", "| figure | " + " | ".join(f"{runs[n]['discovery']['chips']:,} chips" for n in ns) + " |",
              "|---|" + "---|" * len(ns)]
    for key, label, f in (("truth_overlaps", "truth overlaps scored (evaluate)", lambda x: f"{x:,}"),
                          ("candidates", "candidates", lambda x: f"{x:,}"),
                          ("verified", "overlaps verify scored", lambda x: f"{x:,}"),
                          ("recall", "candidate recall (decidable duplicates)", pct),
                          ("recall_hash", "... without implied overlaps", pct),
                          ("dup_precision", "duplicates decided: precision", pct),
                          ("dup_recall", "duplicates decided: recall", pct)):
        lines.append(f"| {label} | " + " | ".join("-" if runs[n]["discovery"][key] is None
                                                  else f(runs[n]["discovery"][key]) for n in ns) + " |")

    # projection to Airbus, from CPU time (wall time on a shared machine says more about the others)
    chips = [runs[n]["discovery"]["chips"] for n in ns]
    lines += ["", f"Projected to {AIRBUS:,} chips from the CPU time (cost = a + b x chips fitted per rule "
              "to the runs above; one run: proportional), divided by the cores a rule can use:", "",
              "| rule | CPU | 2 cores: wall | 16-core node: wall | GPU node: wall | peak RSS |",
              "|---|---|---|---|---|---|"]
    totals = [0.0, 0.0, 0.0]
    gpu_missing = False
    for r in rules:
        have = [n for n in ns if r in runs[n]["rules"]]
        xs = [runs[n]["discovery"]["chips"] for n in have]
        if r == "train":  # set by sample.pairs x epochs, not by the chips: per pair-epoch
            per = [runs[n]["rules"][r]["cpu"] / runs[n]["pair_epochs"] for n in have if runs[n]["pair_epochs"]]
            cpu = per[-1] * AIRBUS_PAIR_EPOCHS if per else float("nan")
        else:
            cpu = fit(xs, [runs[n]["rules"][r]["cpu"] for n in have], AIRBUS)
        rss = None
        if len(set(xs)) > 1:  # one size says nothing about how memory grows
            base = min(c["rss"] for n in have for c in runs[n]["rules"].values())  # an interpreter
            rss = base + fit(xs, [runs[n]["rules"][r]["rss"] - base for n in have], AIRBUS)
        two = cpu / (2 if r in PARALLEL else 1)
        node = cpu / (16 if r in SHARD_RULES else THREADS_16.get(r, 1))
        gpu = node
        if r in GPU_RULES:
            g = [n for n in gpu_runs if r in gpu_runs[n]["rules"]]
            if g:
                gx = [gpu_runs[n]["discovery"]["chips"] for n in g]
                gpu = fit(gx, [gpu_runs[n]["rules"][r]["wall"] for n in g], AIRBUS)
            else:
                gpu, gpu_missing = None, True
        totals[0] += two
        totals[1] += node
        totals[2] += gpu or 0.0
        exact = all(runs[n]["rules"][r]["exact"] for n in have)
        lines.append(f"| {r}{'' if exact else ' (CPU: 30 s samples)'} | {fmt_s(cpu)} | {fmt_s(two)} | "
                     f"{fmt_s(node)} | {'not measured' if gpu is None else fmt_s(gpu)} | "
                     f"{'needs two sizes' if rss is None else f'{rss / 1024:.1f} GB'} |")
    lines.append(f"| **total** | | {fmt_s(totals[0])} | {fmt_s(totals[1])} | "
                 f"{'not measured (train, verify, evaluate)' if gpu_missing else fmt_s(totals[2])} | |")
    lines += ["", f"Measured on {os.cpu_count()} cores, chips {', '.join(f'{c:,}' for c in chips)}."]
    return "\n".join(lines) + "\n"


def gather(scratch: Path, chips: list[int]) -> dict[int, dict]:
    runs = {}
    for n in chips:
        results = scratch / f"chips-{n}" / "results"
        if not (results / "demo/layout.parquet").exists():
            print(f"chips {n}: no run in {results.parent}", file=sys.stderr)
            continue
        if not (results / "eval/metrics.json").exists():
            print(f"chips {n}: the run in {results.parent} has not finished: its finished rules only",
                  file=sys.stderr)
        wall_file = results.parent / "wall_seconds"
        runs[n] = {"rules": rule_costs(results), "discovery": discovery(results), "pair_epochs": pair_epochs(results),
                   "wall": float(wall_file.read_text()) if wall_file.exists() else float("nan")}
    return runs


def has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, nargs="+", default=[2000, 5000, 20000])
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/tiledup-scale"))
    ap.add_argument("--seed", type=int, default=0, help="demo.seed of the scale demos")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--train-epochs", type=int, help="train.epochs of the runs (train's cost is set by "
                    "sample.pairs x epochs, not by the chips; default: the config's)")
    ap.add_argument("--gather-only", action="store_true", help="only tabulate the finished runs")
    ap.add_argument("--targets", nargs="*", default=[], help="Snakemake targets (default: the whole "
                    "workflow), e.g. `pairs candidates` for the rules before training only")
    ap.add_argument("--gpu-from", type=Path, help="scratch folder of a run of this script on a GPU machine")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    a = ap.parse_args()
    if not a.gather_only:
        for n in a.chips:
            folder = a.scratch / f"chips-{n}"
            print(f"chips {n}: running the workflow in {folder} on {a.cores} cores", flush=True)
            fresh = not (folder / "results").exists()
            seconds = run(folder, n, a.seed, a.cores, a.train_epochs, a.targets)
            if fresh:  # a resumed run's time is not the whole run's: the table says "-" for it
                (folder / "wall_seconds").write_text(f"{seconds:.1f}\n")
            print(f"chips {n}: {seconds:.0f} s", flush=True)
    runs = gather(a.scratch, a.chips)
    if not runs:
        return 1
    gpu_runs = gather(a.gpu_from, a.chips) if a.gpu_from else {}
    if has_cuda():
        print("CUDA is present: these runs are GPU runs (train, verify, evaluate on the GPU)")
        gpu_runs = runs
    text = table(runs, gpu_runs)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

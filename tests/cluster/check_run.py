"""Check a workflow run on SLURM (called by run_slurm.sh after snakemake succeeded).

Evidence comes from SLURM itself, not from Snakemake's word: `scontrol show job`
snapshots taken during the run (state, exit code, comment = rule, TresPerJob = GPUs)
and the per-job SLURM logs the executor plugin keeps under .snakemake/slurm_logs/.

Checks: every rule that did not run locally went through sbatch, as many times as the
DAG had jobs of it (counted in the SLURM job logs, where grouped jobs run together);
every SLURM job COMPLETED with exit code 0; the GPU rules asked SLURM for a GPU; the
many per-shard jobs were grouped into fewer submissions; no submission asked for more
CPUs than the node has (`--node-cpus`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from tiledup.run.slurm import records

SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.?$")
# Job headers in Snakemake's output; the jobstep's inner run prints them again as
# "localrule"/"localcheckpoint", which the ^ anchor leaves out.
RULE = re.compile(r"^(?:rule|checkpoint) (\w+):", re.M)
LOCAL_BLOCK = re.compile(r"^local(?:rule|checkpoint) (\w+):\n((?:[ \t].*\n|Shell command:.*\n)*)", re.M)
GPU = re.compile(r"gpu[:=/]?1\b")
SHARD_RULES = ("tile_shard", "pair_shard")


def job_stats(text: str) -> dict[str, int]:
    """Rule -> job count from the first 'Job stats' table (the DAG as planned)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Job stats:")), None)
    if start is None:
        return {}
    stats = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


def snapshots(path: Path) -> dict[str, dict[str, str]]:
    """JobId -> fields of its latest `scontrol show job --oneliner` record."""
    return {fields["JobId"]: fields for fields in records(path.read_text()) if "JobId" in fields}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snakemake-log", type=Path, required=True, help="snakemake --verbose output")
    p.add_argument("--jobs", type=Path, required=True, help="scontrol show job --oneliner snapshots")
    p.add_argument("--workdir", type=Path, required=True, help="the workflow's working directory")
    p.add_argument("--gpu-rules", nargs="*", default=[], help="rules that must have asked for a GPU")
    p.add_argument("--node-cpus", type=int, help="CPUs of the largest node: no job may ask for more")
    a = p.parse_args(argv)

    text = a.snakemake_log.read_text()
    planned = job_stats(text)
    # Rules the main process ran itself, and whether they had a command (print-shell-commands
    # is on in the profile): only command-less target rules (all, tiles, ...) may run locally.
    local = {}
    for rule, body in LOCAL_BLOCK.findall(text):
        local[rule] = local.get(rule, False) or "Shell command: None" not in body
    submitted = [m.groups() for m in map(SUBMITTED.search, text.splitlines()) if m]
    slurm = snapshots(a.jobs)
    problems = []
    if not planned:
        problems.append("no 'Job stats' table in the snakemake log")
    if not submitted:
        problems.append("no job was submitted to SLURM")

    # Which rules each SLURM job ran, read from its own log (the jobstep's snakemake output).
    ran_in = defaultdict(list)      # rule -> SLURM job ids (one per execution of the rule)
    for _, slurm_id, log in submitted:
        log_path = Path(log) if Path(log).is_absolute() else a.workdir / log
        state = slurm.get(slurm_id)
        if state is None:
            problems.append(f"SLURM job {slurm_id} never showed up in scontrol")
        elif state.get("JobState") != "COMPLETED" or state.get("ExitCode") != "0:0":
            problems.append(f"SLURM job {slurm_id}: JobState={state.get('JobState')} "
                            f"ExitCode={state.get('ExitCode')}")
        elif a.node_cpus and int(state.get("NumCPUs", 0)) > a.node_cpus:
            problems.append(f"SLURM job {slurm_id} ({state.get('Comment')}) asked for "
                            f"{state.get('NumCPUs')} CPUs; the node has {a.node_cpus}")
        if not log_path.is_file():
            problems.append(f"SLURM job {slurm_id}: log {log_path} is missing")
            continue
        for rule in RULE.findall(log_path.read_text(errors="replace")):
            ran_in[rule].append(slurm_id)

    print(f"{'rule':<12} {'planned':>7} {'in SLURM':>8} {'sbatch jobs':>11}")
    for rule, n in planned.items():
        ids = sorted(set(ran_in.get(rule, [])), key=int)
        where = "local" if rule in local else f"{len(ids):>11}"
        print(f"{rule:<12} {n:>7} {len(ran_in.get(rule, [])):>8} {where}")
        if rule in local:
            if local[rule] or rule in ran_in:
                problems.append(f"rule {rule} ran locally, not through sbatch")
            continue
        if len(ran_in.get(rule, [])) != n:
            problems.append(f"rule {rule}: {n} job(s) planned, {len(ran_in.get(rule, []))} "
                            "found in SLURM job logs")

    for rule in a.gpu_rules:
        ids = [i for i, f in slurm.items() if re.fullmatch(rf"rule_{rule}(_wildcards_\S*)?", f.get("Comment", ""))]
        ids = [i for i in ids if i in {s for _, s, _ in submitted}]
        if not ids:
            problems.append(f"no SLURM job of rule {rule} (a GPU rule) was found")
        for i in ids:
            tres = slurm[i].get("TresPerJob", "") + " " + slurm[i].get("TresPerNode", "")
            if not GPU.search(tres):
                problems.append(f"SLURM job {i} (rule {rule}) did not ask for a GPU: TresPerJob={tres.strip()!r}")
            else:
                print(f"GPU request of rule {rule}: SLURM job {i} TresPerJob={slurm[i].get('TresPerJob')}")

    for rule in SHARD_RULES:
        runs = ran_in.get(rule, [])
        if len(runs) > 1 and len(set(runs)) >= len(runs):
            problems.append(f"rule {rule}: {len(runs)} jobs in {len(set(runs))} submissions (not grouped)")

    mine = [f for i, f in slurm.items() if i in {s for _, s, _ in submitted}]
    print(f"SLURM jobs submitted: {len(submitted)}; states: {dict(Counter(f.get('JobState') for f in mine))}")
    print("CPUs asked: " + ", ".join(sorted({f"{f.get('Comment')}={f.get('NumCPUs')}" for f in mine})))
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

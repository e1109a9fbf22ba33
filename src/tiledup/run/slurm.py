"""SLURM: a job that no node can ever run ends the workflow run, with a message saying why.

SLURM accepts a job that asks for more CPUs than any node of its partition has and
keeps it PENDING for good (reason PartitionConfig, unless the site sets
EnforcePartLimits); snakemake-executor-plugin-slurm (2.8, the newest) ignores pending
reasons, so Snakemake would poll that job forever. Other requests beyond every node
(memory, GPUs on SLURM 22.05) are refused by sbatch at once, and the job fails with
sbatch's error.

`watch_queue` (started by the workflow's onstart handler under the slurm executor)
looks once at each pending job of the run, compares what it asks for (CPUs, memory,
GPUs) with the nodes of its partition(s), and cancels a job that fits none, after
writing why into the job's SLURM log and Snakemake's log; the plugin then reports the
job as failed. `explain_rejected` (the onerror handler) adds the same comparison to a
submission sbatch refused. Both name the rule, the request and what the nodes offer.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
import threading
import time
from pathlib import Path

FIELD = re.compile(r"(\w+(?:/\w+)?)=(\S*)")
GPUS = re.compile(r"gpu(?::([A-Za-z]\w*))?[:=](\d+)")
UNITS_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}
SHOW_SHAPES = 5  # distinct node shapes listed in a message


def records(text: str) -> list[dict[str, str]]:
    """The Key=Value fields of each `scontrol show ... --oneliner` line."""
    return [dict(FIELD.findall(line)) for line in text.splitlines() if "=" in line]


def _mb(value: str | None) -> int:
    """'3000M', '4G', '23593' (MB) -> MB; missing or unlimited -> 0."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", value or "")
    return int(float(m.group(1)) * UNITS_MB[m.group(2) or "M"]) if m else 0


def _gpus(*tres: str | None) -> tuple[int, str | None]:
    """(count, type or None) of GPUs in TRES/GRES strings such as gres:gpu:1, gres/gpu:a100:2."""
    n, kind = 0, None
    for text in tres:
        for k, count in GPUS.findall(text or ""):
            n, kind = n + int(count), kind or k or None
    return n, kind


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout


class Node:
    """What one node offers in one partition (the partition's per-node caps applied)."""

    def __init__(self, node: dict, partition: dict):
        self.name, self.partition = node.get("NodeName", "?"), partition.get("PartitionName", "?")
        self.default = partition.get("Default") == "YES"
        self.cpus = int(node.get("CPUEfctv") or node.get("CPUTot") or 0)
        if partition.get("MaxCPUsPerNode", "UNLIMITED").isdigit():
            self.cpus = min(self.cpus, int(partition["MaxCPUsPerNode"]))
        self.mem_mb = _mb(node.get("RealMemory"))
        if _mb(partition.get("MaxMemPerNode")):
            self.mem_mb = min(self.mem_mb, _mb(partition["MaxMemPerNode"]))
        self.gres = (node.get("Gres") or "").replace("(null)", "")
        self.gpus = _gpus(self.gres)[0]

    def holds(self, ask: dict) -> bool:
        gpus = self.gpus if not ask["gpu_type"] else sum(
            int(n) for k, n in GPUS.findall(self.gres) if k == ask["gpu_type"])
        return ask["cpus"] <= self.cpus and ask["mem_mb"] <= self.mem_mb and ask["gpus"] <= gpus

    def shape(self) -> str:
        return _amounts(self.cpus, self.mem_mb, self.gpus)


def nodes() -> list[Node]:
    """Every (node, partition) pair of the cluster; down nodes and hidden partitions included."""
    parts = {p["PartitionName"]: p for p in records(_run("scontrol", "--all", "show", "partition", "--oneliner"))}
    return [Node(n, parts[p]) for n in records(_run("scontrol", "show", "node", "--oneliner"))
            for p in (n.get("Partitions") or "").split(",") if p in parts]


def _amounts(cpus: int, mem_mb: int, gpus: int, gpu_type: str | None = None) -> str:
    gpu = f"{gpus} {gpu_type + ' ' if gpu_type else ''}GPU{'s' * (gpus != 1)}" if gpus else "no GPU"
    return f"{cpus} CPU{'s' * (cpus != 1)}, {mem_mb} MB and {gpu}"


def unfit(what: str, ask: dict, cluster: list[Node], verdict: str = "can never start") -> str | None:
    """A message if no node of the asked partition(s) can hold `ask`; None if one can, or if
    the partition's nodes are unknown (never cancel on a guess)."""
    mine = [n for n in cluster if n.partition in ask["partitions"] or not ask["partitions"] and n.default]
    if not mine or any(n.holds(ask) for n in mine):
        return None
    shapes: dict[str, list[str]] = {}
    for n in sorted(mine, key=lambda n: (-n.cpus, -n.mem_mb, -n.gpus)):
        shapes.setdefault(n.shape(), []).append(n.name)
    offer = "; ".join(f"{names[0] if len(names) == 1 else f'{len(names)} nodes'}: {shape}"
                      for shape, names in list(shapes.items())[:SHOW_SHAPES])
    where = f"partition {','.join(ask['partitions'])}" if ask["partitions"] else "the default partition"
    wants = _amounts(ask["cpus"], ask["mem_mb"], ask["gpus"], ask["gpu_type"])
    return (f"{what} {verdict}: it asks for {wants} on one node of {where}, and no node there has "
            f"that much ({offer}). Lower its threads (--cores, --set-threads), mem_mb or gpu "
            "(--set-resources), or give it a larger partition (slurm_partition).")


def _job_ask(job: dict) -> dict:
    """What a pending job asks SLURM for, from its `scontrol show job` record."""
    cpus = int(job.get("NumCPUs") or 1)
    mem = _mb(job.get("MinMemoryNode")) or _mb(job.get("MinMemoryCPU")) * cpus
    per_task = _gpus(job.get("TresPerTask"))
    gpus, kind = _gpus(job.get("TresPerJob"), job.get("TresPerNode"))
    gpus += per_task[0] * int(job.get("NumTasks") or 1)
    return {"cpus": cpus, "mem_mb": mem, "gpus": gpus, "gpu_type": kind or per_task[1],
            "partitions": [p for p in (job.get("Partition") or "").split(",") if p]}


def _job_name(comment: str, log: str) -> str:
    """'rule train', 'rule tile_shard (shard=001)' or 'group job shards_tile_shard', from the
    comment and the log path the plugin gives every job."""
    m = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.+))?", comment or "")
    if not m:
        return "a job"
    kind = "group job" if "/group_" in (log or "") else "rule"
    return f"{kind} {m.group(1)}{f' ({m.group(2)})' if m.group(2) else ''}"


def check_pending(workdir: str | os.PathLike, seen: set[str], report) -> list[str]:
    """Cancel this user's pending jobs in `workdir` that no node can run; their ids.

    Each job is examined once (`seen` remembers it); `report(message)` tells the user why.
    """
    workdir = os.path.realpath(workdir)
    new = []
    for line in _run("squeue", f"--user={getpass.getuser()}", "--noheader", "--states=PENDING",
                     "--format=%i|%Z").splitlines():
        job_id, _, wd = line.strip().partition("|")
        if job_id and job_id not in seen and os.path.realpath(wd) == workdir:
            new.append(job_id)
    if not new:
        return []
    cluster, cancelled = nodes(), []
    for job_id in new:
        seen.add(job_id)
        for job in records(_run("scontrol", "show", "job", "--oneliner", job_id)):
            nodes_asked = int(re.match(r"\d*", job.get("NumNodes") or "").group() or 1)  # "1", "2-4"
            if job.get("JobState") != "PENDING" or nodes_asked > 1:
                continue  # started meanwhile, or spread over nodes (not judged here)
            name = f"{_job_name(job.get('Comment'), job.get('StdOut'))} (SLURM job {job.get('JobId')})"
            why = unfit(name, _job_ask(job), cluster)
            if why:
                log = Path(job.get("StdOut") or "")
                if log.name and log.parent.is_dir():
                    log.write_text(why + "\n")
                _run("scancel", job["JobId"])
                report(f"{why} Cancelled it.")
                cancelled.append(job["JobId"])
    return cancelled


def watch_queue(executor: str, report, interval: float = 10.0) -> threading.Thread | None:
    """Under the slurm executor, check the run's pending jobs every `interval` seconds
    (a daemon thread of the Snakemake process; the working directory identifies the run)."""
    if executor != "slurm":
        return None
    workdir, seen = os.getcwd(), set()

    def loop():
        while True:
            time.sleep(interval)
            try:
                check_pending(workdir, seen, report)
            except (OSError, subprocess.SubprocessError):
                pass  # SLURM busy or briefly unreachable: the next round retries

    thread = threading.Thread(target=loop, name="tiledup-slurm-watch", daemon=True)
    thread.start()
    return thread


def _sbatch_ask(call: str) -> tuple[str, dict]:
    """(job name, request) from the options of an sbatch command line."""
    opts, args = {}, shlex.split(call.split(" --wrap=", 1)[0].split(" /dev/stdin", 1)[0])
    for i, a in enumerate(args):
        key, eq, value = a.partition("=")
        opts[key] = value if eq else (args[i + 1] if i + 1 < len(args) else "")
    cpus = int(opts.get("--cpus-per-task") or opts.get("-c") or 1) * int(opts.get("--ntasks") or 1)
    gpus, kind = _gpus(f"gpu:{opts['--gpus']}" if "--gpus" in opts else "", opts.get("--gres"))
    if opts.get("--cpus-per-gpu"):
        cpus = int(opts["--cpus-per-gpu"]) * max(1, gpus)
    mem = _mb(opts.get("--mem")) or _mb(opts.get("--mem-per-cpu")) * cpus
    parts = opts.get("-p") or opts.get("--partition") or ""
    ask = {"cpus": cpus, "mem_mb": mem, "gpus": gpus, "gpu_type": kind,
           "partitions": [p for p in parts.split(",") if p]}
    return _job_name(opts.get("--comment", ""), opts.get("--output", "")), ask


def explain_rejected(snakemake_logs, report, cluster: list[Node] | None = None) -> list[str]:
    """For each submission sbatch refused in this run's log(s): what it asked vs what the nodes
    (default: this cluster's) offer."""
    if isinstance(snakemake_logs, (str, os.PathLike)):
        snakemake_logs = [snakemake_logs]
    text = "".join(Path(p).read_text(errors="replace") for p in snakemake_logs or [] if Path(p).is_file())
    calls = re.findall(r"SLURM sbatch failed\..*?sbatch call:\s*\n\s*(sbatch [^\n]+)", text, re.S)
    if not calls:
        return []
    try:
        cluster = nodes() if cluster is None else cluster
    except (OSError, subprocess.SubprocessError):
        return []
    out = []
    for call in calls:
        why = unfit(*_sbatch_ask(call), cluster, verdict="was refused by sbatch")
        if why and why not in out:  # a retried job is refused again: say it once
            report(why)
            out.append(why)
    return out

"""Stop a running DupNet training job in SLURM and check that nothing of it is left on the node.

Called by run_slurm.sh while snakemake runs the `train` rule: waits until the job's
training process has its DataLoader workers, then stops the job (`--how scancel`), or
waits for SLURM to stop it at its time limit (`--how timeout`), and then checks from
/proc (processes carry SLURM_JOB_ID in their environment, orphans included) that the
training command and its workers are gone well before SLURM's own SIGKILL after
KillWait (30 s), and that nothing of the job is left after it. (Snakemake's job step
itself may wait for that SIGKILL: at a time limit, srun stops relaying its output.)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: procs.py

from procs import wait_until, with_env  # noqa: E402
from tiledup.run.slurm import records  # noqa: E402


def job_id(log: Path, rule: str, timeout: float) -> str:
    """The SLURM job id of the rule's (last) submission, from the snakemake log."""
    pattern = re.compile(rf"submitted with SLURM jobid (\d+) \(log: \S*/rule_{rule}/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.findall(log.read_text(errors="replace")) if log.exists() else []
        if found:
            return found[-1]
        time.sleep(1)
    sys.exit(f"no SLURM job of rule {rule} was submitted within {timeout:.0f} s")


def state(job: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job], capture_output=True, text=True)
    return next((r.get("JobState", "?") for r in records(out.stdout)), "GONE")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snakemake-log", type=Path, required=True)
    p.add_argument("--rule", default="train")
    p.add_argument("--how", choices=["scancel", "timeout"], required=True)
    p.add_argument("--wait", type=float, default=300, help="seconds to wait for the job to train")
    p.add_argument("--gone-within", type=float, default=15,
                   help="seconds after the stop by which the training processes must be gone (KillWait is 30)")
    p.add_argument("--all-gone-within", type=float, default=60,
                   help="seconds after the stop by which every process of the job must be gone")
    a = p.parse_args(argv)

    job = job_id(a.snakemake_log, a.rule, a.wait)
    procs = lambda: with_env("SLURM_JOB_ID", job)  # noqa: E731
    loader = lambda: sum("multiprocessing.forkserver" in cmd for _, _, cmd in procs()) >= 3  # noqa: E731
    # the `tiledup train` command, its forkserver, workers and resource tracker
    training = lambda: [p for p in procs() if "tiledup train" in p[2] or "multiprocessing." in p[2]]  # noqa: E731
    if wait_until(loader, a.wait, 0.5) is None:
        sys.exit(f"SLURM job {job} ({a.rule}) never ran with its loader workers (state {state(job)})")
    print(f"SLURM job {job} ({a.rule}) is training: {len(procs())} processes on this node")

    if a.how == "scancel":
        subprocess.run(["scancel", job], check=True)
    elif wait_until(lambda: state(job) != "RUNNING", a.wait, 0.2) is None:
        sys.exit(f"SLURM job {job} still RUNNING {a.wait:.0f} s later: no time limit hit")
    start = time.monotonic()
    for what, mine, limit in (("the training processes", training, a.gone_within),
                              ("every process", procs, a.all_gone_within)):
        if wait_until(lambda: not mine(), limit - (time.monotonic() - start), 0.1) is None:
            left = "\n".join(f"  pid {pid} (parent {ppid}): {cmd[:120]}" for pid, ppid, cmd in mine())
            sys.exit(f"{limit:.0f} s after {a.how}, SLURM job {job} ({state(job)}) still has:\n{left}")
        print(f"{a.how}: {what} of SLURM job {job} gone after {time.monotonic() - start:.1f} s "
              f"(state {state(job)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

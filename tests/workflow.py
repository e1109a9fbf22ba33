"""Run the real Snakemake workflow in a scratch copy of the repository's workflow files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cluster.check_run import job_stats  # the SLURM check reads the same table

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "cluster" / "tiny.yaml"


def workflow_copy(dest: Path) -> Path:
    """Copy Snakefile, workflow/, config/, profiles/ and envs/ into `dest` (results land there)."""
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    for folder in ("workflow", "config", "profiles", "envs"):
        shutil.copytree(REPO / folder, dest / folder)
    return dest


def snakemake_command(*args: str, env: dict | None = None) -> tuple[list[str], dict]:
    """(command line, environment) for snakemake with the venv's tools on PATH."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", *args], env


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir` with the venv's tools on PATH; output is captured."""
    cmd, env = snakemake_command(*args)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run (empty if nothing to do)."""
    return job_stats(proc.stdout + proc.stderr)

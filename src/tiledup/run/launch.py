"""`tiledup run IMAGES`: the whole workflow on one folder, with Snakemake as the engine.

The command runs the repository's Snakefile (found beside the package's source: an
editable install from a clone, as `make install` makes, or PYTHONPATH=src) with
Snakemake's own command line, in the clone (where its workflow profile applies),
and every output in the results folder: `--out DIR`, i.e. the config key `results`.
The run's config is the defaults plus `DIR/run.yaml`, which this command writes:
images, truth, results and every `--set key.path=value` (a YAML value). A folder
that holds another images folder's run is refused (tiledup.run.inputs).

Snakemake's output is passed on without its shell commands. Ctrl-C (or SIGTERM,
SIGHUP) reaches Snakemake once, as a terminal's Ctrl-C would (SIGINT to its
process group: its jobs stop and finished outputs stay); its report of the
interrupted jobs is not shown, and one line says what stopped and how to resume.
A run with nothing to do shows the summary the last run saved (Snakemake runs no
end-of-run handler then).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tiledup.run.errors import TiledupError
from tiledup.run.inputs import REPLACE_ENV, check_inputs
from tiledup.run.io import write_text
from tiledup.run.stops import STOP_SIGNALS

RUN_CONFIG = "run.yaml"
# Config keys that name a file; train.pretrained also takes the words packaged and none.
PATH_KEYS = ("verdicts", "split_check", "train.pretrained")
KEYWORDS = {"train.pretrained": ("packaged", "none")}
JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):")
JOB_ID = re.compile(r"^\s+jobid: (\d+)")
FINISHED = re.compile(r"Finished jobid: (\d+)")
NOTHING_TO_DO = "Nothing to be done"
# The end-of-run summary, saved by the workflow in the results folder (rule handlers in common.smk).
RUN_SUMMARY = "logs/summary.txt"


def find_snakefile() -> Path:
    """The clone's Snakefile: src/tiledup/run/launch.py is three folders below it."""
    snakefile = Path(__file__).resolve().parents[3] / "Snakefile"
    if not snakefile.exists():
        raise TiledupError(f"tiledup run needs the workflow beside the package (no {snakefile}): install "
                           "tiledup from a clone (`make install` or `pip install -e .`), or run snakemake in it")
    return snakefile


def parse_sets(sets: list[str]) -> dict:
    """["train.epochs=1", "sample.pairs=200"] -> {"train": {"epochs": 1}, "sample": {"pairs": 200}}."""
    out: dict = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key or any(not p for p in key.split(".")):
            raise TiledupError(f"--set {item!r}: expected key.path=value, e.g. train.epochs=1")
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise TiledupError(f"--set {item!r}: {p} is already set to a value")
        try:
            node[leaf] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as e:
            raise TiledupError(f"--set {item!r}: the value is not YAML ({e})") from None
    return out


def _lookup(config: dict, key: str):
    """config's value at a dotted key, or None."""
    for k in key.split("."):
        config = config.get(k) if isinstance(config, dict) else None
    return config


def _user_files(configfiles) -> dict:
    """Each PATH_KEYS value the user's config files set (the last file wins)."""
    found = {}
    for c in configfiles:
        try:
            loaded = yaml.safe_load(Path(c).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise TiledupError(f"config file {c}: not readable YAML ({e})") from None
        found.update({key: _lookup(loaded, key) for key in PATH_KEYS if _lookup(loaded, key) is not None})
    return found


def prepare(images, out, truth=None, sets=(), force=False, configfiles=()) -> Path:
    """Check the folders, refuse another folder's run (unless force), write DIR/run.yaml; return it."""
    images, out = Path(images).resolve(), Path(out).resolve()
    if not images.is_dir():
        raise TiledupError(f"images folder {images} does not exist")
    if truth and not Path(truth).is_file():
        raise TiledupError(f"truth file {truth} does not exist")
    if not force:  # a forced run replaces the record only when it starts (tiledup.run.inputs)
        check_inputs(out, str(images))
    config = parse_sets(list(sets))
    for key in ("images", "truth", "results"):
        if key in config:
            raise TiledupError(f"--set {key}=...: give it as {'IMAGES' if key == 'images' else '--' + key}")
    config.update(images=str(images), truth=str(Path(truth).resolve()) if truth else "", results=str(out))
    # Snakemake runs in the clone: a file named on the command line (--set) or in the user's config
    # files is the user's, from where they typed the command; run.yaml, the last layer, holds it resolved
    from_files = _user_files(configfiles)
    for key in PATH_KEYS:
        value = _lookup(config, key)
        value = from_files.get(key) if value is None else value
        if isinstance(value, str) and value and value not in KEYWORDS.get(key, ()):
            *parents, leaf = key.split(".")
            block = config
            for k in parents:
                block = block.setdefault(k, {})
            block[leaf] = str(Path(value).resolve())
    path = out / RUN_CONFIG
    write_text(yaml.safe_dump(config, sort_keys=False), path)
    return path


def snakemake_command(snakefile: Path, run_config: Path, cores, profile: str | None, extra=(),
                      configfiles=()) -> list[str]:
    """Snakemake on the clone's Snakefile; config layers: the defaults, the user's files, then the run's own."""
    exe = Path(sys.executable).with_name("snakemake")
    # the extra arguments (targets, options) first: --configfile takes every word after it
    cmd = [str(exe) if exe.exists() else "snakemake", *extra, "--snakefile", str(snakefile), "--cores", str(cores)]
    if profile:
        named = snakefile.parent / "profiles" / profile
        cmd += ["--profile", str(named if named.is_dir() else profile)]
    return cmd + ["--configfile", str(snakefile.parent / "config" / "config.yaml"),
                  *(str(Path(c).resolve()) for c in configfiles), str(run_config)]


def stream(cmd: list[str], cwd: Path, resume: str, replace: bool = False, summary: Path | None = None) -> int:
    """Run Snakemake, pass its output on (without shell commands); on a stop signal, one line instead.
    replace: the run replaces another images folder's run in its results folder (`--force`);
    summary: the saved end-of-run summary, shown when Snakemake has nothing to do."""
    env = dict(os.environ)
    env.pop(REPLACE_ENV, None)
    if replace:
        env[REPLACE_ENV] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # SIGINT handled by default in Snakemake whatever this process inherited: a background job of a
    # script (`tiledup run ... &`, nohup) ignores SIGINT, and Snakemake would then never stop
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stopped: list[int] = []

    def forward(signum, frame):
        if not stopped:
            stopped.append(signum)
            os.killpg(proc.pid, signal.SIGINT)

    old = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    running, starting, last, nothing = {}, None, None, False
    try:
        for line in proc.stdout:
            nothing = nothing or line.startswith(NOTHING_TO_DO)
            if m := JOB.match(line):
                starting = last = m.group(1)
            elif (m := JOB_ID.match(line)) and starting:
                running[m.group(1)], starting = starting, None
            elif m := FINISHED.search(line):
                running.pop(m.group(1), None)
            if not stopped and not line.startswith("Shell command:"):
                sys.stdout.write(line)
                sys.stdout.flush()
        rc = proc.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if stopped:
        # the jobs still running; else the last one started (Snakemake may report it ended before the stop)
        steps = ", ".join(sorted(set(running.values()))) or last or "the workflow"
        print(f"tiledup run stopped by {signal.Signals(stopped[0]).name} during {steps}; finished steps "
              f"are kept, so the same command resumes: {resume}", flush=True)
        return 128 + stopped[0]
    if rc == 0 and nothing and summary is not None and summary.is_file():
        print(f"Every result is up to date; the last run's summary ({summary}):\n{summary.read_text()}",
              end="", flush=True)
    return rc


def run(images, out, truth=None, cores="all", profile=None, sets=(), force=False, extra=(),
        resume=(), configfiles=()) -> int:
    """The `tiledup run` command; returns Snakemake's exit code (128 + signal when stopped).

    resume: the command's arguments, for the line that says how to resume a stopped run.
    """
    snakefile = find_snakefile()
    for c in configfiles:
        if not Path(c).is_file():
            raise TiledupError(f"config file {c} does not exist")
    run_config = prepare(images, out, truth, sets, force, configfiles)
    cmd = snakemake_command(snakefile, run_config, cores, profile, extra, configfiles)
    return stream(cmd, snakefile.parent, shlex.join(["tiledup", *(a for a in resume if a != "--force")]), force,
                  Path(out).resolve() / RUN_SUMMARY)

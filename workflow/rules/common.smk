import json
import os
import sys

from tiledup.run.config import check_config
from tiledup.pairs.dataset import check_fractions, check_sample_config
from tiledup.run.errors import TiledupError
from tiledup.run.inputs import check_inputs, write_inputs
from tiledup.run.launch import RUN_SUMMARY
from tiledup.tiles.manifest import IMAGE_SUFFIXES, remove_stale_shards, shard_name
from tiledup.tiles.table import TILE_SCHEMA
from tiledup.run.slurm import explain_rejected, watch_queue


# `--config truth_complete=true` arrives as text (Snakemake parses numbers only): read it as the boolean.
if str(config.get("truth_complete")).lower() in ("true", "false"):
    config["truth_complete"] = str(config["truth_complete"]).lower() == "true"

# The schema is the source of truth; check_config turns its errors into one short line each
# (key path, what is allowed, what was given) instead of snakemake.utils.validate's schema dump.
try:
    check_config(config, workflow.source_path("../schemas/config.schema.yaml"))
    check_sample_config(config["sample"], has_layout=not config["images"])
    check_fractions(config["groups"]["fractions"], "groups")
except TiledupError as e:
    raise WorkflowError(str(e)) from None

# Every output goes under RESULTS (config key `results`; `tiledup run --out`).
RESULTS = os.path.normpath(config["results"])
DEMO = not config["images"]
IMAGES = f"{RESULTS}/demo/images" if DEMO else config["images"]
LAYOUT = f"{RESULTS}/demo/layout.parquet" if DEMO else None
TRUTH = config["truth"] or (f"{RESULTS}/demo/dup_truth.txt" if DEMO else "")
# The demo's own truth labels every overlap of its scenes; a truth file given is partial unless marked.
TRUTH_COMPLETE = config["truth_complete"] or (DEMO and not config["truth"])
# A person's verdicts (dup_truth format): inputs of groups, exports, split_check and evaluate (and the summary),
# so editing them re-runs those and nothing before.
VERDICTS = config["verdicts"]
# A user's own split to check against the duplicates found (rule `split_check`).
SPLIT_CHECK = config["split_check"]
SPLIT_CHECK_REPORT = f"{RESULTS}/groups/split_check.json" if SPLIT_CHECK else ""
SHARDS = [shard_name(k) for k in range(config["shards"])]
# Every shard's rejected images in one table (rule `rejects`).
REJECTS = f"{RESULTS}/rejects.parquet"
# The checked dup_truth (rule `truth`), when there is a truth file.
CHECKED_TRUTH = (
    {"overlaps": f"{RESULTS}/truth/overlaps.parquet", "skipped": f"{RESULTS}/truth/skipped.parquet"}
    if TRUTH
    else {}
)


def check_images_folder(folder):
    """Fail before any job runs if the images folder is missing or empty.

    Stops at the first entry that looks like an image, so it stays O(1) on a
    folder of 200,000 chips (every cluster job re-parses this file).
    """
    if not os.path.isdir(folder):
        raise WorkflowError(f"images folder {folder!r} (config key `images`) does not exist")
    with os.scandir(folder) as entries:
        if not any(e.name.lower().endswith(IMAGE_SUFFIXES) for e in entries):
            raise WorkflowError(f"images folder {folder!r} (config key `images`) holds no .jpg images")


if not DEMO:
    check_images_folder(IMAGES)
for key in ("truth", "verdicts", "split_check"):
    if config[key] and not os.path.isfile(config[key]):
        raise WorkflowError(f"{key} file {config[key]!r} (config key `{key}`) does not exist")
if config["truth"] and not os.path.isfile(config["truth"]):
    raise WorkflowError(f"truth file {config['truth']!r} (config key `truth`) does not exist")
# One results folder, one images folder: another folder's run is never silently overwritten.
try:
    check_inputs(RESULTS, config["images"])
except TiledupError as e:
    raise WorkflowError(str(e)) from None


# Workflow handlers (Snakemake keeps one of each: a new handler must keep these calls).
# On SLURM, a job no node can run ends the run with a message instead of pending forever.
# Also: record the inputs of this run, and drop the tables of shards beyond the current count.
onstart:
    watch_queue(workflow.executor_plugin.name, logger.error)
    write_inputs(RESULTS, config["images"], config["truth"], config)
    remove_stale_shards(RESULTS, config["shards"])


onerror:
    explain_rejected(log, logger.error)


# What the run found and where (what exists of it), then the rejected images by reason, at the
# end of every run that did something. Run by Snakemake's own Python, which imports tiledup anyway.
onsuccess:
    shell(
        "{sys.executable:q} -m tiledup.cli summary --manifest {RESULTS}/manifest/manifest.parquet"
        " --rejects {REJECTS} --overlaps {RESULTS}/overlaps/overlaps.parquet"
        " --groups {RESULTS}/groups/groups.parquet --split {RESULTS}/groups/split.csv"
        " --conflicts {RESULTS}/groups/conflicts.parquet --removable {RESULTS}/groups/removable.txt"
        " --report {RESULTS}/eval/report.html --verdicts={VERDICTS:q} --split-check={SPLIT_CHECK_REPORT:q}"
        " --save {RESULTS}/{RUN_SUMMARY}"
    )


def options(block):
    """A config block as canonical JSON: one `params:` value, so editing any key re-runs the rule."""
    return json.dumps(config[block], sort_keys=True)


def shard_list(wildcards):
    """One shard's image list, once the manifest checkpoint has run.

    The lists are inputs marked ancient(): the manifest rewrites all of them, and
    that alone must not re-run every shard. Asking the checkpoint here (not only
    in a param function) is what lets Snakemake settle the DAG after a run.
    """
    lists = checkpoints.manifest.get().output.lists
    return ancient(f"{lists}/{wildcards.shard}.txt")


def shard_digest(wildcards):
    """Content digest of one shard's image list: adding images changes only their shards' digests."""
    import hashlib

    lists = checkpoints.manifest.get().output.lists
    with open(f"{lists}/{wildcards.shard}.txt", "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def optional_input(name):
    """Param: the path of a named input that may be absent (an empty list), or ""."""
    return lambda wildcards, input: input.get(name) or ""


def output_dir(name):
    """Param: the folder of a named output (for commands that write several files there)."""
    return lambda wildcards, output: os.path.dirname(output[name])


def all_targets():
    return [
        f"{RESULTS}/dataset/counts.json",
        f"{RESULTS}/model/dupnet.pt",
        f"{RESULTS}/eval/metrics.json",
        f"{RESULTS}/eval/report.html",
        f"{RESULTS}/eval/errors.csv",
        f"{RESULTS}/overlaps/candidates.parquet",
        f"{RESULTS}/overlaps/overlaps.parquet",
        f"{RESULTS}/overlaps/dup_truth.txt",
        f"{RESULTS}/groups/groups.parquet",
        f"{RESULTS}/groups/split.csv",
        *([SPLIT_CHECK_REPORT] if SPLIT_CHECK else []),
        f"{RESULTS}/groups/duplicates.json",
        f"{RESULTS}/groups/removable.txt",
    ]

import json
import os

from snakemake.utils import validate

from tiledup.dataset import check_fractions, check_sample_config
from tiledup.manifest import IMAGE_SUFFIXES, shard_name


validate(config, "../schemas/config.schema.yaml")

RESULTS = "results"
DEMO = not config["images"]
IMAGES = f"{RESULTS}/demo/images" if DEMO else config["images"]
LAYOUT = f"{RESULTS}/demo/layout.parquet" if DEMO else None
TRUTH = config["truth"] or (f"{RESULTS}/demo/dup_truth.txt" if DEMO else "")
SHARDS = [shard_name(k) for k in range(config["shards"])]
check_sample_config(config["sample"], has_layout=DEMO)
check_fractions(config["groups"]["fractions"], "groups")


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
if config["truth"] and not os.path.isfile(config["truth"]):
    raise WorkflowError(f"truth file {config['truth']!r} (config key `truth`) does not exist")


def options(block):
    """A config block as canonical JSON: one `params:` value, so editing any key re-runs the rule."""
    return json.dumps(config[block], sort_keys=True)


def shard_list(wildcards):
    """One shard's image list, once the manifest checkpoint has run.

    The lists are inputs marked ancient(): the manifest rewrites all of them, and
    that alone must not re-run every shard. Asking the checkpoint here (not only
    in a param function) is what lets Snakemake settle the DAG after a run.
    """
    checkpoints.manifest.get()
    return ancient(f"{RESULTS}/manifest/{wildcards.shard}.txt")


def shard_digest(wildcards):
    """Content digest of one shard's image list: adding images changes only their shards' digests."""
    import hashlib

    checkpoints.manifest.get()
    with open(f"{RESULTS}/manifest/{wildcards.shard}.txt", "rb") as f:
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
        f"{RESULTS}/overlaps/candidates.parquet",
        f"{RESULTS}/overlaps/overlaps.parquet",
        f"{RESULTS}/overlaps/dup_truth.txt",
        f"{RESULTS}/groups/groups.parquet",
        f"{RESULTS}/groups/split.csv",
    ]

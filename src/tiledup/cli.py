"""The `tiledup` command: one subcommand per workflow step.

Each Snakemake rule calls one subcommand. A config block arrives as one JSON
string (`--options`), so a rule passes its whole block through `params:` and
the module function takes it as keywords; keys the function does not know are
an error naming them, and keys the JSON leaves out come from config/config.yaml
(tiledup.run.config.defaults: the functions themselves state no defaults).

Every command stops cleanly on SIGTERM, SIGINT or SIGHUP (tiledup.run.stops): its
worker processes end with it, and it exits with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import resource
import sys
from concurrent.futures.process import BrokenProcessPool
from importlib import metadata

from tiledup.run import stops
from tiledup.run.config import defaults, merged, read_config
from tiledup.run.errors import TiledupError

log = logging.getLogger("tiledup")

DESCRIPTION = """\
Find same-place, same-time duplicate chips in grid-cut satellite datasets
(Airbus Ship Detection style: 768 x 768 chips cut at a 256 px stride, so two
chips can overlap in 25 tile-aligned ways).

tiledup learns, without hand labels, whether two 256 x 256 tiles show the same
place at the same time (DupNet), and checks that against a labelled dup_truth
file beside hash and pixel baselines."""

EPILOG = """\
For a folder of chips: `tiledup run IMAGES --out DIR` runs every step (Snakemake
as the engine) into DIR. The other commands are the steps the workflow calls
in order (`snakemake --cores all` in the repository; see README.md).
Each step logs to DIR/logs/, e.g. `tail -f results/logs/train.log`."""


def _call(fn, block: str, opts: dict, **args):
    """fn(**args, **opts) with opts merged over the block's defaults; config keys that fn does not
    take are named as an error (not a TypeError)."""
    opts = merged(defaults()[block], opts)
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(opts) - set(params) | set(opts) & set(args))
        if unknown:
            raise TiledupError(f"unknown `{block}` config key(s): {', '.join(unknown)}")
    return fn(**args, **opts)


def _evidence(text: str) -> dict:
    """The `evidence` block given as JSON, merged over its defaults."""
    return merged(defaults()["evidence"], _options(text))


def _options(text: str) -> dict:
    try:
        opts = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise TiledupError(f"--options is not valid JSON: {e}") from None
    if not isinstance(opts, dict):
        raise TiledupError("--options must be a JSON object")
    return opts


def cmd_demo(a, opts):
    from tiledup.demo import generate

    _call(generate, "demo", opts, images_dir=a.images, truth_path=a.truth, layout_path=a.layout,
          workers=a.workers)


def cmd_manifest(a, opts):
    from tiledup.tiles.manifest import write_manifest

    write_manifest(images_dir=a.images, shards=a.shards, manifest_path=a.out, lists_dir=a.lists,
                   truth_path=a.truth or None, on_bad_truth=a.on_bad_truth)


def cmd_tiles(a, opts):
    from tiledup.tiles.shard import tile_shard

    _call(tile_shard, "tiles", opts, images_dir=a.images, list_path=a.list, tiles_path=a.out,
          rejects_path=a.rejects)


def cmd_pairs(a, opts):
    from tiledup.pairs.shard import pair_shard

    _call(pair_shard, "pairs", opts, tiles_path=a.tiles, pairs_path=a.out)


def cmd_rejects(a, opts):
    from tiledup.tiles.rejects import gather_rejects

    gather_rejects(manifest_path=a.manifest, rejects_paths=a.rejects, out_path=a.out)


def cmd_show_rejects(a, opts):
    from tiledup.tiles.rejects import show_rejects

    show_rejects(manifest_path=a.manifest, rejects_path=a.rejects)


def cmd_summary(a, opts):
    from tiledup.discovery.summary import print_summary

    print_summary(manifest=a.manifest, rejects=a.rejects, overlaps=a.overlaps, groups=a.groups, split=a.split,
                  conflicts=a.conflicts, removable=a.removable, report=a.report, verdicts=a.verdicts or None,
                  split_check=a.split_check or None, save=a.save or None)


def cmd_exports(a, opts):
    from tiledup.discovery.exports import write_exports

    write_exports(overlaps_path=a.overlaps, groups_path=a.groups, tiles_paths=a.tiles,
                  duplicates_path=a.duplicates, removable_path=a.removable, verdicts_path=a.verdicts or None)


def cmd_run(a, opts):
    from tiledup.run.launch import run

    return run(a.images, out=a.out, truth=a.truth, cores=a.cores, profile=a.profile, sets=a.set, force=a.force,
               extra=a.snakemake, resume=a.argv, configfiles=a.configfile)


def cmd_truth(a, opts):
    from tiledup.dup_truth import write_checked

    write_checked(truth_path=a.truth, manifest_path=a.manifest, rejects_path=a.rejects,
                  images_dir=a.images, overlaps_path=a.overlaps, skipped_path=a.skipped,
                  on_bad=a.on_bad_truth)


def cmd_dataset(a, opts):
    from tiledup.pairs.dataset import build_dataset

    _call(build_dataset, "sample", opts, pairs_paths=a.pairs, layout_path=a.layout or None,
          out_dir=a.out_dir)


def cmd_train(a, opts):
    from tiledup.model.train import recorded_log, train

    with recorded_log(a.out_dir) as record:
        _call(train, "train", opts, train_path=a.train, val_path=a.val, images_dir=a.images,
              out_dir=a.out_dir, workers=a.workers, record=record)


def cmd_evaluate(a, opts):
    from tiledup.report.page import evaluate_and_report

    discovery = {"candidates_path": a.candidates, "overlaps_path": a.verified, "groups_path": a.groups,
                 "conflicts_path": a.conflicts}
    exports = {"split": a.split, "duplicates": a.duplicates, "removable": a.removable}
    given = [k for k, v in discovery.items() if v]
    if given and len(given) < len(discovery):
        raise TiledupError("evaluate: give all of --candidates, --verified, --groups, --conflicts or none")
    if a.split:
        discovery["split_path"] = a.split
    _call(evaluate_and_report, "evaluate", opts, truth_path=a.truth or None, overlaps_path=a.overlaps or None,
          skipped_path=a.skipped or None, images_dir=a.images, model_path=a.model, val_path=a.val,
          tiles_paths=a.tiles, rejects_path=a.rejects, out_dir=a.out_dir,
          layout_path=a.layout or None, discovery_paths=discovery if given else None,
          verdicts_path=a.verdicts or None, truth_complete=a.truth_complete, evidence=_evidence(a.evidence),
          exports={k: v for k, v in exports.items() if v})


def cmd_candidates(a, opts):
    from tiledup.discovery.candidates import find_candidates

    _call(find_candidates, "candidates", opts, tiles_paths=a.tiles, out_path=a.out)


def cmd_verify(a, opts):
    from tiledup.discovery.verify import verify

    _call(verify, "verify", opts, candidates_path=a.candidates, images_dir=a.images, model_path=a.model,
          tiles_paths=a.tiles, overlaps_path=a.out, truth_path=a.truth, evidence=_evidence(a.evidence),
          workers=a.workers, place_votes=a.place_votes)


def cmd_groups(a, opts):
    from tiledup.discovery.groups import groups_rule

    _call(groups_rule, "groups", opts, overlaps_path=a.overlaps, tiles_paths=a.tiles, groups_path=a.out,
          split_path=a.split, conflicts_path=a.conflicts, leaks_path=a.leaks,
          candidates_path=a.candidates or None, verdicts_path=a.verdicts or None, place_votes=a.place_votes)


def cmd_check_split(a, opts):
    from tiledup.discovery.split_check import check_split, describe

    summary = check_split(a.split, a.overlaps, a.groups, out_path=a.out or None, csv_path=a.csv or None,
                          verdicts_path=a.verdicts or None)
    print("\n".join(describe(summary)))


def cmd_compare(a, opts):
    from tiledup.discovery.compare import run

    configfile = a.configfile or (WORKFLOW_CONFIG if os.path.isfile(WORKFLOW_CONFIG) else None)
    config = read_config(configfile) if configfile else defaults()
    from tiledup.model.pretrained import PACKAGED

    model = a.model or (RUN_MODEL if os.path.isfile(RUN_MODEL) else str(PACKAGED))
    print(run(a.image1, a.image2, model, config, device=a.device, batch_size=a.batch_size, threshold=a.threshold))


def version() -> str:
    """The installed package's version (its metadata), or the source tree's when not installed."""
    try:
        return metadata.version("tiledup")
    except metadata.PackageNotFoundError:
        from tiledup import __version__

        return f"{__version__} (not installed)"


WORKFLOW_CONFIG = "config/config.yaml"
RUN_MODEL = "results/model/dupnet.pt"  # where the workflow (make demo) writes its DupNet
EVIDENCE_HELP = "the `evidence` config block as one JSON object: which tile pairs with a solid side are evidence"
OPTIONS_HELP = "the `{}` config block as one JSON object (keys as in config/config.yaml; default: its defaults)"
VERDICTS_HELP = "a person's verdicts (dup_truth format) overriding verify's decisions"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tiledup", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           title="commands (in workflow order; `tiledup COMMAND --help` for its options)")

    def command(name, fn, help, description, block=None):
        """A subcommand; `block` names the config block it takes as --options."""
        s = sub.add_parser(name, help=help, description=description)
        s.set_defaults(fn=fn)
        if block:
            s.add_argument("--options", default="{}", help=OPTIONS_HELP.format(block))
        return s

    s = command("demo", cmd_demo, "render the built-in synthetic dataset: chips, dup_truth and layout",
                "Render an Airbus-like synthetic dataset with exact ground truth: scenes seen at several "
                "times, cut into 768 x 768 JPEG chips at a 256 px stride. The same options give "
                "byte-identical output.", "demo")
    s.add_argument("--images", required=True, help="folder to write the JPEG chips into")
    s.add_argument("--truth", required=True, help="dup_truth file to write (img1 img2 tag is_dup per line)")
    s.add_argument("--layout", required=True, help="Parquet file to write each chip's scene, pass and position into")
    s.add_argument("--workers", type=int, default=2,
                   help="processes rendering scenes (the output does not depend on it)")

    s = command("manifest", cmd_manifest, "list the images folder once and assign every image to a shard",
                "List the images folder once and assign every image to one of N shards by a stable "
                "hash of its id; writes the manifest and one image list per shard. With a dup_truth "
                "file, every image it names must be in the folder (checked before any tile job).")
    s.add_argument("--images", required=True, help="folder of 768 x 768 JPEG chips")
    s.add_argument("--shards", type=int, required=True, help="number of shards")
    s.add_argument("--out", required=True, help="manifest Parquet to write (image_id, shard)")
    s.add_argument("--lists", required=True, help="folder to write the per-shard image lists into (<shard>.txt)")
    s.add_argument("--truth", default="", help="dup_truth file whose image names to check (optional)")
    s.add_argument("--on-bad-truth", default=defaults()["on_bad_truth"], choices=["error", "skip"],
                   help="a truth line naming a missing image stops the run (error) or is skipped later")

    s = command("tiles", cmd_tiles, "cut one shard's chips into 9 tiles and hash them (or list why not)",
                "Decode every chip of one shard, cut it into 9 tiles of 256 x 256 and write one row "
                "per tile: hashes (BlockMeanHash, a pixel digest), a solid flag and statistics. Images "
                "that cannot be tiled go to the rejects table with the reason.", "tiles")
    s.add_argument("--images", required=True, help="folder of the chips")
    s.add_argument("--list", required=True, help="the shard's image list (one id per line)")
    s.add_argument("--out", required=True, help="tile table (Parquet) to write")
    s.add_argument("--rejects", required=True, help="rejects table (Parquet) to write: image_id, reason")

    s = command("rejects", cmd_rejects, "gather every shard's rejected images; stop if all were rejected",
                "Gather the rejects tables of all shards into one table (image_id, reason, shard); "
                "fails with a summary by reason when every image of the folder was rejected.")
    s.add_argument("--manifest", required=True, help="the manifest (all listed images)")
    s.add_argument("--rejects", nargs="+", required=True, help="the per-shard rejects tables")
    s.add_argument("--out", required=True, help="gathered rejects table (Parquet) to write")

    s = command("show-rejects", cmd_show_rejects, "print the rejected images by reason (end of a run)",
                "Print one line per reject reason with its count, and where the full list is.")
    s.add_argument("--manifest", required=True, help="the manifest (all listed images)")
    s.add_argument("--rejects", required=True, help="the gathered rejects table")

    s = command("truth", cmd_truth, "check a dup_truth file against the folder and the rejects; write it canonical",
                "Check every line of a dup_truth file (fields, tag, label, images present and tiled, "
                "conflicting labels) and list every bad line at once; write the canonical overlaps "
                "(img1 < img2) and the skipped lines.")
    s.add_argument("--truth", required=True, help="dup_truth file (img1 img2 tag is_dup per line)")
    s.add_argument("--manifest", required=True, help="the manifest (the images in the folder)")
    s.add_argument("--rejects", required=True, help="the gathered rejects table")
    s.add_argument("--images", required=True, help="the images folder (named in messages)")
    s.add_argument("--overlaps", required=True, help="checked overlaps (Parquet) to write")
    s.add_argument("--skipped", required=True, help="skipped lines (Parquet) to write")
    s.add_argument("--on-bad-truth", default=defaults()["on_bad_truth"], choices=["error", "skip"],
                   help="a bad line stops the run (error) or is skipped and listed (skip)")

    s = command("pairs", cmd_pairs, "build one shard's self-supervised tile pairs from its tile table",
                "Build training pairs without labels: inside a chip, tile i vs tile i is a duplicate "
                "and tile i vs tile j a non-duplicate; solid and near-solid pairs are dropped and "
                "non-duplicates are balanced by BlockMeanHash similarity.", "pairs")
    s.add_argument("--tiles", required=True, help="the shard's tile table (Parquet)")
    s.add_argument("--out", required=True, help="pair table (Parquet) to write")

    s = command("dataset", cmd_dataset, "sample the pairs and split them into train / val / test by image",
                "Sample the pairs of all shards down to a size with balanced classes and split them by "
                "image (or by the demo's scene), so no image is in two splits.", "sample")
    s.add_argument("--pairs", nargs="+", required=True, help="pair tables of all shards")
    s.add_argument("--layout", default="", help="the demo's layout Parquet (needed for group_by: scene)")
    s.add_argument("--out-dir", required=True, help="folder for train/val/test.parquet and counts.json")

    s = command("train", cmd_train, "train DupNet, the same-place-same-time tile classifier",
                "Train DupNet on the training pairs (augmented alike for both classes), keep the model "
                "with the lowest validation loss, and checkpoint every epoch so that a killed run resumes.", "train")
    s.add_argument("--train", required=True, help="training split (Parquet)")
    s.add_argument("--val", required=True, help="validation split (Parquet)")
    s.add_argument("--images", required=True, help="folder of the chips")
    s.add_argument("--out-dir", required=True, help="folder for dupnet.pt, history.csv, curves.png and resume.pt")
    s.add_argument("--workers", type=int, default=2, help="data loader processes and torch threads")

    s = command("evaluate", cmd_evaluate, "score a dup_truth file with DupNet and the baselines; write the report",
                "Expand every labelled overlap of a dup_truth file into its tile pairs, score them with "
                "DupNet and the hash and pixel baselines (thresholds chosen on the validation split, "
                "never on the truth), and write scores.parquet, metrics.json, errors.csv and report.html.", "evaluate")
    s.add_argument("--truth", default="", help="dup_truth file as given (empty: no scoring, validation figures only)")
    s.add_argument("--overlaps", default="", help="its checked overlaps (`tiledup truth`)")
    s.add_argument("--skipped", default="", help="its skipped lines (`tiledup truth`)")
    s.add_argument("--images", required=True, help="folder of the chips")
    s.add_argument("--model", required=True, help="DupNet model (dupnet.pt)")
    s.add_argument("--val", required=True, help="validation split (Parquet), for the thresholds")
    s.add_argument("--tiles", nargs="+", required=True, help="tile tables of all shards")
    s.add_argument("--rejects", required=True, help="the gathered rejects table (`tiledup rejects`)")
    s.add_argument("--layout", default="",
                   help="the demo's layout (scene kinds for errors by kind, scene and pass for group purity)")
    s.add_argument("--candidates", default="", help="discovery: the candidates table (figures against the truth)")
    s.add_argument("--verified", default="", help="discovery: verify's overlaps table")
    s.add_argument("--groups", default="", help="discovery: the groups table (figures and mosaics)")
    s.add_argument("--conflicts", default="", help="discovery: the groups rule's conflicts table")
    s.add_argument("--split", default="",
                   help="discovery: the groups rule's split (split sizes, leaked truth duplicates)")
    s.add_argument("--verdicts", default="",
                   help="a person's verdicts (dup_truth format): the truth when --truth is empty")
    s.add_argument("--truth-complete", action="store_true",
                   help="the truth labels every overlap of its images (else finds it does not list are unlabelled)")
    s.add_argument("--duplicates", default="", help="the duplicate map (`tiledup exports`), linked from the report")
    s.add_argument("--removable", default="", help="the chips safe to drop (`tiledup exports`), linked and counted")
    s.add_argument("--evidence", default="{}", help=EVIDENCE_HELP)
    s.add_argument("--out-dir", required=True, help="folder for the evaluation outputs")

    s = command("candidates", cmd_candidates, "find candidate overlaps across all shards (hash search + lattice)",
                "Search every tile's BlockMeanHash against every other chip's tiles with multi-index "
                "hashing (equal pixel digests match for certain); each tile match votes for the one "
                "overlap its grid positions imply; chips placed on one lattice by strong matches add "
                "every overlap their positions imply.", "candidates")
    s.add_argument("--tiles", nargs="+", required=True, help="every shard's tile table")
    s.add_argument("--out", required=True, help="candidates table (Parquet) to write")

    s = command("verify", cmd_verify, "score every candidate overlap with DupNet and decide it",
                "Score every tile pair of every candidate overlap with DupNet (and the BMH and pixel "
                "baselines) exactly as the evaluation scores a dup_truth file; write the decisions as a "
                "table and as a reviewable dup_truth file.", "verify")
    s.add_argument("--candidates", required=True, help="the candidates table")
    s.add_argument("--images", required=True, help="folder of the chips")
    s.add_argument("--model", required=True, help="DupNet model (dupnet.pt)")
    s.add_argument("--tiles", nargs="+", required=True, help="every shard's tile table")
    s.add_argument("--out", required=True, help="overlaps table (Parquet) to write")
    s.add_argument("--truth", required=True, help="dup_truth file of the decisions to write")
    s.add_argument("--evidence", default="{}", help=EVIDENCE_HELP)
    s.add_argument("--workers", type=int, default=2, help="processes scoring on the CPU (one on a GPU)")
    s.add_argument("--place-votes", type=int, default=None,
                   help="candidates.place_votes: only overlaps that place their chips order the work "
                        "(fewer chips decoded again; default: every overlap)")

    s = command("groups", cmd_groups, "join duplicates into groups with mosaic positions; write a leak-free split",
                "Join chips into groups on the lattice by the weight of the evidence (duplicate overlaps "
                "for a relative position, non-duplicate ones against it), give each chip its (row, col) "
                "in its group's mosaic, and split into train / val / test so that no decided-duplicate "
                "overlap (or, with split.by: place, no candidate overlap) crosses two splits.", "groups")
    s.add_argument("--overlaps", required=True, help="verify's overlaps table")
    s.add_argument("--tiles", nargs="+", required=True, help="every shard's tile table")
    s.add_argument("--out", required=True, help="groups table (Parquet) to write")
    s.add_argument("--split", required=True, help="split CSV to write (image_id, group, unit, split)")
    s.add_argument("--conflicts", required=True, help="conflicts table (Parquet) to write")
    s.add_argument("--leaks", required=True, help="JSON to write: decided-duplicate overlaps across splits (0)")
    s.add_argument("--candidates", default="", help="the candidates table (needed for split.by: place)")
    s.add_argument("--place-votes", type=int, default=None,
                   help="candidates.place_votes: tile matches that place two chips (split.by: place)")
    s.add_argument("--verdicts", default="", help=VERDICTS_HELP)

    s = command("check-split", cmd_check_split, "check an existing train/val/test split for leaking duplicates",
                "Check a split CSV (an image column such as image_id or filename, and a split column such as "
                "split or subset) against the duplicates found: every decided-duplicate overlap whose chips "
                "sit in two splits, the chips, groups and units of duplicates it cuts, and counts per pair "
                "of splits.")
    s.add_argument("split", help="the split CSV to check")
    s.add_argument("--overlaps", default="results/overlaps/overlaps.parquet",
                   help="verify's overlaps table (default: %(default)s)")
    s.add_argument("--groups", default="results/groups/groups.parquet",
                   help="the groups table (default: %(default)s)")
    s.add_argument("--verdicts", default="", help=VERDICTS_HELP)
    s.add_argument("--out", default="", help="JSON summary to write (optional)")
    s.add_argument("--csv", default="", help="CSV of every leaking overlap to write (optional)")

    s = command("exports", cmd_exports, "write the duplicate map and the chips safe to drop",
                "Write duplicates.json (every image mapped to its duplicates with tag and DupNet score, "
                "imagededup-like) and removable.txt (full-overlap duplicates of a kept chip, one id per line).")
    s.add_argument("--overlaps", required=True, help="verify's overlaps table")
    s.add_argument("--groups", required=True, help="the groups table")
    s.add_argument("--tiles", nargs="+", required=True, help="every shard's tile table (identical chips)")
    s.add_argument("--duplicates", required=True, help="duplicates.json to write")
    s.add_argument("--removable", required=True, help="removable.txt to write")
    s.add_argument("--verdicts", default="", help=VERDICTS_HELP)

    s = command("summary", cmd_summary, "print what a run found and where its outputs are (end of a run)",
                "Print the duplicates found, the groups, the split and its leak check, where the split and "
                "the report are, and the rejected images by reason; only what the run has reached.")
    for name in ("manifest", "rejects", "overlaps", "groups", "split", "conflicts", "removable", "report"):
        s.add_argument(f"--{name}", required=True, help=f"the run's {name} file (may not exist yet)")
    s.add_argument("--verdicts", default="", help=VERDICTS_HELP)
    s.add_argument("--split-check", default="", help="the split_check rule's JSON, when the run checks a user's split")
    s.add_argument("--save", default="", help="text file to keep the printed summary in (optional)")

    s = command("compare", cmd_compare, "score every overlap of two chips with DupNet (per tile pair)",
                "For two chips, print each of the 25 overlaps whose tiles are informative with DupNet's "
                "overlap score and per-tile scores, and the best one.")
    s.add_argument("image1", help="first chip (768 x 768 JPEG)")
    s.add_argument("image2", help="second chip")
    s.add_argument("--model", default="",
                   help=f"DupNet model (default: {RUN_MODEL}, a workflow's model, when it exists here, else the "
                        "DupNet packaged with tiledup)")
    s.add_argument("--configfile", default="",
                   help="the workflow's config file, for its tiles, evidence and verify settings (default: "
                        f"{WORKFLOW_CONFIG} when it exists here, else the defaults shipped with tiledup)")
    s.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the config's verify.device)")
    s.add_argument("--batch-size", type=int, help="tile pairs per DupNet batch (default: verify.batch_size)")
    s.add_argument("--threshold", type=float, help="DupNet decision threshold (default: verify.dupnet_threshold)")
    s = command("run", cmd_run, "run the whole workflow on a folder of chips (Snakemake as the engine)",
                "Find the duplicates of one folder of 768 x 768 chips: tiles, DupNet training, candidate "
                "overlaps, decisions, groups, a leak-free split, exports and the report, all into --out. "
                "Runs the repository's Snakefile with Snakemake; a re-run does only what changed. A folder "
                "holding another images folder's run is refused (see --force).")
    s.add_argument("images", help="folder of 768 x 768 JPEG chips")
    s.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    s.add_argument("--truth", default="", help="dup_truth file to evaluate against (optional)")
    s.add_argument("--cores", default="all", help="cores Snakemake may use (default: %(default)s)")
    s.add_argument("--profile", help="a Snakemake profile: a name under profiles/ (e.g. slurm) or a folder")
    s.add_argument("--configfile", action="append", default=[], metavar="FILE",
                   help="a config file layered over config/config.yaml (keys as there); repeatable; --set wins")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config key (nested with dots, YAML value), e.g. --set train.epochs=1; repeatable")
    s.add_argument("--force", action="store_true",
                   help="replace the run of another images folder in --out instead of refusing")
    s.epilog = "Anything after -- goes to Snakemake as it is: targets or options, e.g. `-- -n` for a dry run."
    return p


# Commands a person types (their console stays short); every other command is a rule's job.
PEOPLES_COMMANDS = ("run", "compare", "check-split", "summary", "show-rejects")


def resources_used(command: str) -> str:
    """CPU seconds and peak RSS of this command and its finished worker processes, exact (from the
    kernel's rusage; Snakemake's benchmark samples them every 30 s and misses short processes)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
    rss = max(me.ru_maxrss, children.ru_maxrss) / 1024  # Linux: kB
    return f"tiledup {command}: {cpu:.1f} s CPU, peak RSS {rss:.0f} MB"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `tiledup run ... -- SNAKEMAKE ARGS`: the part after -- is Snakemake's, never parsed here
    cut = argv.index("--") if argv[:1] == ["run"] and "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    args.argv, args.snakemake = argv, argv[cut + 1:]
    # PyTorch's OpenMP threads spin while they wait for each other; beside loader workers or other
    # users' jobs that spinning takes the cores the work needs (training 3-4x slower on 2 shared
    # cores, benchmarks/bench_train.py). Set before torch is imported; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with stops.stop_on_signals():
            code = args.fn(args, _options(getattr(args, "options", "{}")))
        if args.command not in PEOPLES_COMMANDS:  # a rule's job: its log ends with what it cost
            log.info("%s", resources_used(args.command))
    except TiledupError as e:
        log.error("%s", e)
        return 2
    except stops.Stopped as e:
        log.error("tiledup %s %s%s", args.command, e,
                  f"; ended its {len(e.ended)} worker process(es)" if e.ended else "")
        return 128 + e.signum
    except BrokenProcessPool:  # the kernel's OOM killer, or a person's kill -9, took a worker
        log.error("tiledup %s: a worker process ended abruptly (killed, or out of memory); the command's "
                  "outputs were not written", args.command)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())

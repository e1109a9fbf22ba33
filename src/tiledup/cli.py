"""`tiledup` command line: parses arguments and delegates; one subcommand per rule.

Config blocks arrive as one JSON string (`--options`), so a rule passes its
whole block through `params:` and the module function takes it as keywords.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys

from .errors import TiledupError

log = logging.getLogger("tiledup")


def _call(fn, block: str, opts: dict, **args):
    """fn(**args, **opts), with config keys that fn does not take named as an error (not a TypeError)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(opts) - set(params) | set(opts) & set(args))
        if unknown:
            raise TiledupError(f"unknown `{block}` config key(s): {', '.join(unknown)}")
    return fn(**args, **opts)


def _options(text: str) -> dict:
    try:
        opts = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise TiledupError(f"--options is not valid JSON: {e}") from None
    if not isinstance(opts, dict):
        raise TiledupError("--options must be a JSON object")
    return opts


def cmd_demo(a, opts):
    from .demo import generate

    _call(generate, "demo", opts, images_dir=a.images, truth_path=a.truth, layout_path=a.layout,
          workers=a.workers)


def cmd_manifest(a, opts):
    from .manifest import write_manifest

    write_manifest(images_dir=a.images, shards=a.shards, manifest_path=a.out)


def cmd_tiles(a, opts):
    from .tiles import tile_shard

    _call(tile_shard, "tiles", opts, images_dir=a.images, list_path=a.list, tiles_path=a.out,
          rejects_path=a.rejects)


def cmd_pairs(a, opts):
    from .pairs import pair_shard

    _call(pair_shard, "pairs", opts, tiles_path=a.tiles, pairs_path=a.out)


def cmd_dataset(a, opts):
    from .dataset import build_dataset

    _call(build_dataset, "sample", opts, pairs_paths=a.pairs, layout_path=a.layout or None,
          out_dir=a.out_dir)


def cmd_train(a, opts):
    from .train import train

    _call(train, "train", opts, train_path=a.train, val_path=a.val, images_dir=a.images,
          out_dir=a.out_dir, workers=a.workers)


def cmd_evaluate(a, opts):
    from .evaluate import evaluate

    discovery = {"candidates_path": a.candidates, "overlaps_path": a.overlaps, "groups_path": a.groups,
                 "conflicts_path": a.conflicts}
    given = [k for k, v in discovery.items() if v]
    if given and len(given) < len(discovery):
        raise TiledupError("evaluate: give all of --candidates, --overlaps, --groups, --conflicts or none")
    _call(evaluate, "evaluate", opts, truth_path=a.truth or None, images_dir=a.images,
          model_path=a.model, val_path=a.val, tiles_paths=a.tiles, rejects_paths=a.rejects,
          out_dir=a.out_dir, discovery_paths=discovery if given else None, layout_path=a.layout or None)


def cmd_candidates(a, opts):
    from .candidates import find_candidates

    _call(find_candidates, "candidates", opts, tiles_paths=a.tiles, out_path=a.out)


def cmd_verify(a, opts):
    from .verify import verify

    _call(verify, "verify", opts, candidates_path=a.candidates, images_dir=a.images, model_path=a.model,
          tiles_paths=a.tiles, overlaps_path=a.out, truth_path=a.truth)


def cmd_groups(a, opts):
    from .groups import groups_rule

    _call(groups_rule, "groups", opts, overlaps_path=a.overlaps, tiles_paths=a.tiles, groups_path=a.out,
          split_path=a.split, conflicts_path=a.conflicts)


def cmd_compare(a, opts):
    from .compare import run

    print(run(a.image1, a.image2, a.model, device=a.device, batch_size=a.batch_size, threshold=a.threshold))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tiledup", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, fn, help):
        s = sub.add_parser(name, help=help)
        s.set_defaults(fn=fn)
        return s

    s = command("demo", cmd_demo, "render the synthetic Airbus-like demo (chips, dup_truth, layout)")
    s.add_argument("--images", required=True, help="output folder for the JPEG chips")
    s.add_argument("--truth", required=True, help="output dup_truth file")
    s.add_argument("--layout", required=True, help="output layout Parquet")
    s.add_argument("--options", default="{}", help="the `demo` config block as JSON")
    s.add_argument("--workers", type=int, default=2, help="processes rendering scenes (output does not depend on it)")

    s = command("manifest", cmd_manifest, "list the images folder once and assign shards")
    s.add_argument("--images", required=True)
    s.add_argument("--shards", type=int, required=True)
    s.add_argument("--out", required=True, help="manifest Parquet; per-shard lists go beside it")

    s = command("tiles", cmd_tiles, "cut one shard's chips into tiles and hash them")
    s.add_argument("--images", required=True)
    s.add_argument("--list", required=True, help="the shard's image list (one id per line)")
    s.add_argument("--out", required=True)
    s.add_argument("--rejects", required=True)
    s.add_argument("--options", default="{}")

    s = command("pairs", cmd_pairs, "build one shard's self-supervised tile pairs")
    s.add_argument("--tiles", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--options", default="{}")

    s = command("dataset", cmd_dataset, "sample pairs and split them by image (or scene)")
    s.add_argument("--pairs", nargs="+", required=True)
    s.add_argument("--layout", default="")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--options", default="{}")

    s = command("train", cmd_train, "train DupNet")
    s.add_argument("--train", required=True)
    s.add_argument("--val", required=True)
    s.add_argument("--images", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--options", default="{}")

    s = command("evaluate", cmd_evaluate, "score dup_truth with DupNet and the baselines")
    s.add_argument("--truth", default="")
    s.add_argument("--images", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--val", required=True)
    s.add_argument("--tiles", nargs="+", required=True)
    s.add_argument("--rejects", nargs="+", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--options", default="{}")
    s.add_argument("--candidates", default="", help="candidates Parquet (discovery figures)")
    s.add_argument("--overlaps", default="", help="verify's overlaps Parquet (discovery figures)")
    s.add_argument("--groups", default="", help="groups Parquet (discovery figures and mosaics)")
    s.add_argument("--conflicts", default="", help="conflicts Parquet of the groups rule")
    s.add_argument("--layout", default="", help="the demo layout (group purity by scene and pass)")

    s = command("candidates", cmd_candidates, "find candidate overlaps across all shards (hash search + lattice)")
    s.add_argument("--tiles", nargs="+", required=True, help="every shard's tile table")
    s.add_argument("--out", required=True, help="output candidates Parquet")
    s.add_argument("--options", default="{}", help="the `candidates` config block as JSON")

    s = command("verify", cmd_verify, "score every candidate overlap with DupNet")
    s.add_argument("--candidates", required=True)
    s.add_argument("--images", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--tiles", nargs="+", required=True)
    s.add_argument("--out", required=True, help="output overlaps Parquet")
    s.add_argument("--truth", required=True, help="output dup_truth file of the decisions")
    s.add_argument("--options", default="{}", help="the `verify` config block as JSON")

    s = command("groups", cmd_groups, "duplicate groups with mosaic positions, conflicts and the split")
    s.add_argument("--overlaps", required=True, help="verify's overlaps Parquet")
    s.add_argument("--tiles", nargs="+", required=True, help="every shard's tile table")
    s.add_argument("--out", required=True, help="output groups Parquet")
    s.add_argument("--split", required=True, help="output split CSV")
    s.add_argument("--conflicts", required=True, help="output conflicts Parquet")
    s.add_argument("--options", default="{}", help="the `groups` config block as JSON")

    s = command("compare", cmd_compare, "score every overlap of two chips with DupNet (per tile pair)")
    s.add_argument("image1", help="first chip (768 x 768 JPEG)")
    s.add_argument("image2", help="second chip")
    s.add_argument("--model", default="results/model/dupnet.pt", help="DupNet checkpoint (default: %(default)s)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--threshold", type=float, default=0.5, help="DupNet decision threshold")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.fn(args, _options(getattr(args, "options", "{}")))
    except TiledupError as e:
        log.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

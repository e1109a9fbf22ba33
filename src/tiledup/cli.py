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

    _call(evaluate, "evaluate", opts, truth_path=a.truth or None, images_dir=a.images,
          model_path=a.model, val_path=a.val, tiles_paths=a.tiles, rejects_paths=a.rejects,
          out_dir=a.out_dir, layout_path=a.layout or None)


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
    s.add_argument("--layout", default="", help="the demo layout (scene kinds for errors by kind); optional")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--options", default="{}")
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

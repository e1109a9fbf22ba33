"""Train the DupNet shipped in the package (src/tiledup/model/weights/dupnet.pt).

    python scripts/pretrain_dupnet.py [--work DIR] [--workers 2]

Data the project may redistribute: synthetic demo scenes rendered by tiledup's own
generator (tiledup.demo), of other seeds and sizes than the default demo (seed 0
is the default demo: it is never used here). Each demo below is rendered into its
own folder and the chips are linked into one images folder; then the workflow's
own steps run on it in one process: manifest, tiles, self-supervised pairs, the
train/val/test sample, and DupNet training (tiledup.model.train) with the
`train` block of config/config.yaml, from scratch, with more pairs and epochs
than a workflow run. The best model (lowest validation loss) goes into the
package, its weights in float16, with a JSON record of how it was made (dupnet.json). docs/pretrained.md
gives the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

import torch
import yaml

from tiledup.demo import generate
from tiledup.model.train import train
from tiledup.pairs.dataset import build_dataset
from tiledup.pairs.shard import pair_shard
from tiledup.run.io import atomic_path, write_json
from tiledup.tiles.manifest import write_manifest
from tiledup.tiles.shard import tile_shard

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src/tiledup/model/weights"

# Demos of other seeds and sizes than the default (seed 0: 6 scenes of 8 x 8 tiles).
DEMOS = [
    {"seed": 101, "scenes": 6, "scene_rows": 10, "scene_cols": 10},
    {"seed": 102, "scenes": 8, "scene_rows": 8, "scene_cols": 8},
    {"seed": 103, "scenes": 5, "scene_rows": 12, "scene_cols": 12, "overcast_scenes": 0},
]
SAMPLE = {"pairs": 8000, "seed": 0}  # the rest: config/config.yaml's `sample` block
TRAIN = {"epochs": 6, "early_stop": 2}  # the rest: config/config.yaml's `train` block


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="benchmarks/out/pretrain", help="scratch folder (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="processes for rendering and data loading")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the tiledup command does (cli.main)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    work = Path(a.work)
    images = work / "images"

    if not images.exists():
        tmp = work / "images.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for demo in DEMOS:
            d = work / f"demo_{demo['seed']}"
            generate(d / "images", d / "dup_truth.txt", d / "layout.parquet",
                     **{**config["demo"], **demo}, workers=a.workers)
            for chip in (d / "images").iterdir():
                os.link(chip, tmp / chip.name)  # 9-hex random ids: a clash would raise here
        tmp.rename(images)

    write_manifest(images, 1, work / "manifest.parquet", work / "lists")
    tile_shard(images, work / "lists/000.txt", work / "tiles.parquet", work / "rejects.parquet",
               **config["tiles"])
    pair_shard(work / "tiles.parquet", work / "pairs.parquet", **config["pairs"])
    counts = build_dataset([work / "pairs.parquet"], None, work / "dataset", **{**config["sample"], **SAMPLE})
    options = {k: v for k, v in config["train"].items() if k not in ("pretrained", "min_pairs_finetune")}
    best = train(work / "dataset/train.parquet", work / "dataset/val.parquet", images, work / "model",
                 workers=a.workers, **{**options, **TRAIN, "pretrained": "none"})

    WEIGHTS.mkdir(parents=True, exist_ok=True)
    # float16 halves the file (0.6 MB); loading casts back to float32 (load_state_dict copies)
    state = torch.load(work / "model/dupnet.pt", weights_only=True)
    state["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    with atomic_path(WEIGHTS / "dupnet.pt") as tmp:
        torch.save(state, tmp)
    write_json({"command": "python scripts/pretrain_dupnet.py", "demos": DEMOS,
                "chips": len(list(images.iterdir())), "sample": {**config["sample"], **SAMPLE},
                "pairs": {s: counts[s] for s in ("train", "val", "test")},
                "train": {**options, **TRAIN}, "best_epoch": best},
               WEIGHTS / "dupnet.json")


if __name__ == "__main__":
    main()

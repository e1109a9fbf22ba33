"""The split's draw over many seeds: true-duplicate leaks and how far val and test land from their shares.

    .venv/bin/python benchmarks/bench_split.py RESULTS [RESULTS ...] [--seeds 100] [--before REF] [--variants]

RESULTS: a finished workflow's results folder on a demo (it needs truth/overlaps.parquet). Its split
units (split.csv) stay as the run made them; only the draw of units into train / val / test is
repeated, with seeds 0 .. --seeds - 1 and the configured groups.fractions. One seed's leaks say
little (0 to 39 on one 345-chip demo), hence the many. --before REF draws with tiledup.pairs.dataset's
assign_splits at that commit as well (`git show REF:src/tiledup/pairs/dataset.py`), the same units;
--variants two rules not adopted: the large units alone to train first (no contentless units), and
every unit holding a contentless chip to train first.
Per run and code: true-duplicate overlaps across splits (mean, median, largest over the seeds) and
the largest distance of val's or test's share of the chips from its fraction (mean, largest).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from tiledup.discovery.groups import split_units
from tiledup.pairs.dataset import SPLITS
from tiledup.run.config import defaults
from tiledup.tiles.table import read_tile_hashes


def module_at(ref: str, tmp: Path):
    """tiledup/pairs/dataset.py as it was at commit `ref`."""
    path = tmp / "dataset_before.py"
    path.write_text(subprocess.run(["git", "show", f"{ref}:src/tiledup/pairs/dataset.py"], check=True,
                                   capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location("dataset_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(draw, units: np.ndarray, a: np.ndarray, b: np.ndarray, fractions: dict, seeds: int) -> dict:
    leaks, off = [], []
    for seed in range(seeds):
        split = draw(seed)
        leaks.append(int((split[a] != split[b]).sum()))
        off.append(max(abs((split == s).mean() - fractions[s]) for s in SPLITS if s != "train"))
    return {"leaks mean": round(float(np.mean(leaks)), 1), "median": float(np.median(leaks)),
            "largest": max(leaks), "share off: mean": round(float(np.mean(off)), 3),
            "largest off": round(max(off), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results folders of finished demo runs")
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--before", default="", help="git commit whose assign_splits draws too")
    ap.add_argument("--variants", action="store_true", help="two rules not adopted draw too")
    a = ap.parse_args()
    fractions = defaults()["groups"]["fractions"]
    with tempfile.TemporaryDirectory() as tmp:
        before = module_at(a.before, Path(tmp)) if a.before else None
        rows = []
        for results in map(Path, a.results):
            table = pd.read_csv(results / "groups/split.csv")
            truth = pd.read_parquet(results / "truth/overlaps.parquet", columns=["img1", "img2", "is_dup"])
            truth = truth[truth.is_dup]
            index = {name: k for k, name in enumerate(table.image_id)}
            a1, a2 = truth.img1.map(index).to_numpy(), truth.img2.map(index).to_numpy()
            h = read_tile_hashes(sorted((results / "tiles").glob("*.parquet")))
            contentless = pd.Series(h.contentless(), index=h.image_ids).loc[table.image_id].to_numpy()
            units = table.unit.to_numpy()
            sizes = np.bincount(units)
            name = f"{results.parent.name}/{results.name}" if results.name == "results" else results.name
            codes = {"now": lambda s: np.asarray(split_units(units, fractions, s, contentless))}
            if before:
                codes[f"before ({a.before})"] = lambda s: np.array(SPLITS)[
                    before.assign_splits(sizes, fractions, np.random.default_rng(s), "unit")[units]]
            if a.variants:
                holds = (np.bincount(units, weights=contentless, minlength=len(sizes)) > 0)[units]
                codes["large units only"] = lambda s: np.asarray(split_units(units, fractions, s))
                # every chip of a unit that holds one counts as contentless: the whole unit goes to train
                codes["any contentless chip"] = lambda s: np.asarray(split_units(units, fractions, s, holds))
            for code, draw in codes.items():
                rows.append({"run": name, "chips": len(table), "true-dup overlaps": len(truth), "code": code,
                             "largest unit": int(sizes.max()), "contentless chips": int(contentless.sum()),
                             **measure(draw, units, a1, a2, fractions, a.seeds)})
        print(f"{a.seeds} seeds, fractions {fractions}")
        print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    sys.exit(main())

"""Candidate search on a finished demo's tile tables: candidates, recall of the truth's duplicates, time.

For choosing the candidate search on development demos (seeds 1, 2, larger
demo.chips), never the default demo. Reads RESULTS/tiles/*.parquet and
RESULTS/demo/dup_truth.txt of a run that got as far as `snakemake tiles`, runs
tiledup.discovery.candidates.candidates with the config's `candidates` block
(or --options JSON on top of it) and prints one JSON line:

- candidates, by hash and implied, and against the truth: duplicates, overlaps of
  another pass (not duplicates, the same place), not in the truth (misplaced);
  seconds; peak RSS of this process;
- recall of the truth's duplicates, and of the "content" duplicates (at least
  one tile pair with content on both sides, as the tile tables' solid flag says:
  close to the evaluation's decidable ones, which need the pixel test of the
  evidence rule too), with and without the implied overlaps; and of the content
  duplicates with real texture (a tile pair whose sides both have a grey std of
  at least FLAT_STD) and of the near-flat rest;
- per hash search: tables, collisions, skipped buckets, pairs deferred to a
  later table, matches; common tiles (over max_matches);
- --brute: the structured search's tile pairs against a brute-force
  comparison of the same hashes (every pair within the radius): how many the
  crowded buckets still hide (feasible up to some 30,000 tiles).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_candidate_recall.py RESULTS [--brute] [--missed] [--options JSON]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]


# A reading aid, not a setting: a duplicate is "near-flat" when each of its tile pairs with content
# on both sides has a side whose grey std is below this (faint dark sea: the misses, looked at).
FLAT_STD = 8.0


def content_duplicates(truth: pd.DataFrame, h, grey_std: dict) -> tuple[np.ndarray, np.ndarray]:
    """(lines,) bool twice: the duplicate has a tile pair with content (not solid) on both sides; and
    one whose less textured side has a grey std of at least FLAT_STD (grey_std: (image, tile) -> std)."""
    from tiledup.grid import tag_tile_pairs

    index = {name: k for k, name in enumerate(h.image_ids)}
    solid = np.ones((len(h.image_ids), 9), bool)
    solid[h.image, h.tile] = h.solid
    content, textured = np.zeros(len(truth), bool), np.zeros(len(truth), bool)
    for k, (a, b, tag) in enumerate(zip(truth.img1, truth.img2, truth.tag)):
        sa, sb = solid[index[a]], solid[index[b]]
        pairs = [(t, u) for t, u in tag_tile_pairs(tag) if not sa[t] and not sb[u]]
        content[k] = bool(pairs)
        textured[k] = any(min(grey_std[(a, t)], grey_std[(b, u)]) >= FLAT_STD for t, u in pairs)
    return content, textured


def brute_force_missed(codes: np.ndarray, group: np.ndarray, radius: int, found: set) -> dict:
    """Pairs within the radius (other groups) that the search did not report."""
    from tiledup.discovery.hash_search import as_words

    words = as_words(codes)
    block = max(16, 4_000_000 // max(len(words), 1))  # rows x all rows x 4 words: about 128 MB
    within = missed = 0
    for s in range(0, len(words), block):
        d = np.bitwise_count(words[s:s + block, None, :] ^ words[None, :, :]).sum(axis=2)
        i, j = np.nonzero(d <= radius)
        i += s
        keep = (i < j) & (group[i] != group[j])
        within += int(keep.sum())
        missed += sum((a, b) not in found for a, b in zip(i[keep].tolist(), j[keep].tolist()))
    return {"pairs_within_radius": within, "not_reported": missed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--options", default="{}", help="JSON: candidates options over the config's")
    ap.add_argument("--brute", action="store_true")
    ap.add_argument("--missed", action="store_true", help="also list the missed content duplicates (stderr)")
    a = ap.parse_args()
    from tiledup.discovery import candidates as cand  # PYTHONPATH picks the version measured
    from tiledup.discovery.hash_search import near_pairs

    options = {**yaml.safe_load((REPO / "config/config.yaml").read_text())["candidates"], **json.loads(a.options)}
    h = cand.read_tile_hashes(sorted((a.results / "tiles").glob("*.parquet")))
    truth = pd.read_csv(a.results / "demo/dup_truth.txt", sep=" ", names=["img1", "img2", "tag", "is_dup"], dtype=str)
    dups = truth[truth.is_dup == "1"].reset_index(drop=True)
    std = pq.read_table(sorted((a.results / "tiles").glob("*.parquet")), columns=["image_id", "tile", "grey_std"])
    grey_std = dict(zip(zip(std["image_id"].to_pylist(), std["tile"].to_pylist()), std["grey_std"].to_pylist()))
    content, textured = content_duplicates(dups, h, grey_std)

    start = time.perf_counter()
    found, stats = cand.candidates(h, **options)
    seconds = time.perf_counter() - start
    table = cand.candidates_table(found, h.image_ids).to_pandas()
    keys = set(zip(table.img1, table.img2, table.tag))
    by_hash = set(zip(*(table[table.how == "hash"][c] for c in ("img1", "img2", "tag"))))
    want = list(zip(dups.img1, dups.img2, dups.tag))
    same_time = set(want)
    same_place = set(zip(truth.img1, truth.img2, truth.tag))
    hit = np.array([k in keys for k in want])
    hit_hash = np.array([k in by_hash for k in want])
    out = {
        "results": str(a.results), "chips": len(h.image_ids), "tiles": len(h.image),
        "truth_dups": len(want), "content_dups": int(content.sum()),
        "candidates": len(table), "by_hash": len(by_hash), "implied": len(table) - len(by_hash),
        # a candidate the truth lists as not duplicate is still the same place (another pass);
        # one it does not list at all is a wrong placement
        "candidates_dup": len(keys & same_time), "candidates_other_pass": len(keys & (same_place - same_time)),
        "candidates_not_in_truth": len(keys - same_place),
        "recall": round(float(hit.mean()), 5), "recall_content": round(float(hit[content].mean()), 5),
        "recall_content_hash_only": round(float(hit_hash[content].mean()), 5),
        "missed_content": int((~hit[content]).sum()),
        # the same recall for content duplicates with real texture, and for the near-flat rest
        "recall_textured": round(float(hit[textured].mean()), 5), "textured_dups": int(textured.sum()),
        "recall_near_flat": round(float(hit[content & ~textured].mean()), 5),
        "near_flat_dups": int((content & ~textured).sum()),
        "seconds": round(seconds, 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **{k: stats[k] for k in ("near_identical", "structured", "common_tiles", "tile_matches", "placement")},
    }
    if a.missed:
        for k in np.flatnonzero(~hit & content):
            print(*want[k], file=sys.stderr)
    if a.brute:
        cx = cand.complexity(h.bmh)
        words = h.bmh.view(np.uint64)
        _, inverse, counts = np.unique(words, axis=0, return_inverse=True, return_counts=True)
        rows = np.flatnonzero((cx >= options["min_complexity"]) & ~(counts[inverse.ravel()] > options["repeat_cap"]))
        m = near_pairs(h.bmh[rows], options["radius"], options["bucket_cap"], group=h.image[rows])
        out["brute_structured"] = brute_force_missed(h.bmh[rows], h.image[rows], options["radius"],
                                                     set(zip(m.i.tolist(), m.j.tolist())))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

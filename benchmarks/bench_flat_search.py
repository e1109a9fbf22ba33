"""The near-flat search's cost at scale: time and peak memory of flat_matches on N signatures.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_flat_search.py [--tiles 10000 30000 60000]

Random int8 signatures (unrelated tiles, correlation about 0) with every 10th one
given a noisy copy in another image (a duplicate), the config's flat_corr and
flat_max_matches. Prints, per N, seconds, peak RSS of the process so far, and the
planted copies found. The search is quadratic in N: a 20,000-chip demo has some
60,000 near-flat tiles (a third of its tiles), Airbus some 580,000.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from tiledup.discovery.flat_search import flat_matches
from tiledup.run.config import defaults


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiles", type=int, nargs="+", default=[10000, 30000, 60000])
    a = p.parse_args()
    cfg = defaults()["candidates"]
    for n in a.tiles:
        rng = np.random.default_rng(n)
        sigs = rng.integers(-60, 61, (n, 1024)).astype(np.int8)
        planted = np.arange(0, n - 1, 10)
        sigs[planted + 1] = np.clip(sigs[planted] + rng.integers(-25, 26, (len(planted), 1024)), -127, 127)
        image = np.arange(n)
        start = time.perf_counter()
        i, j, _ = flat_matches(sigs, image, cfg["flat_corr"], cfg["flat_max_matches"])
        seconds = time.perf_counter() - start
        found = len(set(zip(i.tolist(), j.tolist())) & set(zip(planted.tolist(), (planted + 1).tolist())))
        print(json.dumps({"tiles": n, "seconds": round(seconds, 1), "planted": len(planted), "found": found,
                          "matches": int(len(i)),
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}), flush=True)


if __name__ == "__main__":
    main()

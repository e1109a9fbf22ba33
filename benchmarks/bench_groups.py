"""Groups on synthetic passes: time, groups and groups that mix two passes (the grouping rule's check).

    .venv/bin/python benchmarks/bench_groups.py [--scenes 20] [--miss 0.05] [--false-dup 0.01]
        [--groups-module PATH]

Each scene of 12 x 12 tile positions is seen at 3 passes; 60 % of the chip positions of each pass are
kept. Every pair of chips of one scene within 2 tiles overlaps: same pass = duplicate, except a share
`--miss` decided not duplicate (verify's misses); another pass = not duplicate, except a share
`--false-dup` decided duplicate (DupNet's false duplicates). Weight = informative tile pairs of the
tag. Prints the decided overlaps, the time of build_groups, the groups (a scene seen at 3 passes
ideally gives 3) and how many groups hold chips of two passes (should be 0). `--groups-module` runs
another groups.py, e.g. an earlier version (`git show REV:src/tiledup/discovery/groups.py > old.py`).
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import pandas as pd

from tiledup.grid import offset_tag


def synthetic(scenes: int, miss: float, false_dup: float, seed: int = 0, side: int = 12, passes: int = 3,
              keep: float = 0.6):
    rng = np.random.default_rng(seed)
    pos = np.array([(s, p, r, c) for s in range(scenes) for p in range(passes) for r in range(side)
                    for c in range(side) if rng.random() < keep])
    names = np.array([f"{s:05d}-{p}-{r:02d}-{c:02d}" for s, p, r, c in pos], dtype=object)
    rows = []
    for s in range(scenes):
        ks = np.flatnonzero(pos[:, 0] == s)
        for i, a in enumerate(ks):
            d = pos[ks[i + 1:], 2:] - pos[a, 2:]
            for j in np.flatnonzero(np.abs(d).max(1) <= 2):
                b, (dr, dc) = ks[i + 1 + j], d[j]
                same = pos[a, 1] == pos[b, 1]
                dup = rng.random() > miss if same else rng.random() < false_dup
                rows.append((names[a], names[b], offset_tag(int(dr), int(dc)), 0.9 if dup else 0.1, dup,
                             (3 - abs(dr)) * (3 - abs(dc))))
    overlaps = pd.DataFrame(rows, columns=["img1", "img2", "tag", "score", "is_dup", "n_informative"])
    return names, pos, overlaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--miss", type=float, default=0.05)
    ap.add_argument("--false-dup", type=float, default=0.01)
    ap.add_argument("--groups-module", default="")
    a = ap.parse_args()
    if a.groups_module:
        spec = importlib.util.spec_from_file_location("groups_under_test", a.groups_module)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        build_groups = module.build_groups
    else:
        from tiledup.discovery.groups import build_groups
    names, pos, overlaps = synthetic(a.scenes, a.miss, a.false_dup)
    start = time.perf_counter()
    groups, conflicts = build_groups(names, [], overlaps)
    seconds = time.perf_counter() - start
    g = groups.set_index("image_id").loc[names].group.to_numpy()
    passes = pd.Series(pos[:, 0] * 1000 + pos[:, 1]).groupby(g).nunique()
    print(f"{len(names):,} chips, {len(overlaps):,} decided overlaps ({int(overlaps.is_dup.sum()):,} duplicates): "
          f"build_groups {seconds:.1f} s; {groups.group.nunique()} groups for {a.scenes * 3} passes, "
          f"{int((passes > 1).sum())} mixing two passes; {len(conflicts):,} conflicts")


if __name__ == "__main__":
    main()

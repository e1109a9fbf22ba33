"""Are two workflow runs the same? Compares two results/ folders (e.g. before and after a refactoring).

    python scripts/compare_runs.py RESULTS_A RESULTS_B

Byte-identical: overlaps/overlaps.parquet, groups/groups.parquet, groups/split.csv.
Equal: eval/metrics.json once timing and version keys are dropped (IGNORED).
Exit status 0 when all of these agree, 1 otherwise; a few more outputs are
compared too and reported, without changing the exit status.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
from pathlib import Path

IDENTICAL = ("overlaps/overlaps.parquet", "groups/groups.parquet", "groups/split.csv")
ALSO = ("overlaps/candidates.parquet", "overlaps/dup_truth.txt", "groups/conflicts.parquet",
        "dataset/train.parquet", "dataset/val.parquet", "dataset/test.parquet",
        "eval/scores.parquet", "eval/errors.csv")
METRICS = "eval/metrics.json"
IGNORED = {"seconds", "elapsed", "duration", "version", "tiledup_version", "timings"}  # keys, at any depth


def without_ignored(value):
    if isinstance(value, dict):
        return {k: without_ignored(v) for k, v in value.items()
                if k not in IGNORED and not k.endswith("_seconds")}
    if isinstance(value, list):
        return [without_ignored(v) for v in value]
    return value


def first_difference(a, b, path="") -> str | None:
    """Where two JSON values first differ (key path), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}{key} (only in {'B' if key not in a else 'A'})"
            found = first_difference(a[key], b[key], f"{path}{key}.")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{path}[{i}]."))),
                    None)
    return None if a == b else f"{path.rstrip('.')}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"


def same_file(a: Path, b: Path) -> str:
    if not a.is_file() or not b.is_file():
        return "missing in " + ", ".join(str(p) for p in (a, b) if not p.is_file())
    return "identical" if filecmp.cmp(a, b, shallow=False) else "DIFFERENT"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="first results folder")
    p.add_argument("b", type=Path, help="second results folder")
    args = p.parse_args(argv)
    ok = True
    for name in IDENTICAL:
        verdict = same_file(args.a / name, args.b / name)
        ok &= verdict == "identical"
        print(f"{name}: {verdict}")
    ma, mb = (args.a / METRICS, args.b / METRICS)
    if ma.is_file() and mb.is_file():
        diff = first_difference(*(without_ignored(json.loads(m.read_text())) for m in (ma, mb)))
        print(f"{METRICS} (timing and version keys dropped): " + ("equal" if diff is None else f"DIFFERENT at {diff}"))
        ok &= diff is None
    else:
        print(f"{METRICS}: {same_file(ma, mb)}")
        ok = False
    for name in ALSO:
        print(f"also {name}: {same_file(args.a / name, args.b / name)}")
    print("same run" if ok else "the runs differ")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Errors by kind of overlap: the scene kind from the demo layout, and same time or not.

The demo layout's `kind` column names each scene's kind (dark sea or bright
water, with or without a coast, overcast). An overlap takes the kind of its
chips' scene ("mixed" if they come from two scenes, which the demo's truth
never does). Within a kind, the errors split by the truth: false duplicates
are overlaps of two times, false non-duplicates overlaps of one time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tiledup.run.io import read_table


def read_kinds(layout_path) -> dict[str, str]:
    """image_id -> scene kind, from the demo layout."""
    layout = read_table(layout_path, ["image_id", "kind"], "layout").to_pandas()
    return dict(zip(layout.image_id, layout.kind))


def overlap_kinds(scored: pd.DataFrame, kinds: dict[str, str]) -> np.ndarray:
    """Kind per overlap row of `scored` (img1, img2); "unknown" for an image the layout lacks."""
    k1 = scored.img1.map(kinds).fillna("unknown").to_numpy(object)
    k2 = scored.img2.map(kinds).fillna("unknown").to_numpy(object)
    return np.where(k1 == k2, k1, "mixed")


def kind_breakdown(scored: pd.DataFrame, kinds: dict[str, str], thresholds: dict) -> dict:
    """metrics.json `by_kind`: per kind, overlap counts and per method accuracy and both kinds of error."""
    kind = overlap_kinds(scored, kinds)
    out = {}
    for name in sorted(set(kind)):
        rows = scored[kind == name]
        decided = rows[rows.decidable]
        y = decided.is_dup.to_numpy(bool)
        entry = {"n_overlaps": int(len(rows)), "n_decidable": int(len(decided)),
                 "n_same_time": int(y.sum()), "n_other_time": int((~y).sum()),
                 "n_undecidable": int((~rows.decidable).sum()), "methods": {}}
        for m, thr in thresholds.items():
            pred = decided[m].to_numpy(float) >= thr
            fp, fn = int((pred & ~y).sum()), int((~pred & y).sum())
            entry["methods"][m] = {"accuracy": float((pred == y).mean()) if len(y) else None,
                                   "false_dup": fp, "false_nondup": fn, "errors": fp + fn}
        out[name] = entry
    return out

"""Discovery against a truth file: how much of the truth the candidates, verify's decisions and the groups get.

- Candidate recall: the share of the truth's decidable duplicate overlaps
  (decidable by tiledup.scoring.overlaps' evidence rule, as in the evaluation) that are
  candidates; also without the implied ones (how == "hash"), to show what the
  lattice step adds.
- Decisions: precision and recall of verify's is_dup over all overlaps. A
  truth duplicate that never became a candidate is a miss; a found duplicate
  that the truth lists as not duplicate is a false duplicate. A truth counts as
  partial unless marked complete (config `truth_complete`; the demo's own truth
  is complete): with a partial truth a found duplicate it does not list is
  "unlabelled", counted apart and never as false; with a complete one it is a
  false duplicate.
- Groups: a group is impure when it holds chips of two different passes (the
  demo layout's scene and pass); without a layout, when the truth labels not
  duplicate an overlap at exactly the relative position the group gives its two
  chips (a truth line about another offset of the same pair says nothing about
  the group). Without a layout purity is judged only on the groups whose placed
  overlaps the truth labels at all ("judged"). An impure group is "explained by
  DupNet" when a duplicate decision inside it joins two of its passes and the
  truth says that decision is wrong.
- Split: the truth duplicates whose two chips split.csv puts in two splits
  ("leaked"), as a share of the truth duplicates between chips of the split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tiledup.grid import tag_offset
from tiledup.run.io import read_table

LISTED = 20  # impure groups listed in metrics.json


def _keys(df: pd.DataFrame) -> pd.Series:
    return df.img1.astype(str) + " " + df.img2.astype(str) + " " + df.tag.astype(str)


def candidate_recall(truth: pd.DataFrame, candidates: pd.DataFrame) -> dict:
    """truth: img1, img2, tag, is_dup, decidable; candidates: img1, img2, tag, how."""
    want = truth[truth.is_dup.astype(bool) & truth.decidable.astype(bool)]
    keys = _keys(want)
    found = set(_keys(candidates))
    by_hash = set(_keys(candidates[candidates.how == "hash"]))
    hit, hit_hash = keys.isin(found), keys.isin(by_hash)
    missed = want[~hit.to_numpy()]
    return {
        "n_candidates": int(len(candidates)),
        "n_by_hash": int(len(by_hash)),
        "n_implied": int(len(candidates) - len(by_hash)),
        "n_truth_dups_decidable": int(len(want)),
        "recall": float(hit.mean()) if len(want) else None,
        "recall_without_implied": float(hit_hash.mean()) if len(want) else None,
        "missed": missed[["img1", "img2", "tag"]].to_dict("records"),
    }


def decisions(truth: pd.DataFrame, overlaps: pd.DataFrame, complete: bool = True) -> dict:
    """Precision and recall of verify's duplicates against the truth's duplicates (decidable ones).

    complete: the truth labels every overlap of its images, so a found duplicate it does not list is
    false; otherwise it is unlabelled (counted apart, in neither precision nor recall).
    """
    t = truth[truth.decidable.astype(bool)]
    true_dup = set(_keys(t[t.is_dup.astype(bool)]))
    labelled = set(_keys(truth))
    found = overlaps[overlaps.is_dup.fillna(False).astype(bool)]
    found_keys = _keys(found)
    tp = int(found_keys.isin(true_dup).sum())
    unlisted = int((~found_keys.isin(labelled)).sum())
    judged = len(found) if complete else len(found) - unlisted
    fp = judged - tp
    fn = len(true_dup) - tp
    return {"n_overlaps": int(len(overlaps)), "n_found_dups": int(len(found)),
            "n_undecidable": int(overlaps.is_dup.isna().sum()), "truth_complete": bool(complete),
            "tp": tp, "fp": fp, "fn": fn, "fp_not_in_truth": unlisted if complete else 0,
            "n_unlabelled_found_dups": 0 if complete else unlisted,
            "precision": tp / judged if judged else None,
            "recall": tp / len(true_dup) if true_dup else None}


def _placed(df: pd.DataFrame, groups: pd.DataFrame) -> np.ndarray:
    """Overlaps (img1, img2, tag) whose chips one group places at exactly the tag's relative position."""
    at = groups.set_index("image_id")[["group", "row", "col"]]
    g1, g2 = at.reindex(df.img1), at.reindex(df.img2)
    off = np.array([tag_offset(t) for t in df.tag], np.int64).reshape(-1, 2)
    return ((g1.group.to_numpy() == g2.group.to_numpy())
            & (g2.row.to_numpy() - g1.row.to_numpy() == off[:, 0])
            & (g2.col.to_numpy() - g1.col.to_numpy() == off[:, 1]))


def purity(groups: pd.DataFrame, overlaps: pd.DataFrame, truth: pd.DataFrame, layout: pd.DataFrame | None,
           complete: bool = True) -> dict:
    """Impure groups (two passes, or a truth non-duplicate at the group's positions) and whether DupNet's
    errors explain them."""
    multi = groups[groups.n_images > 1]
    group_of = dict(zip(groups.image_id, groups.group))
    dups = overlaps[overlaps.is_dup.fillna(False).astype(bool)]
    # masks as bool arrays: an empty list would select columns, not rows (no duplicate found)
    inside = dups[np.array([group_of.get(a) == group_of.get(b) for a, b in zip(dups.img1, dups.img2)], bool)]
    wrong = set(_keys(truth[~truth.is_dup.astype(bool)]))
    listed = set(_keys(truth))
    if layout is not None:
        unit = dict(zip(layout.image_id, zip(layout.scene, layout["pass"])))
        units = multi.assign(unit=[unit.get(i) for i in multi.image_id]).groupby("group").unit.agg(
            lambda u: sorted(set(u)))
        impure = units[np.array([len(u) > 1 for u in units], bool)]
        # a false duplicate joining two passes of a group explains its impurity
        joins = inside[np.array([unit.get(a) != unit.get(b) for a, b in zip(inside.img1, inside.img2)], bool)]
        detail = {int(g): [f"scene {s} pass {p}" for s, p in us] for g, us in impure.items()}
        rule = "chips of two or more passes (demo layout)"
        judged = int(multi.group.nunique())
    else:
        known = truth[truth.img1.isin(group_of) & truth.img2.isin(group_of)]
        placed = known[_placed(known, groups)].assign(group=lambda d: d.img1.map(group_of))
        bad = placed[~placed.is_dup.astype(bool)]
        impure = bad.groupby("group").size()
        joins = inside
        detail = {int(g): [f"{n} truth non-duplicate overlap(s) at the group's positions"] for g, n in impure.items()}
        rule = "a truth non-duplicate overlap at exactly the positions the group gives its two chips"
        judged = int(placed.group.nunique())
    joins = joins.assign(group=[group_of[a] for a in joins.img1])
    keys = _keys(joins)
    false_join = joins[np.asarray(keys.isin(wrong) | (complete & ~keys.isin(listed)), bool)]
    explained = {int(g) for g in false_join.group} & set(detail)
    return {"rule": rule, "n_groups": int(groups.group.nunique()), "n_multi_image_groups": int(multi.group.nunique()),
            "n_judged": judged, "n_impure": len(detail), "n_impure_explained_by_dupnet_errors": len(explained),
            "impure_images": int(groups[groups.group.isin(list(detail))].shape[0]),
            "impure_groups": [{"group": g, "units": detail[g], "explained": g in explained}
                              for g in sorted(detail)[:LISTED]]}


def split_leaks(truth: pd.DataFrame, split: pd.DataFrame) -> dict:
    """Truth duplicates whose chips split.csv puts in two splits (every truth duplicate, decidable or not)."""
    where = dict(zip(split.image_id, split.split))
    dup = truth[truth.is_dup.astype(bool)]
    s1, s2 = dup.img1.map(where), dup.img2.map(where)
    both = s1.notna() & s2.notna()
    leaked = dup[both & (s1 != s2)]
    n = int(both.sum())
    return {"truth_duplicate_overlaps": n, "leaked": int(len(leaked)),
            "leaked_share": len(leaked) / n if n else None,
            "leaked_overlaps": leaked[["img1", "img2", "tag"]].head(LISTED).to_dict("records")}


def discovery_metrics(truth: pd.DataFrame | None, candidates_path, overlaps_path, groups_path, conflicts_path,
                      layout_path=None, split_path=None, *, truth_complete: bool) -> dict:
    """Discovery figures for metrics.json; counts (and the split's decided-duplicate leaks) only when there is
    no truth."""
    candidates = read_table(candidates_path, ["img1", "img2", "tag", "how"], "candidates table").to_pandas()
    overlaps = read_table(overlaps_path, ["img1", "img2", "tag", "is_dup"], "overlaps table").to_pandas()
    groups = read_table(groups_path, ["image_id", "group", "row", "col", "n_images"], "groups table").to_pandas()
    conflicts = read_table(conflicts_path, ["kind"], "conflicts table").to_pandas()
    sizes = groups.drop_duplicates("group").n_images.to_numpy()
    out = {
        "counts": {
            "candidates": int(len(candidates)),
            "candidates_by_hash": int((candidates.how == "hash").sum()),
            "candidates_implied": int((candidates.how == "implied").sum()),
            "found_dups": int(overlaps.is_dup.fillna(False).astype(bool).sum()),
            "undecidable": int(overlaps.is_dup.isna().sum()),
            "groups": int(len(sizes)), "multi_image_groups": int((sizes > 1).sum()),
            "largest_group": int(sizes.max()) if len(sizes) else 0,
            "conflicts": int(len(conflicts)),
            "conflicts_by_kind": {k: int(v) for k, v in conflicts.kind.value_counts().items()},
        },
    }
    split = None
    if split_path:
        split = pd.read_csv(split_path, dtype={"image_id": str, "split": str})
        found = overlaps[overlaps.is_dup.fillna(False).astype(bool)]
        out["split"] = {"decided_duplicate_overlaps": int(len(found)),
                        "leaked_decided_duplicates": split_leaks(found.assign(is_dup=True), split)["leaked"]}
    if truth is not None and len(truth):
        layout = read_table(layout_path, ["image_id", "scene", "pass"], "layout").to_pandas() if layout_path else None
        out["truth_complete"] = bool(truth_complete)
        out["candidates"] = candidate_recall(truth, candidates)
        out["decisions"] = decisions(truth, overlaps, truth_complete)
        # the layout's passes judge purity only when the truth is complete (the demo's own)
        out["groups"] = purity(groups, overlaps, truth, layout, truth_complete)
        if split is not None:
            out["split"]["truth"] = split_leaks(truth, split)
    return out


def truth_decidable(scored: pd.DataFrame) -> pd.DataFrame:
    """The evaluation's scored truth (img1, img2, tag, is_dup, decidable) for the figures above."""
    return scored[["img1", "img2", "tag", "is_dup", "decidable"]].assign(
        is_dup=lambda d: d.is_dup.astype(bool), decidable=lambda d: np.asarray(d.decidable, bool))

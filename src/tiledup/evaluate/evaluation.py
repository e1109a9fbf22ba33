"""Evaluation: dup_truth overlaps scored by DupNet and the image-metric baselines.

Each labelled overlap is expanded to its tile pairs, scored and reduced to one
score by tiledup.scoring.overlaps (the same code scores discovery's candidates): the
minimum over its informative tile pairs; an overlap with none is "undecidable"
(counted and listed, never guessed).

Thresholds never see the truth labels: every baseline's threshold (and
DupNet's, if `dupnet_threshold: val`) maximises Youden's J on tile pairs of the
validation split (tile i vs tile i = duplicate, i vs j = not). Youden's J
rather than accuracy because it does not depend on the split's class balance,
which differs from the truth file's. The two sides of a validation pair i == i
would be identical pixels, which makes every baseline perfect; so every
validation pair gets the training augmentation (tiledup.model.augment.augment_pair:
JPEG re-encode, HLS shift, radiometric offset, on duplicates and non-duplicates
alike), seeded per row and draw (its own seed, `evaluate.val_seed`), like
training's validation; each row is drawn `val_repeats` times. As in training, a
share of the non-duplicates becomes "same place, another time"
(tiledup.model.another_time, `evaluate.val_another_time`), label-free stand-ins for
the truth file's hard negatives. The combined baseline (tiledup.scoring.tree, a
decision tree over every baseline's tile-pair scores) is fitted on these same
validation pairs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from tiledup.scoring import tree as combined
from tiledup.model.another_time import check_another_time
from tiledup.model.augment import check_augment
from tiledup.evaluate.discovery_figures import discovery_metrics, truth_decidable
from tiledup.run.errors import TiledupError
from tiledup.evaluate.by_kind import kind_breakdown, read_kinds
from tiledup.run.io import read_parquets, read_table, write_json, write_parquet
from tiledup.model.loader import training_pair
from tiledup.model.train import CHOICE
from tiledup.scoring.overlaps import (METHODS, TILE_COLUMNS, ChipCache, PairScorer, check_evidence, score_overlaps,
                       tile_hashes, tile_lookup)
from tiledup.run.progress import Progress
from tiledup.tiles.rejects import read_summary
from tiledup.dup_truth import COLUMNS as TRUTH_COLUMNS, read_checked, read_truth

log = logging.getLogger(__name__)

TOP = 100  # precision among the TOP highest-scoring overlaps (ties in truth-file order)
MISSED_SCHEMA = pa.schema([("img1", pa.string()), ("img2", pa.string()), ("tag", pa.string())])
NO_TRUTH = ("no truth given: config key `truth` is empty and the images are not the built-in "
            "demo, so there are no labelled overlaps to score; only validation-split figures "
            "are shown")


# ---------------------------------------------------------------- validation split

def score_val_pairs(val: pd.DataFrame, cache: ChipCache, model, batch_size: int, seed: int,
                    augment: dict, retime: dict, repeats: int = 1) -> pd.DataFrame:
    """Score validation tile pairs as training sees them (seeded per row and draw); is_dup + methods."""
    progress = Progress("validation tile pairs", len(val) * repeats, "tile pairs", log=log)
    scorer = PairScorer(model, batch_size, progress)
    order = val.sort_values(["image_id", "tile1", "tile2"])
    cache.expect(order.image_id)
    labels = []
    for row, image_id, t1, t2, dup in zip(order.index, order.image_id, order.tile1, order.tile2, order.is_dup):
        tiles = cache.tiles(image_id)
        for draw in range(repeats):
            rng = np.random.default_rng([seed, int(row), draw])
            a, b = training_pair(tiles[t1], tiles[t2], bool(dup), rng, augment, retime)
            scorer.add(a, b, tile_hashes(a), tile_hashes(b))
            labels.append(bool(dup))
    scores = scorer.result()
    progress.done()
    return pd.concat([pd.DataFrame({"is_dup": labels}), scores], axis=1)


def validation_scores(val_path, accepted, cache, model, batch_size, val_pairs, val_seed, val_augment,
                      val_another_time, val_repeats: int):
    """Up to `val_pairs` rows of the validation split (tiled images only), each drawn val_repeats times, scored."""
    val = read_table(val_path, ["image_id", "tile1", "tile2", "is_dup"], "validation split").to_pandas()
    val = val[val.image_id.isin(accepted)]
    if val.is_dup.nunique() < 2:
        raise TiledupError(f"{val_path}: the validation split needs duplicates and non-duplicates of "
                           f"tiled images to choose thresholds; it has {len(val)} usable pairs, "
                           f"{int(val.is_dup.sum())} duplicates")
    if len(val) > val_pairs:
        val = val.sample(n=val_pairs, random_state=val_seed)
    try:
        augment = check_augment(val_augment or {})
        retime = check_another_time(val_another_time)
    except TiledupError as e:
        raise TiledupError(f"evaluate.val_augment / val_another_time: {e}") from None
    return score_val_pairs(val, cache, model, batch_size, val_seed, augment, retime, val_repeats)


def youden_threshold(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(threshold, J): predict duplicate when score >= threshold, maximising TPR - FPR.

    Candidates are midpoints between consecutive distinct scores, so the cut sits
    between the classes rather than on a training point.
    """
    y, s = np.asarray(y, bool), np.asarray(s, float)
    if y.all() or not y.any():
        raise TiledupError("validation split holds one class only: cannot choose thresholds")
    # roc_curve: one point per distinct score (predict score >= it), highest first, after a first
    # point predicting nothing; O(n log n), where comparing every cut with every score was O(n^2).
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    values = thresholds[1:][::-1]  # the distinct scores, ascending
    cuts = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    tpr, fpr = np.r_[tpr[1:][::-1], tpr[0]], np.r_[fpr[1:][::-1], fpr[0]]  # in the cuts' order
    best = int(np.argmax(tpr - fpr))  # the lowest cut of equally good ones
    return float(cuts[best]), float(tpr[best] - fpr[best])


def val_summary(val_scores: pd.DataFrame, dupnet_threshold, methods=METHODS) -> dict:
    """Per method: the chosen threshold and the validation figures it gives."""
    y = val_scores.is_dup.to_numpy(bool)
    out = {}
    for m in methods:
        s = val_scores[m].to_numpy(float)
        thr, j = youden_threshold(y, s)
        if m == "dupnet" and dupnet_threshold != "val":
            thr = float(dupnet_threshold)
        pred = s >= thr
        out[m] = {"threshold": thr, "youden_j_best": j, "accuracy": float((pred == y).mean()),
                  "roc_auc": float(roc_auc_score(y, s))}
    return out


# ---------------------------------------------------------------- metrics

def method_metrics(y: np.ndarray, s: np.ndarray, thr: float) -> dict:
    """Truth-set figures of one method over the decidable overlaps."""
    pred = s >= thr
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    two = 0 < y.sum() < len(y)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    top = np.argsort(-s, kind="stable")[:TOP]  # the most confident duplicate calls
    return {
        "roc_auc": float(roc_auc_score(y, s)) if two else None,
        "average_precision": float(average_precision_score(y, s)) if two else None,
        "accuracy": float((pred == y).mean()) if len(y) else None,
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        f"precision_at_{TOP}": float(y[top].mean()) if len(y) else None,
        "threshold": float(thr), "errors": fp + fn,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def overlap_counts(scored: pd.DataFrame) -> dict:
    """Overlaps, duplicates and non-duplicates of all, decidable and undecidable overlaps (they add up)."""
    out = {}
    for name, part in (("all", scored), ("decidable", scored[scored.decidable]),
                       ("undecidable", scored[~scored.decidable])):
        dup = int(part.is_dup.astype(bool).sum())
        out[name] = {"overlaps": int(len(part)), "dup": dup, "nondup": int(len(part)) - dup}
    return out


def verdict(methods: dict) -> dict:
    """Per headline figure: does DupNet strictly beat every baseline (None when undefined)?"""
    out = {}
    for key in ("roc_auc", "accuracy", "f1"):
        mine = methods["dupnet"][key]
        others = [v[key] for m, v in methods.items() if m != "dupnet"]
        out[key] = None if mine is None or None in others else bool(all(mine > o for o in others))
    return out


def scores_table(scored: pd.DataFrame, thresholds: dict) -> pa.Table:
    """scores.parquet: one row per overlap (0 rows, same schema, without truth)."""
    cols = {
        "img1": pa.array(scored.img1.astype(str), pa.string()),
        "img2": pa.array(scored.img2.astype(str), pa.string()),
        "tag": pa.array(scored.tag.astype(str), pa.string()),
        "is_dup": pa.array(scored.is_dup.astype(bool), pa.bool_()),
        "source": pa.array(scored.line.astype(str), pa.string()),
        "n_tile_pairs": pa.array(scored.n_tile_pairs.astype(np.int8), pa.int8()),
        "n_informative": pa.array(scored.n_informative.astype(np.int8), pa.int8()),
        "decidable": pa.array(scored.decidable.astype(bool), pa.bool_()),
        # certain evidence (tiledup.scoring.overlaps): every evidence pair SAME; verify's decision score
        "certain": pa.array(scored.certain.astype(bool), pa.bool_()),
        "decision": pa.array(scored.decision.to_numpy(np.float32), pa.float32(),
                             mask=np.isnan(scored.decision.to_numpy(np.float32))),
    }
    for m in thresholds:
        s = scored[m].to_numpy(np.float32)
        undecided = np.isnan(s)
        cols[m] = pa.array(s, pa.float32(), mask=undecided)
        cols[f"{m}_pred"] = pa.array(s >= thresholds[m], pa.bool_(), mask=undecided)
    return pa.table(cols)


# ---------------------------------------------------------------- the rule

@dataclass
class Evaluation:
    """What the report is written from: the scored overlaps, metrics.json, and the groups table if any."""

    scored: pd.DataFrame
    metrics: dict
    groups_path: str | None

def evaluate(truth_path, overlaps_path, skipped_path, images_dir, model_path, val_path, tiles_paths,
             rejects_path, out_dir, layout_path=None, discovery_paths: dict | None = None, *,
             batch_size: int, device: str, dupnet_threshold, val_pairs: int, val_seed: int, val_augment: dict,
             val_another_time: dict, val_repeats: int, tree_depth: int, tree_min_leaf: int,
             evidence: dict, list_cap: int, truth_complete: bool, verdicts_path=None) -> Evaluation:
    """Score dup_truth (if any); write scores.parquet and metrics.json (the report is written from the result).

    truth_path is the dup_truth file as given (None: no truth); the `truth` rule has
    checked it into overlaps_path and skipped_path (tiledup.dup_truth.write_checked).
    discovery_paths: candidates, overlaps, groups and conflicts Parquet files of the discovery
    rules (tiledup.evaluate.discovery_figures): their figures against the truth go into metrics.json and the
    report.
    verdicts_path: a person's verdicts (dup_truth format); without a truth file they are the truth
    (partial: a person reviews some overlaps), with one they are not read here (the truth decides).
    truth_complete: the truth labels every overlap among its images (the demo's own truth).
    Lists in metrics.json hold at most `list_cap` entries, each with its full list named: the undecidable
    truth overlaps (scores.parquet, decidable false), the rejected images (the rejects table) and the
    missed candidates (missed_candidates.parquet beside metrics.json).
    """
    from tiledup.model.dupnet import load_dupnet

    if dupnet_threshold != "val":
        try:
            dupnet_threshold = float(dupnet_threshold)
        except (TypeError, ValueError):
            raise TiledupError(f"evaluate.dupnet_threshold must be a number or 'val', "
                               f"got {dupnet_threshold!r}") from None
    evidence = check_evidence(evidence)
    out_dir = Path(out_dir)
    tiles = read_parquets(tiles_paths, TILE_COLUMNS, "tile table")
    accepted = set(pc.unique(tiles["image_id"]).to_pylist())
    rejects = read_summary(rejects_path, len(accepted))
    if truth_path:
        overlaps, skips = read_checked(overlaps_path, skipped_path)
    elif verdicts_path:
        overlaps, skips = read_truth(verdicts_path, accepted=accepted, on_bad="error")
        truth_path, truth_complete = verdicts_path, False
        log.info("no truth file: a person's verdicts (%s, %d overlaps) are the truth, as a partial one",
                 verdicts_path, len(overlaps))
    else:
        overlaps, skips = pd.DataFrame(columns=TRUTH_COLUMNS), []
    if skips:
        log.warning("%d dup_truth line(s) were skipped by the truth check; listed in metrics.json", len(skips))

    model = load_dupnet(model_path, device)
    cache = ChipCache(images_dir)

    val_scores = validation_scores(val_path, accepted, cache, model, batch_size, val_pairs, val_seed,
                                   val_augment, val_another_time, val_repeats)
    tree = combined.fit_tree(val_scores, depth=tree_depth, min_leaf=tree_min_leaf, seed=val_seed)
    val_scores[combined.NAME] = combined.tree_scores(tree, val_scores)
    methods = (*METHODS, combined.NAME)
    val_info = val_summary(val_scores, dupnet_threshold, methods)
    thresholds = {m: val_info[m]["threshold"] for m in methods}
    log.info("thresholds from %d validation pairs: %s", len(val_scores), thresholds)

    # truth: expand, score informative tile pairs, take the worst pair per overlap
    tiles_table = tile_lookup(tiles, set(overlaps.img1) | set(overlaps.img2))
    decodes_before = cache.decodes
    if len(overlaps):
        scored, pairs = score_overlaps(overlaps, tiles_table, cache, model, batch_size, evidence,
                                       progress="truth tile pairs",
                                       combine={combined.NAME: lambda p: combined.tree_scores(tree, p)})
        log.info("%d overlaps, %d tile pairs (%d evidence: %s), %d chips decoded for %d images",
                 len(overlaps), int(scored.n_tile_pairs.sum()), len(pairs), pairs.evidence.value_counts().to_dict(),
                 cache.decodes - decodes_before, len(set(overlaps.img1) | set(overlaps.img2)))
    else:
        scored = _empty_scored(overlaps, methods)
    write_parquet(scores_table(scored, thresholds), out_dir / "scores.parquet")

    decided = scored[scored.decidable]
    y = decided.is_dup.to_numpy(bool)
    undecidable = scored[~scored.decidable]
    metrics = {
        "n_overlaps": int(len(scored)),
        "n_undecidable": int(len(undecidable)),
        "n_decidable": int(len(decided)),
        "n_dup": int(y.sum()), "n_nondup": int((~y).sum()),  # decidable only; see counts
        "counts": overlap_counts(scored),
        "truth": str(truth_path) if truth_path else None,
        "truth_is_verdicts": bool(truth_path and truth_path == verdicts_path),
        "truth_complete": bool(truth_path and truth_complete),
        "skipped_truth_lines": skips,
        "rejects": rejects,
        "undecidable": undecidable[["img1", "img2", "tag", "is_dup"]].to_dict("records"),
        "threshold_rule": "Youden's J on validation tile pairs (dupnet: "
                          + ("same" if dupnet_threshold == "val" else f"fixed {dupnet_threshold}") + ")",
        "validation": {"n_pairs": int(len(val_scores)), "n_dup": int(val_scores.is_dup.sum()),
                       "methods": val_info},
        "tree": combined.describe(tree),
        "methods": ({m: method_metrics(y, decided[m].to_numpy(float), thresholds[m]) for m in methods}
                    if len(decided) else {}),
    }
    if metrics["methods"]:
        metrics["dupnet_beats_every_baseline"] = verdict(metrics["methods"])
        # how verify decides: certain evidence first (SAME pairs count 1.0), then DupNet at its threshold
        metrics["verify_decision"] = method_metrics(y, decided.decision.to_numpy(float), thresholds["dupnet"])
    certain = decided[decided.certain.astype(bool)]
    metrics["certain"] = {"n": int(len(certain)), "n_truth_dup": int(certain.is_dup.astype(bool).sum()),
                          "n_truth_nondup": int((~certain.is_dup.astype(bool)).sum())}
    if layout_path and len(scored):
        metrics["by_kind"] = kind_breakdown(scored, read_kinds(layout_path), thresholds)
    if not truth_path:
        metrics["note"] = NO_TRUTH
    if discovery_paths:
        metrics["discovery"] = discovery_metrics(truth_decidable(scored) if truth_path else None,
                                                 layout_path=layout_path, truth_complete=truth_complete,
                                                 **discovery_paths)
    for rec in metrics["undecidable"]:
        rec["is_dup"] = bool(rec["is_dup"])
    choice = Path(model_path).parent / CHOICE  # training's record of which model this is, and why
    if choice.exists():
        metrics["model"] = json.loads(choice.read_text())
    metrics["undecidable"] = metrics["undecidable"][:list_cap]
    metrics["lists"] = {"cap": list_cap, "undecidable": "scores.parquet (decidable false)",
                        "rejects": str(rejects_path)}
    rejects["images"] = rejects["images"][:list_cap]
    found = metrics.get("discovery")
    missed = (found.get("candidates") or {}).get("missed") if found else None
    if missed is not None:
        write_parquet(pa.Table.from_pylist(missed, schema=MISSED_SCHEMA), out_dir / "missed_candidates.parquet")
        metrics["discovery"]["candidates"].update(missed=missed[:list_cap], n_missed=len(missed))
        metrics["lists"]["missed"] = "missed_candidates.parquet"
    write_json(metrics, out_dir / "metrics.json")
    return Evaluation(scored, metrics, discovery_paths["groups_path"] if discovery_paths else None)


def _empty_scored(overlaps: pd.DataFrame, methods) -> pd.DataFrame:
    out = overlaps.assign(n_tile_pairs=0, n_informative=0, decidable=False, certain=False,
                          decision=np.zeros(0, np.float32))
    for m in methods:
        out[m] = np.zeros(0, np.float32)
    return out

"""Evaluation: dup_truth overlaps scored by DupNet and the image-metric baselines.

Each labelled overlap is expanded to its tile pairs (grid.tag_tile_pairs).
Tile pairs solid on both sides carry no evidence and are left out; an overlap
with no informative pair is "undecidable" (counted and listed, never guessed).
An overlap is a duplicate only if every tile pair is, so its score is the
minimum over its informative pairs, for every method (all are similarities).

Thresholds never see the truth labels: every baseline's threshold (and
DupNet's, if `dupnet_threshold: val`) maximises Youden's J on tile pairs of the
validation split (tile i vs tile i = duplicate, i vs j = not). Youden's J
rather than accuracy because it does not depend on the split's class balance,
which differs from the truth file's. The two sides of a validation pair i == i
would be identical pixels, which makes every baseline perfect; so every
validation pair gets the training augmentation (tiledup.augment.augment_pair:
JPEG re-encode, HLS shift, radiometric offset, on duplicates and non-duplicates
alike), seeded per row (its own seed, `evaluate.val_seed`), like training's validation.
Same-place-other-time pairs (the truth file's hard negatives) do not exist in
the validation split at all: the report says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import average_precision_score, roc_auc_score

from . import baselines
from .augment import augment_pair, check_augment
from .errors import TiledupError
from .grid import tag_tile_pairs
from .images import RejectedImage, cut_tiles, read_chip
from .io import read_parquets, read_table, write_json, write_parquet
from .truth import COLUMNS as TRUTH_COLUMNS, read_truth

log = logging.getLogger(__name__)

METHODS = ("dupnet", *baselines.METHODS)
NO_TRUTH = ("no truth given: config key `truth` is empty and the images are not the built-in "
            "demo, so there are no labelled overlaps to score; only validation-split figures "
            "are shown")


# ---------------------------------------------------------------- decoding and scoring

class ChipCache:
    """Decoded chips by image id, each decoded once and dropped after its last announced use.

    `expect(ids)` announces every future use (one per tile-pair side); a chip stays
    in memory only while uses are pending, so memory follows the images still
    needed, not the whole truth file; within one pass over announced uses no chip is decoded twice.
    """

    def __init__(self, images_dir):
        self.images_dir = Path(images_dir)
        self.chips: dict[str, np.ndarray] = {}
        self.pending: dict[str, int] = {}
        self.decodes = 0

    def expect(self, image_ids) -> None:
        for image_id in image_ids:
            self.pending[image_id] = self.pending.get(image_id, 0) + 1

    def tiles(self, image_id: str) -> np.ndarray:
        """(9, 256, 256, 3) tiles of one image, for one announced use."""
        tiles = self.chips.get(image_id)
        if tiles is None:
            try:
                tiles = cut_tiles(read_chip(self.images_dir / image_id))
            except RejectedImage as e:  # the tile stage accepted it: the file changed since
                raise TiledupError(f"{e} (accepted by the tile stage earlier; re-run the workflow)") from None
            self.decodes += 1
            self.chips[image_id] = tiles
        self.pending[image_id] = self.pending.get(image_id, 1) - 1
        if self.pending[image_id] <= 0:
            del self.chips[image_id], self.pending[image_id]
        return tiles


class PairScorer:
    """Collects tile pairs and scores them in batches with DupNet and every baseline."""

    def __init__(self, model, batch_size: int = 64):
        self.model, self.batch_size = model, batch_size
        self.buf: list[tuple] = []
        self.scores: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}

    def add(self, tile1, tile2, hashes1: dict, hashes2: dict) -> None:
        self.buf.append((tile1, tile2, hashes1, hashes2))
        if len(self.buf) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        t1 = np.stack([b[0] for b in self.buf])
        t2 = np.stack([b[1] for b in self.buf])
        h1 = {k: np.stack([b[2][k] for b in self.buf]) for k in self.buf[0][2]}
        h2 = {k: np.stack([b[3][k] for b in self.buf]) for k in self.buf[0][3]}
        from .model import predict

        self.scores["dupnet"].append(predict(self.model, t1, t2, self.batch_size))
        for name, s in baselines.pair_scores(t1, t2, h1, h2).items():
            self.scores[name].append(s)
        self.buf = []

    def result(self) -> pd.DataFrame:
        self.flush()
        return pd.DataFrame({m: np.concatenate(v) if v else np.zeros(0, np.float32)
                             for m, v in self.scores.items()})


def tile_hashes(tile: np.ndarray, bmh=None, bmh96=None) -> dict:
    """All hashes of one tile; bmh/bmh96 from the tile table when known, else computed."""
    h = {k: v[0] for k, v in baselines.tile_hashes(tile[None]).items()}
    h["bmh"] = np.frombuffer(bmh, np.uint8) if bmh is not None else baselines.bmh(tile[None])[0]
    h["bmh96"] = np.frombuffer(bmh96, np.uint8) if bmh96 is not None else baselines.bmh96(tile[None])[0]
    return h


def expand(overlaps: pd.DataFrame, solid: dict) -> pd.DataFrame:
    """One row per tile pair of every overlap: overlap (row index), img1, tile1, img2, tile2, informative."""
    rows = [(k, o.img1, t1, o.img2, t2)
            for k, o in enumerate(overlaps.itertuples()) for t1, t2 in tag_tile_pairs(o.tag)]
    pairs = pd.DataFrame(rows, columns=["overlap", "img1", "tile1", "img2", "tile2"])
    both_solid = [solid[(a, t)] and solid[(b, u)]
                  for a, t, b, u in zip(pairs.img1, pairs.tile1, pairs.img2, pairs.tile2)]
    pairs["informative"] = ~np.array(both_solid, dtype=bool)
    return pairs


def image_order(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs grouped by connected group of images, so chips are released soon after their group is done."""
    parent: dict[str, str] = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(pairs.img1, pairs.img2):
        parent[root(a)] = root(b)
    group = [root(a) for a in pairs.img1]
    return pairs.assign(group=group).sort_values(["group", "img1", "img2", "tile1"]).drop(columns="group")


def score_truth_pairs(pairs: pd.DataFrame, tiles_table: dict, cache: ChipCache, model,
                      batch_size: int) -> pd.DataFrame:
    """Score the informative tile pairs; returns `pairs` (informative rows) with one column per method."""
    todo = image_order(pairs[pairs.informative])
    cache.expect(todo.img1)
    cache.expect(todo.img2)
    hashes: dict[tuple[str, int], dict] = {}

    def side(image_id, tile):
        tiles = cache.tiles(image_id)
        if (image_id, tile) not in hashes:
            row = tiles_table[(image_id, tile)]
            hashes[(image_id, tile)] = tile_hashes(tiles[tile], row["bmh"], row["bmh96"])
        return tiles[tile], hashes[(image_id, tile)]

    scorer = PairScorer(model, batch_size)
    for a, t, b, u in zip(todo.img1, todo.tile1, todo.img2, todo.tile2):
        tile1, h1 = side(a, t)
        tile2, h2 = side(b, u)
        scorer.add(tile1, tile2, h1, h2)
    return pd.concat([todo.reset_index(drop=True), scorer.result()], axis=1)


def aggregate(overlaps: pd.DataFrame, pairs: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """Overlap score = minimum over its informative tile pairs; NaN when it has none (undecidable)."""
    out = overlaps.copy()
    out["n_tile_pairs"] = pairs.groupby("overlap").size().reindex(range(len(out)), fill_value=0).to_numpy()
    out["n_informative"] = (pairs[pairs.informative].groupby("overlap").size()
                            .reindex(range(len(out)), fill_value=0).to_numpy())
    out["decidable"] = out.n_informative > 0
    worst = scored.groupby("overlap")[list(METHODS)].min().reindex(range(len(out)))
    for m in METHODS:
        out[m] = worst[m].to_numpy(dtype=np.float32)
    return out


# ---------------------------------------------------------------- validation split

def score_val_pairs(val: pd.DataFrame, cache: ChipCache, model, batch_size: int, seed: int,
                    augment: dict) -> pd.DataFrame:
    """Score validation tile pairs, each augmented as training does (seeded per row); is_dup + methods."""
    scorer = PairScorer(model, batch_size)
    order = val.sort_values(["image_id", "tile1", "tile2"])
    cache.expect(order.image_id)
    for row, image_id, t1, t2 in zip(order.index, order.image_id, order.tile1, order.tile2):
        tiles = cache.tiles(image_id)
        a, b = augment_pair(tiles[t1], tiles[t2], np.random.default_rng([seed, int(row)]), **augment)
        scorer.add(a, b, tile_hashes(a), tile_hashes(b))
    return pd.concat([order[["is_dup"]].reset_index(drop=True), scorer.result()], axis=1)


def validation_scores(val_path, accepted, cache, model, batch_size, val_pairs, val_seed, val_augment):
    """Up to `val_pairs` tile pairs of the validation split (tiled images only), augmented and scored."""
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
    except TiledupError as e:
        raise TiledupError(f"evaluate.val_augment: {e}") from None
    return score_val_pairs(val, cache, model, batch_size, val_seed, augment)


def youden_threshold(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(threshold, J): predict duplicate when score >= threshold, maximising TPR - FPR.

    Candidates are midpoints between consecutive distinct scores, so the cut sits
    between the classes rather than on a training point.
    """
    y, s = np.asarray(y, bool), np.asarray(s, float)
    if y.all() or not y.any():
        raise TiledupError("validation split holds one class only: cannot choose thresholds")
    values = np.unique(s)
    cuts = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    tpr = (s[y][None, :] >= cuts[:, None]).mean(axis=1)
    fpr = (s[~y][None, :] >= cuts[:, None]).mean(axis=1)
    best = int(np.argmax(tpr - fpr))
    return float(cuts[best]), float(tpr[best] - fpr[best])


def val_summary(val_scores: pd.DataFrame, dupnet_threshold) -> dict:
    """Per method: the chosen threshold and the validation figures it gives."""
    y = val_scores.is_dup.to_numpy(bool)
    out = {}
    for m in METHODS:
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
    return {
        "roc_auc": float(roc_auc_score(y, s)) if two else None,
        "average_precision": float(average_precision_score(y, s)) if two else None,
        "accuracy": float((pred == y).mean()) if len(y) else None,
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "threshold": float(thr), "errors": fp + fn,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def verdict(methods: dict) -> dict:
    """Per headline figure: does DupNet strictly beat every baseline (None when undefined)?"""
    out = {}
    for key in ("roc_auc", "accuracy"):
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
    }
    for m in METHODS:
        s = scored[m].to_numpy(np.float32)
        undecided = np.isnan(s)
        cols[m] = pa.array(s, pa.float32(), mask=undecided)
        cols[f"{m}_pred"] = pa.array(s >= thresholds[m], pa.bool_(), mask=undecided)
    return pa.table(cols)


# ---------------------------------------------------------------- the rule

def _tile_tables(tiles_paths, rejects_paths) -> tuple[pa.Table, dict]:
    tiles = read_parquets(tiles_paths, ["image_id", "tile", "bmh", "bmh96", "solid"], "tile table")
    rejects = read_parquets(rejects_paths, ["image_id", "reason"], "rejects table").to_pandas()
    return tiles, dict(zip(rejects.image_id, rejects.reason))


def _tile_lookup(tiles: pa.Table, image_ids) -> dict:
    """(image_id, tile) -> bmh, bmh96, solid of the truth's images only: memory follows the
    truth file, not the whole dataset (1.7 million tiles for Airbus)."""
    wanted = pa.array(sorted(image_ids), pa.string())
    sub = tiles.filter(pc.is_in(tiles["image_id"], value_set=wanted)).to_pandas()
    return {(i, int(t)): {"bmh": b, "bmh96": b96, "solid": bool(s)}
            for i, t, b, b96, s in zip(sub.image_id, sub.tile, sub.bmh, sub.bmh96, sub.solid)}


def evaluate(truth_path, images_dir, model_path, val_path, tiles_paths, rejects_paths, out_dir,
             on_bad_truth: str = "error", batch_size: int = 64, device: str = "auto",
             dupnet_threshold=0.5, val_pairs: int = 2000, val_seed: int = 0,
             val_augment: dict | None = None,
             gallery_errors: int = 400, gallery_correct: int = 12, thumb: int = 160) -> dict:
    """Score dup_truth (if any) and write scores.parquet, metrics.json, report.html, roc.png, pr.png."""
    from .model import load_dupnet
    from .report import write_report

    if dupnet_threshold != "val":
        try:
            dupnet_threshold = float(dupnet_threshold)
        except (TypeError, ValueError):
            raise TiledupError(f"evaluate.dupnet_threshold must be a number or 'val', "
                               f"got {dupnet_threshold!r}") from None
    out_dir = Path(out_dir)
    tiles, rejected = _tile_tables(tiles_paths, rejects_paths)
    accepted = set(pc.unique(tiles["image_id"]).to_pylist())
    if truth_path:
        overlaps, skips = read_truth(truth_path, accepted, rejected, images_dir, on_bad_truth)
    else:
        overlaps, skips = pd.DataFrame(columns=TRUTH_COLUMNS), []
    for s in skips:
        log.warning("skipped %s: %s", s["line"], s["reason"])

    model = load_dupnet(model_path, device)
    cache = ChipCache(images_dir)

    val_scores = validation_scores(val_path, accepted, cache, model, batch_size, val_pairs, val_seed,
                                   val_augment)
    val_info = val_summary(val_scores, dupnet_threshold)
    thresholds = {m: val_info[m]["threshold"] for m in METHODS}
    log.info("thresholds from %d validation pairs: %s", len(val_scores), thresholds)

    # truth: expand, score informative tile pairs, take the worst pair per overlap
    tiles_table = _tile_lookup(tiles, set(overlaps.img1) | set(overlaps.img2))
    solid = {k: v["solid"] for k, v in tiles_table.items()}
    decodes_before = cache.decodes
    if len(overlaps):
        pairs = expand(overlaps, solid)
        scored = aggregate(overlaps, pairs, score_truth_pairs(pairs, tiles_table, cache, model, batch_size))
        log.info("%d overlaps, %d tile pairs (%d informative), %d chips decoded for %d images",
                 len(overlaps), len(pairs), int(pairs.informative.sum()), cache.decodes - decodes_before,
                 len(set(overlaps.img1) | set(overlaps.img2)))
    else:
        scored = _empty_scored(overlaps)
    write_parquet(scores_table(scored, thresholds), out_dir / "scores.parquet")

    decided = scored[scored.decidable]
    y = decided.is_dup.to_numpy(bool)
    undecidable = scored[~scored.decidable]
    metrics = {
        "n_overlaps": int(len(scored)),
        "n_undecidable": int(len(undecidable)),
        "n_decidable": int(len(decided)),
        "n_dup": int(y.sum()), "n_nondup": int((~y).sum()),
        "truth": str(truth_path) if truth_path else None,
        "skipped_truth_lines": skips,
        "undecidable": undecidable[["img1", "img2", "tag", "is_dup"]].to_dict("records"),
        "threshold_rule": "Youden's J on validation tile pairs (dupnet: "
                          + ("same" if dupnet_threshold == "val" else f"fixed {dupnet_threshold}") + ")",
        "validation": {"n_pairs": int(len(val_scores)), "n_dup": int(val_scores.is_dup.sum()),
                       "methods": val_info},
        "methods": ({m: method_metrics(y, decided[m].to_numpy(float), thresholds[m]) for m in METHODS}
                    if len(decided) else {}),
    }
    if metrics["methods"]:
        metrics["dupnet_beats_every_baseline"] = verdict(metrics["methods"])
    if not truth_path:
        metrics["note"] = NO_TRUTH
    for rec in metrics["undecidable"]:
        rec["is_dup"] = bool(rec["is_dup"])
    write_json(metrics, out_dir / "metrics.json")
    write_report(scored, metrics, images_dir, out_dir, gallery_errors=gallery_errors,
                 gallery_correct=gallery_correct, thumb=thumb, seed=val_seed)
    return metrics


def _empty_scored(overlaps: pd.DataFrame) -> pd.DataFrame:
    out = overlaps.assign(n_tile_pairs=0, n_informative=0, decidable=False)
    for m in METHODS:
        out[m] = np.zeros(0, np.float32)
    return out

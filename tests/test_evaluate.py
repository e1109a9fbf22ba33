"""Evaluation: tag geometry, worst-pair aggregation, undecidable overlaps, val-only thresholds, outputs.

The end-to-end cases run on tiny synthetic scenes written as real JPEG chips,
tiled by the real tile stage, scored by a small untrained DupNet checkpoint.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simplejpeg
import torch

from tiledup import cli
from tiledup.run.errors import TiledupError
from tiledup.evaluate.evaluation import youden_threshold
from tiledup.scoring.overlaps import METHODS, ChipCache, aggregate, expand, score_pairs
from tiledup.grid import CHIP, TAGS, TILE, offset_tag, tag_offset
from tiledup.model.dupnet import DupNet, save_dupnet
from tiledup.tiles.manifest import write_manifest
from tiledup.tiles.rejects import gather_rejects
from tiledup.tiles.shard import tile_shard
from tiledup.dup_truth import read_checked, write_checked
from tiledup.report.page import evaluate_and_report

from configured import CONFIG, options

COLOUR_LEVELS = options("evidence")["colour_levels"]


def evaluate(**args):
    """The `evaluate` rule with the config's `evaluate` and `evidence` blocks (keys in args win)."""
    return evaluate_and_report(**{**options("evaluate"), "evidence": options("evidence"),
                                   "truth_complete": CONFIG["truth_complete"], **args})

from test_overlaps import table_of

ALL = (*METHODS, "tree")  # with the combined baseline

# (image id, scene, pass, row, col): scene "sea" seen at two times, scene "cloud" all white
CHIPS = [
    ("a00000001.jpg", "sea", 0, 0, 0), ("a00000002.jpg", "sea", 0, 0, 1),
    ("a00000003.jpg", "sea", 0, 1, 1), ("a00000004.jpg", "sea", 0, 2, 2),
    ("b00000001.jpg", "sea", 1, 0, 0), ("b00000002.jpg", "sea", 1, 1, 0),
    ("c00000001.jpg", "cloud", 0, 0, 0), ("c00000002.jpg", "cloud", 0, 0, 1),
]


def texture(rng, size):
    """Smooth random colour texture with some sharp specks (ships), uint8."""
    base = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), 6)
    base = (base - base.mean()) * 4 + 110
    for _ in range(size // 64):
        y, x = rng.integers(0, size - 12, 2)
        base[y:y + 12, x:x + 6] = 230
    return np.clip(base, 0, 255).astype(np.uint8)


def make_case(root, seed=0):
    """Chips, tile + rejects tables, val table, model, truth; returns a dict of paths."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir()
    size = 5 * TILE
    first = texture(rng, size)
    later = first.copy()
    later[TILE:2 * TILE, TILE:2 * TILE] = texture(rng, TILE)  # scene tile (1, 1) changed at time 2
    scenes = {("sea", 0): first, ("sea", 1): later, ("cloud", 0): np.full((size, size, 3), 255, np.uint8)}
    for image_id, scene, p, r, c in CHIPS:
        chip = scenes[(scene, p)][r * TILE:r * TILE + CHIP, c * TILE:c * TILE + CHIP]
        offset = int(rng.integers(-2, 3)) if scene == "sea" else 0  # separate radiometric processing
        chip = np.clip(chip.astype(np.int16) + offset, 0, 255).astype(np.uint8)
        (images / image_id).write_bytes(simplejpeg.encode_jpeg(chip, quality=95, colorspace="RGB"))
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")

    lines = []
    for i, (a, sa, pa_, ra, ca) in enumerate(CHIPS):
        for b, sb, pb, rb, cb in CHIPS[i + 1:]:
            if sa == sb and abs(rb - ra) <= 2 and abs(cb - ca) <= 2:
                lines.append(f"{a} {b} {offset_tag(rb - ra, cb - ca)} {int(pa_ == pb)}")
    truth = root / "dup_truth.txt"
    truth.write_text("# synthetic truth\n" + "\n".join(lines) + "\n")

    listing = root / "000.txt"
    listing.write_text("\n".join([c[0] for c in CHIPS] + ["broken.jpg"]) + "\n")
    tiles, rejects = root / "tiles.parquet", root / "rejects.parquet"
    tile_shard(images, listing, tiles, rejects, **options("tiles"))

    rows = [(c[0], t, t, True) for c in CHIPS if c[1] == "sea" for t in range(9)]
    rows += [(c[0], t, (t + 1) % 9, False) for c in CHIPS if c[1] == "sea" for t in range(9)]
    val = root / "val.parquet"
    pq.write_table(pa.table({"image_id": [r[0] for r in rows], "tile1": pa.array([min(r[1:3]) for r in rows], pa.int8()),
                             "tile2": pa.array([max(r[1:3]) for r in rows], pa.int8()),
                             "is_dup": [r[3] for r in rows], "bmh_sim": pa.array([1.0] * len(rows), pa.float32())}), val)

    layout = root / "layout.parquet"
    pq.write_table(pa.table({"image_id": [c[0] for c in CHIPS], "scene": [c[1] for c in CHIPS],
                             "pass": pa.array([c[2] for c in CHIPS], pa.int32()),
                             "row": pa.array([c[3] for c in CHIPS], pa.int32()),
                             "col": pa.array([c[4] for c in CHIPS], pa.int32()),
                             "kind": ["bright water" if c[1] == "sea" else "overcast bright water" for c in CHIPS]}),
                   layout)

    torch.manual_seed(seed)
    model = root / "dupnet.pt"
    save_dupnet(DupNet(**options("train.model", width=4, depth=1, stem=16, max_width=8)), model)
    manifest, gathered = root / "manifest.parquet", root / "rejects_all.parquet"
    write_manifest(images, 1, manifest, root / "lists", on_bad_truth="error")
    gather_rejects(manifest, [rejects], gathered)
    return {**check_truth(root, truth, manifest, gathered, images), "images_dir": images,
            "model_path": model, "val_path": val, "tiles_paths": [tiles], "rejects_path": gathered,
            "layout_path": layout}


def check_truth(root, truth, manifest, rejects, images, on_bad="error"):
    """The `truth` rule's outputs for a truth file: evaluate's three truth arguments."""
    out = {"truth_path": truth, "overlaps_path": root / f"{truth.stem}.overlaps.parquet",
           "skipped_path": root / f"{truth.stem}.skipped.parquet"}
    write_checked(truth, manifest, rejects, images, out["overlaps_path"], out["skipped_path"], on_bad)
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("case")
    paths = make_case(root)
    metrics = evaluate(**paths, out_dir=root / "eval", device="cpu", batch_size=16)
    return root, paths, metrics


# ---------------------------------------------------------------- units

def test_expansion_pairs_tiles_that_show_the_same_pixels():
    """For every tag: the expanded tile pairs of two chips cut from one scene are pixel-identical."""
    scene = np.random.default_rng(1).integers(0, 255, (7 * TILE, 7 * TILE, 3), dtype=np.uint8)
    solid = {(i, t): False for i in ("x", "y") for t in range(9)}
    for tag in TAGS:
        dr, dc = tag_offset(tag)
        r1, c1, r2, c2 = 2, 2, 2 + dr, 2 + dc
        chip1 = scene[r1 * TILE:r1 * TILE + CHIP, c1 * TILE:c1 * TILE + CHIP]
        chip2 = scene[r2 * TILE:r2 * TILE + CHIP, c2 * TILE:c2 * TILE + CHIP]
        pairs = expand(pd.DataFrame({"img1": ["x"], "img2": ["y"], "tag": [tag]}), table_of(solid), COLOUR_LEVELS)
        assert len(pairs) == (3 - abs(dr)) * (3 - abs(dc))
        for t1, t2 in zip(pairs.tile1, pairs.tile2):
            a = chip1[t1 // 3 * TILE:(t1 // 3 + 1) * TILE, t1 % 3 * TILE:(t1 % 3 + 1) * TILE]
            b = chip2[t2 // 3 * TILE:(t2 // 3 + 1) * TILE, t2 % 3 * TILE:(t2 % 3 + 1) * TILE]
            assert np.array_equal(a, b), (tag, t1, t2)


def test_pairs_with_a_solid_side_wait_for_the_pixel_test():
    solid = {("x", t): t in (0, 1) for t in range(9)} | {("y", t): t == 0 for t in range(9)}
    pairs = expand(pd.DataFrame({"img1": ["x"], "img2": ["y"], "tag": ["08"]}), table_of(solid), COLOUR_LEVELS)
    assert list(pairs.evidence) == ["solid", "solid"] + ["texture"] * 7  # settled by score_pairs


def test_worst_pair_aggregation_and_undecidable():
    overlaps = pd.DataFrame({"img1": ["a", "a", "b"], "img2": ["b", "c", "c"], "tag": ["08", "02", "55"],
                             "is_dup": [True, False, True], "line": ["f:1", "f:2", "f:3"]})
    pairs = pd.DataFrame({"overlap": [0, 0, 0, 1, 1, 2], "informative": [True, True, False, True, True, False]})
    scored = pairs[pairs.informative].copy()
    for k, m in enumerate(METHODS):
        scored[m] = np.array([0.9, 0.4, 0.7, 0.8]) + k / 100  # overlap 0: 0.9, 0.4; overlap 1: 0.7, 0.8
    out = aggregate(overlaps, pairs, scored)
    assert list(out.n_tile_pairs) == [3, 2, 1] and list(out.n_informative) == [2, 2, 0]
    assert list(out.decidable) == [True, True, False]
    assert np.allclose(out.dupnet[:2], [0.4, 0.7]) and np.isnan(out.dupnet[2])
    k = METHODS.index("pixel_mad") / 100
    assert np.allclose(out.pixel_mad[:2], [0.4 + k, 0.7 + k])


def test_youden_threshold():
    thr, j = youden_threshold([False, False, True, True], [0.1, 0.3, 0.6, 0.9])
    assert j == 1 and thr == pytest.approx(0.45)
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    s = rng.random(200) + 0.4 * y
    thr, j = youden_threshold(y, s)
    brute = max(((s[y] >= c).mean() - (s[~y] >= c).mean()) for c in np.unique(s))
    assert j == pytest.approx(brute) and ((s[y] >= thr).mean() - (s[~y] >= thr).mean()) == pytest.approx(j)
    with pytest.raises(TiledupError, match="one class"):
        youden_threshold([True, True], [0.2, 0.3])



def test_youden_threshold_equals_the_cut_by_cut_search():
    """roc_curve gives exactly the thresholds of comparing every cut with every score, ties and
    equally good cuts included (the lowest is chosen)."""
    def cut_by_cut(y, s):
        values = np.unique(s)
        cuts = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
        tpr = (s[y][None, :] >= cuts[:, None]).mean(axis=1)
        fpr = (s[~y][None, :] >= cuts[:, None]).mean(axis=1)
        best = int(np.argmax(tpr - fpr))
        return float(cuts[best]), float(tpr[best] - fpr[best])

    rng = np.random.default_rng(1)
    for n, levels in ((7, 3), (300, 10), (2000, 10**6), (500, 2)):
        y = rng.random(n) < 0.4
        y[:2] = [True, False]
        s = rng.integers(0, levels, n) / levels + 0.3 * y * rng.random(n)
        assert youden_threshold(y, s) == cut_by_cut(y, s)
        assert youden_threshold(y, -s) == cut_by_cut(y, -s)  # the best cut may be the lowest or the highest
    s = np.array([0.2, 0.2, 0.5, 0.5])
    assert youden_threshold(np.array([True, False, True, False]), s) == cut_by_cut(np.array([True, False, True, False]), s)

def test_each_chip_decoded_once(case):
    root, paths, _ = case
    from tiledup.scoring.overlaps import tile_lookup
    from tiledup.run.io import read_parquets

    tiles = read_parquets(paths["tiles_paths"])
    overlaps, _ = read_checked(paths["overlaps_path"], paths["skipped_path"])
    table = tile_lookup(tiles, set(overlaps.img1) | set(overlaps.img2))
    pairs = expand(overlaps, table, COLOUR_LEVELS)
    cache = ChipCache(paths["images_dir"])
    scored = score_pairs(pairs, table, cache, _model(paths), batch_size=8, evidence=options("evidence"))
    decoded = pairs[pairs.evidence != "not_dup"]  # every other pair needs pixels (scores or the solid test)
    assert cache.decodes == len(set(decoded.img1) | set(decoded.img2)) == 8
    assert cache.chips == {}  # every chip released after its last tile pair
    assert len(scored) == int((pairs.evidence == "texture").sum())  # the solid pairs here say nothing


def _model(paths):
    from tiledup.model.dupnet import load_dupnet

    return load_dupnet(paths["model_path"], "cpu")


# ---------------------------------------------------------------- end to end

def test_outputs_and_metrics_shape(case):
    root, paths, metrics = case
    on_disk = json.loads((root / "eval" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    n_truth = len([l for l in paths["truth_path"].read_text().splitlines() if not l.startswith("#")])
    assert metrics["n_overlaps"] == n_truth
    assert set(metrics["methods"]) == set(ALL) and len(METHODS) >= 8
    for m in metrics["methods"].values():
        assert {"roc_auc", "average_precision", "accuracy", "precision", "recall", "f1", "threshold",
                "errors"} <= set(m)
        c = m["confusion"]
        assert c["fp"] + c["fn"] == m["errors"] and sum(c.values()) == metrics["n_decidable"]
    for name in ("scores.parquet", "report.html", "roc.png", "pr.png"):
        assert (root / "eval" / name).stat().st_size > 0


def test_undecidable_overlap_is_counted_listed_and_not_guessed(case):
    root, _, metrics = case
    assert metrics["n_undecidable"] == 1
    assert metrics["undecidable"] == [{"img1": "c00000001.jpg", "img2": "c00000002.jpg", "tag": "18",
                                       "is_dup": True}]
    scores = pq.read_table(root / "eval" / "scores.parquet").to_pandas()
    row = scores[scores.img1 == "c00000001.jpg"].iloc[0]
    assert not row.decidable and row.n_informative == 0 and row.n_tile_pairs == 6
    assert pd.isna(row.dupnet) and pd.isna(row.dupnet_pred) and pd.isna(row.bmh_pred)
    assert metrics["n_decidable"] == metrics["n_overlaps"] - 1


def test_errors_by_kind_add_up(case):
    root, paths, metrics = case
    by_kind = metrics["by_kind"]
    assert set(by_kind) == {"bright water", "overcast bright water"}
    assert sum(k["n_overlaps"] for k in by_kind.values()) == metrics["n_overlaps"]
    assert sum(k["n_undecidable"] for k in by_kind.values()) == metrics["n_undecidable"]
    for m in ALL:
        kinds = [k["methods"][m] for k in by_kind.values()]
        assert sum(k["errors"] for k in kinds) == metrics["methods"][m]["errors"]
        assert sum(k["false_dup"] for k in kinds) == metrics["methods"][m]["confusion"]["fp"]
    assert "Errors by kind of overlap" in (root / "eval" / "report.html").read_text()


def test_scores_rows_follow_the_truth(case):
    root, paths, metrics = case
    scores = pq.read_table(root / "eval" / "scores.parquet").to_pandas()
    assert (scores.img1 < scores.img2).all()
    sea = scores[scores.decidable]
    for m in ALL:
        thr = metrics["methods"][m]["threshold"]
        assert (sea[f"{m}_pred"] == (sea[m] >= thr)).all()
        assert sea[m].between(0, 1).all()
    # the pixel baselines see the changed scene tile: every A-vs-B overlap that covers it scores lower
    covered = scores[(scores.img1 == "a00000003.jpg") & (scores.img2 == "b00000001.jpg")]
    same = scores[(scores.img1 == "a00000001.jpg") & (scores.img2 == "a00000003.jpg")]
    assert covered.bmh.iloc[0] < same.bmh.iloc[0]


def test_thresholds_do_not_depend_on_truth_labels(case, tmp_path):
    root, paths, metrics = case
    flipped = tmp_path / "flipped.txt"
    flipped.write_text("".join(f"{l[:-1]}{1 - int(l[-1])}\n" for l in paths["truth_path"].read_text().splitlines()
                               if l and not l.startswith("#")))
    checked = check_truth(tmp_path, flipped, root / "manifest.parquet", paths["rejects_path"], paths["images_dir"])
    other = evaluate(**{**paths, **checked}, out_dir=tmp_path / "eval", device="cpu", batch_size=16)
    assert other["validation"] == metrics["validation"]
    assert other["tree"] == metrics["tree"]  # the combined baseline is fitted on validation pairs only
    for m in ALL:
        assert other["methods"][m]["threshold"] == metrics["methods"][m]["threshold"]
        assert other["methods"][m]["accuracy"] == pytest.approx(1 - metrics["methods"][m]["accuracy"])
    a = pq.read_table(root / "eval" / "scores.parquet").to_pandas()
    b = pq.read_table(tmp_path / "eval" / "scores.parquet").to_pandas()
    assert np.array_equal(a.dupnet.to_numpy(), b.dupnet.to_numpy(), equal_nan=True)
    assert (a.is_dup != b.is_dup).all()


def test_no_truth(case, tmp_path):
    root, paths, _ = case
    out = tmp_path / "eval"
    code = cli.main(["evaluate", "--truth", "", "--images", str(paths["images_dir"]),
                     "--model", str(paths["model_path"]), "--val", str(paths["val_path"]),
                     "--tiles", *map(str, paths["tiles_paths"]), "--rejects", str(paths["rejects_path"]),
                     "--out-dir", str(out), "--options", json.dumps({"device": "cpu"})])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_overlaps"] == 0 and metrics["methods"] == {} and metrics["truth"] is None
    assert metrics["note"].startswith("no truth given")
    scores = pq.read_table(out / "scores.parquet")
    assert scores.num_rows == 0
    assert scores.schema == pq.read_table(root / "eval" / "scores.parquet").schema
    page = (out / "report.html").read_text()
    assert "No truth was given" in page and "The model: DupNet and the thresholds" in page


def test_rejected_image_in_truth_is_an_error_or_a_listed_skip(case, tmp_path):
    root, paths, metrics = case
    truth = tmp_path / "truth.txt"
    truth.write_text(paths["truth_path"].read_text() + "a00000001.jpg broken.jpg 08 0\n")
    n = len(truth.read_text().splitlines())
    args = (root / "manifest.parquet", paths["rejects_path"], paths["images_dir"])
    with pytest.raises(TiledupError, match=rf"{truth}:{n}: image broken.jpg was rejected by the tile stage"):
        check_truth(tmp_path, truth, *args)
    skipped = evaluate(**{**paths, **check_truth(tmp_path, truth, *args, on_bad="skip")},
                       out_dir=tmp_path / "eval", device="cpu")
    assert [s["line"] for s in skipped["skipped_truth_lines"]] == [f"{truth}:{n}"]
    assert skipped["skipped_truth_lines"][0]["reason"].startswith("image broken.jpg was rejected")
    assert f"{truth}:{n}" in (tmp_path / "eval" / "report.html").read_text()
    assert skipped["n_overlaps"] == metrics["n_overlaps"]


def test_rejects_are_counted_and_listed(case):
    root, _, metrics = case
    rejects = metrics["rejects"]
    assert rejects["n_images"] == len(CHIPS) + 1 and rejects["n_rejected"] == 1
    assert rejects["by_reason"] == {"corrupt JPEG header": 1}  # the decoder's detail is left out
    [image] = rejects["images"]
    assert image["image_id"] == "broken.jpg" and image["shard"] == 0
    assert image["reason"].startswith("corrupt JPEG header (")
    page = (root / "eval" / "report.html").read_text()
    assert 'id="rejects"' in page and "broken.jpg" in page


def test_validation_split_with_one_class_is_a_clear_error(case, tmp_path):
    _, paths, _ = case
    val = pq.read_table(paths["val_path"]).to_pandas()
    one_class = tmp_path / "val.parquet"
    pq.write_table(pa.Table.from_pandas(val[val.is_dup], preserve_index=False), one_class)
    with pytest.raises(TiledupError, match=rf"{one_class}: the validation split needs duplicates and non-dup"):
        evaluate(**{**paths, "val_path": one_class}, out_dir=tmp_path / "eval", device="cpu")


def test_counts_add_up_and_errors_csv_lists_every_dupnet_error(case):
    root, _, metrics = case
    c = metrics["counts"]
    assert c["all"]["overlaps"] == metrics["n_overlaps"] == c["decidable"]["overlaps"] + c["undecidable"]["overlaps"]
    for k in ("dup", "nondup"):
        assert c["all"][k] == c["decidable"][k] + c["undecidable"][k]
    assert (c["decidable"]["dup"], c["decidable"]["nondup"]) == (metrics["n_dup"], metrics["n_nondup"])
    assert (c["undecidable"]["overlaps"], c["undecidable"]["dup"]) == (1, 1)
    scores = pq.read_table(root / "eval" / "scores.parquet").to_pandas()
    wrong = scores[scores.decidable & (scores.dupnet_pred != scores.is_dup)]
    errors = pd.read_csv(root / "eval" / "errors.csv", dtype={"tag": str})
    assert len(errors) == len(wrong) == metrics["methods"]["dupnet"]["errors"] > 0
    assert set(zip(errors.img1, errors.img2, errors.tag)) == set(zip(wrong.img1, wrong.img2, wrong.tag))
    assert list(errors["rank"]) == list(range(1, len(errors) + 1))
    margin = (errors.dupnet - metrics["methods"]["dupnet"]["threshold"]).abs()
    assert margin.is_monotonic_decreasing  # most confident first, the gallery's order


def test_evaluation_logs_progress(case, tmp_path, monkeypatch, caplog):
    import logging

    from tiledup.run import progress

    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # a line per batch
    caplog.set_level(logging.INFO)
    root, paths, metrics = case
    evaluate(**paths, out_dir=tmp_path / "eval", device="cpu", batch_size=16)
    said = [r.getMessage() for r in caplog.records]
    n_val = metrics["validation"]["n_pairs"]
    # the truth's textured tile pairs are scored; pairs with a solid side are settled by the evidence rule
    n_evidence = int(pq.read_table(root / "eval" / "scores.parquet").column("n_informative").to_numpy().sum())
    assert f"validation tile pairs: started, {n_val} tile pairs" in said
    assert any(m.startswith(f"validation tile pairs: 16/{n_val} tile pairs") and "ETA" in m for m in said)
    started = [int(m.split()[4]) for m in said if m.startswith("truth tile pairs: started, ")]
    assert len(started) == 1 and 0 < started[0] <= n_evidence
    assert any(m.startswith(f"truth tile pairs: done, {started[0]} tile pairs in ") for m in said)
    assert any(m.startswith("report error gallery: done, ") for m in said)

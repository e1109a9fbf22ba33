"""Discovery on real JPEGs: candidates -> verify -> groups -> the evaluation's discovery figures and report,
and `tiledup compare`; verify must score an overlap exactly as the evaluation does."""

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tiledup import cli
from tiledup.discovery.candidates import find_candidates
from tiledup.discovery.groups import groups_rule
from tiledup.grid import TAGS, tag_tile_pairs
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.model.dupnet import load_dupnet, predict
from tiledup.report.mosaics import stitch
from tiledup.dup_truth import read_truth
from tiledup.discovery.verify import OVERLAP_SCHEMA, chunks, verify, write_truth
from tiledup.discovery.exports import write_exports
from tiledup.run.errors import TiledupError

from test_evaluate import evaluate, make_case

from configured import options


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("discovery")
    paths = make_case(root)
    out = {"candidates_path": root / "candidates.parquet", "overlaps_path": root / "overlaps.parquet",
           "groups_path": root / "groups.parquet", "conflicts_path": root / "conflicts.parquet"}
    find_candidates(paths["tiles_paths"], out["candidates_path"], **options("candidates"))
    handler, logger = _Capture(), logging.getLogger("tiledup.discovery.verify")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        verify(out["candidates_path"], paths["images_dir"], paths["model_path"], paths["tiles_paths"],
               out["overlaps_path"], root / "found.txt", workers=1, evidence=options("evidence"),
               **options("verify", device="cpu", batch_size=16, chunk=3))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    groups_rule(out["overlaps_path"], paths["tiles_paths"], out["groups_path"], root / "split.csv",
                out["conflicts_path"], root / "leaks.json", out["candidates_path"],
                **options("groups", fractions={"train": 0.5, "val": 0.5, "test": 0.0}))
    write_exports(out["overlaps_path"], out["groups_path"], paths["tiles_paths"], root / "duplicates.json",
                  root / "removable.txt")
    exports = {"split": root / "split.csv", "duplicates": root / "duplicates.json", "removable": root / "removable.txt"}
    metrics = evaluate(**paths, out_dir=root / "eval", device="cpu", batch_size=16, truth_complete=True,
                       discovery_paths={**out, "split_path": root / "split.csv"}, exports=exports)
    return root, paths, out, metrics, handler.messages


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_every_decidable_truth_duplicate_is_a_candidate(run):
    _, _, _, metrics, _ = run
    cand = metrics["discovery"]["candidates"]
    assert cand["n_truth_dups_decidable"] > 0 and cand["recall"] == 1.0 and cand["missed"] == []


def test_verify_decides_an_overlap_exactly_as_the_evaluation(run):
    """The same decision and columns as the evaluation's full scoring; a non-duplicate's score is the
    first DupNet score below the threshold (test_overlaps checks duplicates' scores are exact)."""
    root, _, out, _, _ = run
    found = pq.read_table(out["overlaps_path"]).to_pandas()
    scores = pq.read_table(root / "eval" / "scores.parquet").to_pandas()
    both = found.merge(scores, on=["img1", "img2", "tag"], suffixes=("", "_eval"))
    assert len(both) >= 5
    assert (both.n_informative == both.n_informative_eval).all()
    decided = both[both.n_informative > 0]
    threshold = options("verify")["dupnet_threshold"]
    dup = decided.is_dup.astype(bool)
    assert (dup == (decided.decision >= threshold)).all()  # certain evidence first, then DupNet
    assert np.allclose(decided.score[dup], decided.decision[dup], atol=1e-5)
    assert ((decided.score[~dup] >= decided.decision[~dup] - 1e-5) & (decided.score[~dup] < threshold)).all()
    assert (decided.certain == decided.certain_eval).all()
    assert np.allclose(decided.bmh, decided.bmh_eval) and np.allclose(decided.pixel_mad, decided.pixel_mad_eval)


def test_overlaps_table_and_reviewable_truth(run):
    root, paths, out, _, messages = run
    table = pq.read_table(out["overlaps_path"])
    assert table.schema == OVERLAP_SCHEMA
    found = table.to_pandas()
    assert (found.is_dup.isna() == (found.n_informative == 0)).all()
    decided = found[found.is_dup.notna()]
    assert (decided.is_dup == (decided.score >= 0.5)).all()
    # the dup_truth file reads back as a truth file: the decided overlaps, undecidable ones commented out
    back, skips = read_truth(root / "found.txt")
    assert not skips
    assert sorted(zip(back.img1, back.img2, back.tag, back.is_dup)) == \
        sorted(zip(decided.img1, decided.img2, decided.tag, decided.is_dup.astype(bool)))
    assert (root / "found.txt").read_text().count("undecidable") == int(found.is_dup.isna().sum())
    # each chip decoded at most once although the candidates were scored 3 at a time
    decodes, images = map(int, re.search(r"(\d+) chips decoded for (\d+) images", messages[-1]).groups())
    assert 0 < decodes <= images


def test_dup_truth_written_a_batch_at_a_time_is_the_same_file(run, tmp_path):
    root, _, out, _, _ = run
    overlaps = pq.read_table(out["overlaps_path"])
    assert overlaps.num_rows > 2 * 3
    write_truth(overlaps, 0.5, tmp_path / "found.txt", batch=3)
    assert (tmp_path / "found.txt").read_text() == (root / "found.txt").read_text()


def test_held_chips_bounds_the_chips_kept_between_steps(run, tmp_path, caplog):
    """With no chip kept for later steps, chips are decoded again where a later step needs them;
    the table is the same."""
    root, paths, out, _, _ = run
    with caplog.at_level(logging.INFO, logger="tiledup.discovery.verify"):
        verify(out["candidates_path"], paths["images_dir"], paths["model_path"], paths["tiles_paths"],
               tmp_path / "overlaps.parquet", tmp_path / "found.txt", workers=1, evidence=options("evidence"),
               **options("verify", device="cpu", batch_size=16, chunk=3, held_chips=0))
    decodes, images = map(int, re.search(r"(\d+) chips decoded for (\d+) images", caplog.messages[-1]).groups())
    assert decodes > images
    assert pq.read_table(tmp_path / "overlaps.parquet").equals(pq.read_table(out["overlaps_path"]))


def test_worker_processes_give_the_same_outputs(run, tmp_path, caplog, monkeypatch):
    """verify's worker processes (the rule's threads) score jobs of chunks apart: the same table and
    dup_truth file, bit for bit, as one process; no candidate lost or scored twice."""
    import tiledup.discovery.verify as module

    root, paths, out, _, _ = run
    monkeypatch.setattr(module, "PARALLEL_CHUNKS", 2)  # this case has 5 chunks, a dataset hundreds
    with caplog.at_level(logging.INFO, logger="tiledup.discovery.verify"):
        verify(out["candidates_path"], paths["images_dir"], paths["model_path"], paths["tiles_paths"],
               tmp_path / "overlaps.parquet", tmp_path / "found.txt", evidence=options("evidence"), workers=2,
               **options("verify", device="cpu", batch_size=16, chunk=3))
    assert re.search(r"by 2 process\(es\)", caplog.messages[-1])
    assert pq.read_table(tmp_path / "overlaps.parquet").equals(pq.read_table(out["overlaps_path"]))
    assert (tmp_path / "found.txt").read_text() == (root / "found.txt").read_text()


def test_only_placing_overlaps_order_the_chips():
    """Two scenes, chips 0-9 and 10-19 each overlapping their next two, and lone matches joining
    the scenes at random: ordered by the placing overlaps, the first scene's overlaps fill chunks of
    their own; ordered by every overlap, the chance matches mix the scenes into one chunk."""
    rng = np.random.default_rng(0)
    chain = [(k, k + 1) for k in range(9)] + [(k, k + 2) for k in range(8)]  # 17 overlaps a scene
    pairs = chain + [(a + 10, b + 10) for a, b in chain] + [(int(rng.integers(0, 10)), int(rng.integers(10, 20)))
                                                           for _ in range(30)]
    img1, img2 = (np.array(x) for x in zip(*pairs))
    placing = np.arange(len(pairs)) < 2 * len(chain)

    def scenes(chunk_of):  # the scenes of the placing overlaps in each chunk
        return [set((img1[placing & (chunk_of == k)] >= 10).tolist()) for k in range(chunk_of.max() + 1)]

    assert all(len(s) <= 1 for s in scenes(chunks(img1, img2, 17, placing)))
    assert any(len(s) == 2 for s in scenes(chunks(img1, img2, 17)))
    assert np.bincount(chunks(img1, img2, 17, placing)).max() <= 17


def test_the_chip_order_does_not_change_the_decisions(run, tmp_path):
    """place_votes (only the overlaps that place their chips order the chunks) changes which overlaps
    share a DupNet batch, not what is decided; scores agree to float rounding."""
    root, paths, out, _, _ = run
    verify(out["candidates_path"], paths["images_dir"], paths["model_path"], paths["tiles_paths"],
           tmp_path / "overlaps.parquet", tmp_path / "found.txt", workers=1, evidence=options("evidence"),
           place_votes=options("candidates")["place_votes"], **options("verify", device="cpu", batch_size=16, chunk=3))
    a, b = (pq.read_table(p).to_pandas() for p in (tmp_path / "overlaps.parquet", out["overlaps_path"]))
    assert a.is_dup.equals(b.is_dup) and a.certain.equals(b.certain)
    assert np.allclose(a.score.fillna(-1), b.score.fillna(-1), atol=1e-6)
    assert (tmp_path / "found.txt").read_text() == (root / "found.txt").read_text()


def test_a_bad_number_of_workers_is_named(run, tmp_path):
    _, paths, out, _, _ = run
    with pytest.raises(TiledupError, match="verify: batch_size, chunk and workers must be >= 1.* 0, 500"):
        verify(out["candidates_path"], paths["images_dir"], paths["model_path"], paths["tiles_paths"],
               tmp_path / "overlaps.parquet", tmp_path / "found.txt", evidence=options("evidence"), workers=0,
               **options("verify", device="cpu"))


def test_a_bad_model_is_named_before_any_worker_starts(run, tmp_path):
    root, paths, out, _, _ = run
    bad = tmp_path / "dupnet.pt"
    bad.write_text("not a model")
    with pytest.raises(TiledupError, match="dupnet.pt: not a readable DupNet model"):
        verify(out["candidates_path"], paths["images_dir"], bad, paths["tiles_paths"], tmp_path / "overlaps.parquet",
               tmp_path / "found.txt", evidence=options("evidence"), workers=2, **options("verify", device="cpu"))
    assert not (tmp_path / "overlaps.parquet").exists()


def test_discovery_figures_and_report_section(run):
    root, _, out, metrics, _ = run
    d = metrics["discovery"]
    assert d["counts"]["candidates"] == pq.read_table(out["candidates_path"]).num_rows
    dec = d["decisions"]
    assert dec["tp"] + dec["fn"] == d["candidates"]["n_truth_dups_decidable"]
    assert dec["tp"] + dec["fp"] == dec["n_found_dups"]
    assert d["groups"]["n_groups"] == pq.read_table(out["groups_path"]).to_pandas().group.nunique()
    assert d["split"]["leaked_decided_duplicates"] == 0 and d["split"]["truth"]["truth_duplicate_overlaps"] > 0
    html = (root / "eval" / "report.html").read_text()
    assert 'id="discovery"' in html and "candidate recall" in html


def test_report_leads_with_what_was_found(run):
    """The dataset's result comes first: summary, duplicates found, groups with each chip's id, conflicts,
    undecidable overlaps; then the model and the evaluation."""
    root, _, out, _, _ = run
    found = pq.read_table(out["overlaps_path"]).to_pandas()
    groups = pq.read_table(out["groups_path"]).to_pandas()
    html = (root / "eval" / "report.html").read_text()
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert ids[:5] == ["duplicates", "groups", "conflicts", "undecidable", "model"], ids
    assert ids.index("metrics") > ids.index("model")
    n_dups = int(found.is_dup.fillna(False).sum())
    summary = html[html.index('class="summary"'):html.index("<nav")]
    assert f"{n_dups} duplicate overlaps between" in summary and f"of {len(found)} candidate overlaps" in summary
    assert "leak check: " in summary and 'href="../duplicates.json"' in summary
    assert f"Duplicates found ({n_dups})" in html and html.count('<figure class="card">') >= min(n_dups, 48)
    # each mosaic names its chips: every chip of a shown group has its id on the page
    big = groups[groups.n_images > 1]
    shown = re.findall(r'<span class="chip-id"[^>]*>([^<]+)</span>', html)
    assert big.image_id.str.removesuffix(".jpg").isin(shown).all() and len(shown) == len(big)


def test_mosaic_puts_each_chip_at_its_offset():
    red, blue = np.zeros((768, 768, 3), np.uint8), np.zeros((768, 768, 3), np.uint8)
    red[..., 0], blue[..., 2] = 200, 200
    canvas = stitch([(red, 0, 0), (blue, 1, 2)], tile_px=10)
    assert canvas.shape == (40, 50, 3)  # rows 0..3, cols 0..4 in tiles
    assert canvas[5, 5].tolist() == [200, 0, 0]   # red alone
    assert canvas[25, 35].tolist() == [0, 0, 200]  # blue, drawn over red where they overlap
    assert canvas[35, 5].tolist() == [255, 255, 255]  # no chip there


def test_compare_prints_every_decidable_overlap_with_the_models_tile_scores(run, capsys):
    _, paths, _, _, _ = run
    a, b = paths["images_dir"] / "a00000001.jpg", paths["images_dir"] / "a00000002.jpg"
    assert cli.main(["compare", str(a), str(b), "--model", str(paths["model_path"]), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line for line in text.splitlines() if re.match(r"\s+\d\d\s", line)}
    assert set(rows) == set(TAGS)  # textured sea: every overlap decidable
    model = load_dupnet(paths["model_path"], "cpu")
    ta, tb = cut_tiles(read_chip(a)), cut_tiles(read_chip(b))
    pairs = tag_tile_pairs("18")
    want = predict(model, np.stack([ta[i] for i, _ in pairs]), np.stack([tb[j] for _, j in pairs]), 64)
    got = [float(x.split(":")[1].rstrip("=")) for x in rows["18"].split()[8:]]
    assert np.allclose(got, want, atol=1e-3)
    best = max(rows, key=lambda t: float(rows[t].split()[4]))
    assert f"best: tag {best} " in text
    assert "(DupNet threshold 0.5)" in text  # the config's verify.dupnet_threshold


def test_compare_reads_the_workflows_config_file(run, capsys, caplog, tmp_path):
    """--configfile: its verify block (over config/config.yaml's) decides; a broken file is named."""
    _, paths, _, _, _ = run
    a, b = paths["images_dir"] / "a00000001.jpg", paths["images_dir"] / "a00000002.jpg"
    mine = tmp_path / "mine.yaml"
    mine.write_text("verify: {dupnet_threshold: 0.9, device: cpu}\n")
    assert cli.main(["compare", str(a), str(b), "--model", str(paths["model_path"]), "--configfile", str(mine)]) == 0
    assert "(DupNet threshold 0.9)" in capsys.readouterr().out
    mine.write_text("verify: {dupnet_treshold: 0.9}\n")
    assert cli.main(["compare", str(a), str(b), "--model", str(paths["model_path"]), "--configfile", str(mine)]) == 2
    assert f"invalid config file {mine}" in caplog.text and "did you mean `verify.dupnet_threshold`" in caplog.text


def test_compare_without_a_model_uses_the_packaged_one(tmp_path, monkeypatch, capsys):
    """Outside a workflow's folder (no results/model/dupnet.pt here), `tiledup compare` needs no --model:
    the packaged DupNet decides the real duplicate tests/data's README names."""
    images = Path(__file__).parent / "data" / "airbus_samples"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compare", str(images / "908f11dd6.jpg"), str(images / "c5d9bc753.jpg"), "--device", "cpu"]) == 0
    assert "best: tag 02 " in capsys.readouterr().out


def test_compare_names_an_unreadable_chip(run, tmp_path, caplog):
    _, paths, _, _, _ = run
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg")
    assert cli.main(["compare", str(bad), str(paths["images_dir"] / "a00000001.jpg"),
                     "--model", str(paths["model_path"])]) == 2
    assert "x.jpg: not a JPEG" in caplog.text


def test_truth_scores_are_unaffected_by_discovery(run):
    root, _, _, metrics, _ = run
    scores = pd.read_parquet(root / "eval" / "scores.parquet")
    assert metrics["n_overlaps"] == len(scores)


@pytest.mark.parametrize("with_layout", [True, False])
def test_purity_when_verify_found_no_duplicate(with_layout):
    """No duplicate found: every chip is its own group, nothing is impure (and nothing crashes)."""
    from tiledup.evaluate.discovery_figures import purity

    groups = pd.DataFrame({"image_id": ["a.jpg", "b.jpg"], "group": [0, 1], "row": [0, 0], "col": [0, 0],
                           "n_images": [1, 1]})
    overlaps = pd.DataFrame({"img1": ["a.jpg"], "img2": ["b.jpg"], "tag": ["08"], "is_dup": [False]})
    truth = pd.DataFrame({"img1": ["a.jpg"], "img2": ["b.jpg"], "tag": ["08"], "is_dup": [True]})
    layout = pd.DataFrame({"image_id": ["a.jpg", "b.jpg"], "scene": [0, 0], "pass": [0, 0]}) if with_layout else None
    out = purity(groups, overlaps, truth, layout)
    assert out["n_groups"] == 2 and out["n_multi_image_groups"] == 0 and out["n_impure"] == 0


def test_a_persons_verdicts_are_the_truth_when_none_is_given(run, tmp_path):
    """Without a truth file the verdicts are read as a partial truth: scored like one, and verify's finds
    they do not list are unlabelled, never false."""
    root, paths, out, _, _ = run
    lines = [line for line in paths["truth_path"].read_text().splitlines() if line and not line.startswith("#")]
    verdicts = tmp_path / "verdicts.txt"
    verdicts.write_text("\n".join(lines[:3]) + "\n")
    args = {**paths, "truth_path": None, "overlaps_path": None, "skipped_path": None, "layout_path": None}
    metrics = evaluate(**args, out_dir=tmp_path / "eval", device="cpu", batch_size=16, verdicts_path=verdicts,
                       truth_complete=True, discovery_paths={**out, "split_path": root / "split.csv"})
    assert metrics["truth"] == str(verdicts) and metrics["truth_is_verdicts"] and not metrics["truth_complete"]
    assert metrics["n_overlaps"] == 3 and "note" not in metrics
    dec = metrics["discovery"]["decisions"]
    assert not dec["truth_complete"] and dec["fp_not_in_truth"] == 0
    labelled = {tuple(line.split()[:3]) for line in lines[:3]}
    found = pq.read_table(out["overlaps_path"]).to_pandas()
    found = found[found.is_dup.fillna(False).astype(bool)]
    unlisted = sum((a, b, t) not in labelled for a, b, t in zip(found.img1, found.img2, found.tag))
    assert dec["n_unlabelled_found_dups"] == unlisted


def test_verify_with_no_candidates_writes_empty_outputs(run, tmp_path):
    """Chips that overlap nothing: no candidate, so an empty overlaps table and a truth of header lines only."""
    from tiledup.discovery.candidates import CANDIDATE_SCHEMA

    _, paths, out, _, _ = run
    empty = tmp_path / "candidates.parquet"
    pq.write_table(pq.read_table(out["candidates_path"]).schema.empty_table(), empty)
    assert pq.read_table(empty).num_rows == 0 and pq.read_table(empty).schema.equals(CANDIDATE_SCHEMA)
    verify(empty, paths["images_dir"], paths["model_path"], paths["tiles_paths"], tmp_path / "overlaps.parquet",
           tmp_path / "found.txt", workers=1, evidence=options("evidence"), **options("verify", device="cpu"))
    table = pq.read_table(tmp_path / "overlaps.parquet")
    assert table.num_rows == 0 and table.schema == OVERLAP_SCHEMA
    lines = (tmp_path / "found.txt").read_text().splitlines()
    assert lines and all(line.startswith("#") for line in lines)
    assert read_truth(tmp_path / "found.txt")[0].empty

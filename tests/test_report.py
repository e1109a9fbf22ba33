"""The evaluation report: overlap boxes, the channel subtraction view, and a self-contained page."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from tiledup.evaluate.evaluation import method_metrics, overlap_counts, verdict
from tiledup.scoring.overlaps import METHODS
from tiledup.grid import TAGS, partner_tag, tag_tile_pairs
from tiledup.tiles.rejects import summarise
from tiledup.report.page import ReportData, write_report, evaluate_and_report
from tiledup.report.pictures import DIFF_CLIP, _LUT, channel_subtraction, diverging, overlap_box, panel, panel_uri
from tiledup.report.html import render
from tiledup.report.view import rejects_section

from configured import options

REPORT_KEYS = ("gallery_errors", "gallery_correct", "gallery_duplicates", "list_cap", "thumb", "mosaics", "mosaic_tile")


def report_options(**changes) -> dict:
    """write_report's keywords: the `evaluate` block's report settings, its val_seed as the seed."""
    e = options("evaluate", **changes)
    return {**{k: e[k] for k in REPORT_KEYS}, "seed": e["val_seed"]}


def test_overlap_box_covers_exactly_the_tag_tiles():
    for tag in TAGS:
        y0, x0, y1, x1 = overlap_box(tag)
        covered = {3 * (y // 256) + x // 256 for y in range(y0, y1, 256) for x in range(x0, x1, 256)}
        assert covered == {t1 for t1, _ in tag_tile_pairs(tag)}, tag
        assert len(covered) == len(tag_tile_pairs(partner_tag(tag)))
    assert overlap_box("08") == (0, 0, 768, 768) and overlap_box("55") == (256, 512, 512, 768)


def test_channel_subtraction_is_signed_against_the_overlap_median():
    chip = np.zeros((768, 768, 3), np.uint8)
    chip[:256, :256] = (10, 20, 30)  # the overlap region of tag "00"
    chip[600, 600] = (4, 20, 30)
    out = channel_subtraction(chip, overlap_box("00"))
    assert out.dtype == np.float32 and out.shape == (768, 768)
    assert out[0, 0] == 0
    assert out[600, 600] == -2  # (4 - 10) / 3: darker than the median by 6 levels in R
    assert out[700, 10] == -20  # black: (-10 - 20 - 30) / 3, no uint8 wrap-around


def test_diverging_map_is_white_at_zero_signed_and_clipped():
    v = diverging(np.array([[-100, -DIFF_CLIP, -DIFF_CLIP / 4, 0, DIFF_CLIP / 4, DIFF_CLIP, 100]], np.float32))[0]
    assert (v[3] > 240).all()  # as the median: white
    assert tuple(v[0]) == tuple(v[1]) and tuple(v[5]) == tuple(v[6])  # clipped, never wrapped
    assert v[5][0] > v[5][2] and v[1][2] > v[1][0]  # brighter red, darker blue
    assert v[4][0] > v[4][2] and v[2][2] > v[2][0]
    # a quarter of the clip is half way to full colour (square-root scale)
    assert tuple(v[4]) == tuple(_LUT[191]) and tuple(v[2]) == tuple(_LUT[64])
    # dark sea one level below its median stays pale (the seed's view made it 255 = noise)
    assert (diverging(np.array([[-1.0]]))[0, 0] > 200).all()


def test_panel_draws_both_boxes(airbus_chips):
    from tiledup.tiles.decode import read_chip

    a, b = read_chip(airbus_chips[0]), read_chip(airbus_chips[1])
    pic = panel(a, b, "38", thumb=192)
    assert pic.shape == (2 * 192 + 4, 2 * 192 + 4, 3)
    yellow = np.all(pic == (255, 220, 0), axis=2)
    # image 1's box starts one third down its chip ("38"), image 2's ends two thirds down ("05")
    assert yellow[64, :192].sum() > 100 and yellow[64, 196:].sum() < 10
    assert yellow[127, 196:].sum() > 100


@pytest.fixture
def report_inputs(airbus_chips):
    """Four overlaps between real chips; DupNet wrong on the last two, one overlap undecidable."""
    names = [p.name for p in airbus_chips[:5]]
    scored = pd.DataFrame({
        "img1": names[:4], "img2": names[1:5], "tag": ["08", "38", "05", "18"],
        "is_dup": [True, False, True, False], "line": [f"t:{i}" for i in range(1, 5)],
        "n_tile_pairs": [9, 6, 3, 6], "n_informative": [9, 6, 3, 0], "decidable": [True] * 3 + [False],
    })
    rng = np.random.default_rng(0)
    for m in METHODS:
        scored[m] = np.r_[rng.uniform(0, 1, 3), np.nan].astype(np.float32)
    scored.loc[:2, "dupnet"] = [0.9, 0.8, 0.1]  # overlap 2 (not dup) and 3 (dup) are DupNet errors
    decided = scored[scored.decidable]
    methods = {m: method_metrics(decided.is_dup.to_numpy(bool), decided[m].to_numpy(float), 0.5)
               for m in METHODS}
    metrics = {
        "n_overlaps": 4, "n_undecidable": 1, "n_decidable": 3, "n_dup": 2, "n_nondup": 1, "truth": "t",
        "counts": overlap_counts(scored),
        "skipped_truth_lines": [{"line": "t:9", "text": "x", "reason": "expected 4 fields"}],
        "undecidable": [{"img1": names[3], "img2": names[4], "tag": "18", "is_dup": False}],
        "rejects": summarise([{"image_id": "empty.jpg", "reason": "empty file", "shard": 1}], 6),
        "threshold_rule": "Youden's J", "methods": methods, "dupnet_beats_every_baseline": verdict(methods),
        "validation": {"n_pairs": 10, "n_dup": 5, "methods": {m: {"threshold": 0.5, "accuracy": 0.9, "roc_auc": 0.95}
                                                              for m in METHODS}},
    }
    return scored, metrics, airbus_chips[0].parent


def test_page_opens_with_summary_and_contents_then_every_section(report_inputs, tmp_path):
    scored, metrics, images = report_inputs
    write_report(scored, metrics, images, tmp_path, **report_options(gallery_correct=5, thumb=96))
    page_ = (tmp_path / "report.html").read_text()
    body = page_.split("<body>", 1)[1]
    assert body.index('class="summary"') < body.index('<nav class="toc">') < body.index("<section")
    toc = re.findall(r'<li><a href="#([^"]+)">([^<]+)</a></li>', page_)
    sections = re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>', page_)
    assert toc == sections and len(set(toc)) == len(toc)
    titles = iter(t for _, t in toc)  # these in this order (other sections may sit between them)
    assert all(any(t == want for t in titles) for want in [
        "The model: DupNet and the thresholds", "Metrics (decidable overlaps)", "ROC and precision-recall",
        "Confusion matrices", "DupNet errors (2)", "A sample of correct DupNet decisions (1 of 1)",
        "Undecidable truth overlaps (1)", "Rejected images (1 of 6)", "Skipped truth lines (1)"])
    # counts that add up: all = decidable + undecidable, per class
    summary = body[:body.index("<nav")]
    assert ("4 labelled overlaps (2 duplicates + 2 not) = 3 decidable (2 duplicates + 1 not) "
            "+ 1 undecidable (0 duplicates + 1 not;") in summary
    assert "2 errors in 3 decidable overlaps (1 false duplicate, 1 missed duplicate)" in summary
    assert "6 in " in summary and "1 rejected" in summary
    # the gallery is a grid that fills the width; long lists fold away
    assert "grid-template-columns:repeat(auto-fill" in page_
    assert page_.count('<figure class="card">') == 3 and "How to read a panel" in page_ and "colour scale" in page_
    assert re.search(r"<details><summary>Show 1 overlaps</summary>.*<td>18</td>", page_, re.S)
    srcs = re.findall(r'src="([^"]*)"', page_)
    assert srcs and all(s.startswith("data:image/") for s in srcs)  # nothing outside the page
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "pr.png").stat().st_size
    best = max(v["accuracy"] for v in metrics["methods"].values())
    assert f'<td class="best">{best:.4f}</td>' in page_


def test_page_escapes_what_it_shows(report_inputs, tmp_path):
    """Names come from the user's folder and truth file: the templates escape them."""
    scored, metrics, images = report_inputs
    metrics = {**metrics, "skipped_truth_lines": [{"line": "t:9", "text": "x", "reason": "<script>alert(1)</script>"}]}
    write_report(scored, metrics, images, tmp_path, **report_options(gallery_errors=0, gallery_correct=0))
    page_ = (tmp_path / "report.html").read_text()
    assert "<script>" not in page_ and "&lt;script&gt;alert(1)&lt;/script&gt;" in page_


def test_errors_csv_lists_every_error_in_gallery_order(report_inputs, tmp_path):
    scored, metrics, images = report_inputs
    write_report(scored, metrics, images, tmp_path, **report_options(gallery_errors=1, gallery_correct=0, thumb=64))
    page_ = (tmp_path / "report.html").read_text()
    assert "Showing the 1 most confident of 2 errors" in page_ and page_.count('<figure class="card">') == 1
    errors = pd.read_csv(tmp_path / "errors.csv", dtype={"tag": str})
    # DupNet said 0.8 for a non-duplicate and 0.1 for a duplicate: both wrong at 0.5, 0.4 the surer
    assert list(errors["rank"]) == [1, 2] and list(errors.kind) == ["missed duplicate", "false duplicate"]
    assert list(errors.tag) == ["05", "38"] and list(errors.source) == ["t:3", "t:2"]
    assert list(errors.columns[:8]) == ["rank", "kind", "img1", "img2", "tag", "is_dup", "n_tile_pairs",
                                        "n_informative"] and "dupnet" in errors.columns
    assert "#1 missed duplicate" in page_


def test_no_truth_page(report_inputs, tmp_path):
    scored, metrics, images = report_inputs
    metrics = {**metrics, "truth": None, "methods": {}, "undecidable": [], "skipped_truth_lines": [],
               "note": "no truth given: config key `truth` is empty", "counts": overlap_counts(scored.iloc[:0])}
    write_report(scored.iloc[:0], metrics, images, tmp_path, **report_options())
    text = (tmp_path / "report.html").read_text()
    assert "No truth was given, so nothing above is checked against labels" in text
    assert "no overlap was scored" not in text
    assert re.findall(r'<li><a href="#([^"]+)">', text)[:1] == ["model"]
    assert "errors" not in re.findall(r'<section id="([^"]+)"', text)
    assert (tmp_path / "errors.csv").read_text().splitlines()[0].startswith("rank,kind,img1,img2,tag")
    assert len((tmp_path / "errors.csv").read_text().splitlines()) == 1


def test_default_gallery_keeps_the_page_under_5_mb_on_real_chips(report_inputs, airbus_chips, tmp_path):
    """The default caps times the largest panel and mosaic of real (busy, textured) chips, plus the rest."""
    from tiledup.report.mosaics import mosaic

    scored, metrics, images = report_inputs
    defaults = options("evaluate")
    n_cards = defaults["gallery_errors"] + defaults["gallery_correct"]
    pairs = list(zip([p.name for p in airbus_chips[:-1]], [p.name for p in airbus_chips[1:]]))
    largest = max(len(panel_uri(images, a, b, "08", defaults["thumb"])[0]) + 300 for a, b in pairs)
    largest_found = max(len(panel_uri(images, a, b, "08", defaults["thumb"], maps=False)[0]) + 300 for a, b in pairs)
    # the worst mosaic: 5 x 5 real chips side by side, 960 x 960 px of texture
    members = pd.DataFrame({"image_id": [airbus_chips[k % 24].name for k in range(25)],
                            "row": [3 * (k // 5) for k in range(25)], "col": [3 * (k % 5) for k in range(25)]})
    one_mosaic = len(mosaic(members, images, defaults["mosaic_tile"], 960)["src"]) + 25 * 150
    write_report(scored, metrics, images, tmp_path, **report_options(gallery_errors=0, gallery_correct=0))
    rest = (tmp_path / "report.html").stat().st_size
    total = (rest + n_cards * largest + defaults["gallery_duplicates"] * largest_found
             + defaults["mosaics"] * one_mosaic)
    assert total <= 5_000_000, (rest, n_cards, largest, largest_found, one_mosaic)


def test_rejects_section_counts_reasons_and_caps_the_names(report_inputs, tmp_path):
    scored, metrics, images = report_inputs
    rejects = [{"image_id": f"{i:09x}.jpg", "reason": f"corrupt JPEG (marker {i})", "shard": 0} for i in range(60)]
    rejects.append({"image_id": "&<b>.jpg", "reason": "size 512x512, expected 768x768", "shard": 2})

    def section(summary):
        data = ReportData(scored=scored, metrics={**metrics, "rejects": summary}, images_dir=images,
                          out_dir=tmp_path, errors=scored.iloc[:0], **report_options(gallery_errors=0, gallery_correct=0))
        s = rejects_section(data, show=50)
        return s["id"], s["title"], render(s["template"], s=s)

    sid, title, html = section(summarise(rejects, 100))
    assert sid == "rejects" and title == "Rejected images (61 of 100)"
    assert "<td>corrupt JPEG</td><td>60</td>" in html and "<td>size 512x512, expected 768x768</td><td>1</td>" in html
    assert html.count("corrupt JPEG (marker") == 50 - 1 and "&amp;&lt;b&gt;.jpg" in html  # sorted: first
    assert "The first 50 of 61" in html
    _, title, html = section(summarise([], 7))
    assert title == "Rejected images (0 of 7)" and "accepted every image" in html

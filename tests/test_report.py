"""The evaluation report: overlap boxes, the channel subtraction view, and a self-contained page."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from tiledup.evaluate import method_metrics, verdict
from tiledup.overlaps import METHODS
from tiledup.grid import TAGS, partner_tag, tag_tile_pairs
from tiledup.rejects import summarise
from tiledup.report import channel_subtraction, overlap_box, panel, rejects_section, write_report


def test_overlap_box_covers_exactly_the_tag_tiles():
    for tag in TAGS:
        y0, x0, y1, x1 = overlap_box(tag)
        covered = {3 * (y // 256) + x // 256 for y in range(y0, y1, 256) for x in range(x0, x1, 256)}
        assert covered == {t1 for t1, _ in tag_tile_pairs(tag)}, tag
        assert len(covered) == len(tag_tile_pairs(partner_tag(tag)))
    assert overlap_box("08") == (0, 0, 768, 768) and overlap_box("55") == (256, 512, 512, 768)


def test_channel_subtraction_uses_the_overlap_median_and_wraps():
    chip = np.zeros((768, 768, 3), np.uint8)
    chip[:256, :256] = (10, 20, 30)  # the overlap region of tag "00"
    chip[600, 600] = (5, 25, 30)
    out = channel_subtraction(chip, overlap_box("00"))
    assert tuple(out[0, 0]) == (0, 0, 0)
    assert tuple(out[600, 600]) == (251, 5, 0)  # 5 - 10 wraps to 251
    assert tuple(out[700, 10]) == (246, 236, 226)  # 0 - (10, 20, 30), wrapped


def test_panel_draws_both_boxes(airbus_chips):
    from tiledup.images import read_chip

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
        "skipped_truth_lines": [{"line": "t:9", "text": "x", "reason": "expected 4 fields"}],
        "undecidable": [{"img1": names[3], "img2": names[4], "tag": "18", "is_dup": False}],
        "rejects": summarise([{"image_id": "empty.jpg", "reason": "empty file", "shard": 1}], 6),
        "threshold_rule": "Youden's J", "methods": methods, "dupnet_beats_every_baseline": verdict(methods),
        "validation": {"n_pairs": 10, "n_dup": 5, "methods": {m: {"threshold": 0.5, "accuracy": 0.9, "roc_auc": 0.95}
                                                              for m in METHODS}},
    }
    return scored, metrics, airbus_chips[0].parent


def test_report_has_every_section_and_is_self_contained(report_inputs, tmp_path):
    scored, metrics, images = report_inputs
    write_report(scored, metrics, images, tmp_path, gallery_correct=5, thumb=96)
    page = (tmp_path / "report.html").read_text()
    for heading in ("Metrics (decidable overlaps)", "ROC and precision-recall", "Confusion matrices",
                    "DupNet errors (2)", "A sample of correct DupNet decisions (1 of 1)",
                    "Undecidable overlaps (1)", "Skipped truth lines (1)", "Rejected images (1 of 6)",
                    "Limitation"):
        assert heading in page, heading
    assert page.count("<figure ") == 3 and "average channel subtraction" in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/") for s in srcs)  # nothing outside the page
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "pr.png").stat().st_size
    # the best accuracy among the methods is highlighted in its column
    best = max(v["accuracy"] for v in metrics["methods"].values())
    assert f'<td class="best">{best:.4f}</td>' in page


def test_gallery_cap_is_announced(report_inputs, tmp_path):
    scored, metrics, images = report_inputs
    write_report(scored, metrics, images, tmp_path, gallery_errors=1, gallery_correct=0, thumb=64)
    page = (tmp_path / "report.html").read_text()
    assert "Showing the 1 most confident of 2 errors" in page and page.count("<figure ") == 1


def test_rejects_section_counts_reasons_and_caps_the_names():
    rejects = [{"image_id": f"{i:09x}.jpg", "reason": f"corrupt JPEG (marker {i})", "shard": 0} for i in range(60)]
    rejects.append({"image_id": "&<b>.jpg", "reason": "size 512x512, expected 768x768", "shard": 2})
    html = rejects_section(summarise(rejects, 100), show=50)
    assert html.startswith('<section id="rejects">') and html.endswith("</section>")
    assert "Rejected images (61 of 100)" in html
    assert "<td>corrupt JPEG</td><td>60</td>" in html and "<td>size 512x512, expected 768x768</td><td>1</td>" in html
    assert html.count("<td>corrupt JPEG (marker") == 50 - 1 and "&amp;&lt;b&gt;.jpg" in html  # sorted: first
    assert "The first 50 of 61" in html
    none = rejects_section(summarise([], 7))
    assert "Rejected images (0 of 7)" in none and "accepted every image" in none

"""A person's verdicts reach what the user takes away, not only the groups: duplicates.json, removable.txt,
the run summary and the report follow the decisions after the verdicts, on tests/data's real chips."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tiledup.discovery.candidates import find_candidates
from tiledup.discovery.exports import write_exports
from tiledup.discovery.groups import groups_rule
from tiledup.discovery.summary import counted, found, read_found, summary_lines
from tiledup.discovery.verify import verify
from tiledup.model.pretrained import PACKAGED
from tiledup.report.page import write_report

from configured import options
from test_pairs import tiles_of_chips
from test_report import report_inputs, report_options  # noqa: F401 (report_inputs: a fixture)


@pytest.fixture(scope="module")
def verified(tmp_path_factory, airbus_chips):
    """The 24 real chips tiled, their candidates, and verify's decisions with the shipped DupNet."""
    root = tmp_path_factory.mktemp("verdicts")
    tiles_of_chips(airbus_chips, root)
    tiles = [root / "tiles.parquet"]
    find_candidates(tiles, root / "candidates.parquet", **options("candidates"))
    verify(root / "candidates.parquet", airbus_chips[0].parent, PACKAGED, tiles, root / "overlaps.parquet",
           root / "found.txt", workers=1, evidence=options("evidence"), **options("verify", device="cpu"))
    return root, tiles, pq.read_table(root / "overlaps.parquet").to_pandas()


def discover(root, tiles, out, verdicts=None) -> dict:
    """groups, split and exports into `out` (with a person's verdicts, when given): their paths."""
    out.mkdir()
    paths = {k: out / name for k, name in (("groups", "groups.parquet"), ("split", "split.csv"),
                                           ("conflicts", "conflicts.parquet"), ("duplicates", "duplicates.json"),
                                           ("removable", "removable.txt"))}
    groups_rule(root / "overlaps.parquet", tiles, paths["groups"], paths["split"], paths["conflicts"],
                out / "leaks.json", root / "candidates.parquet", verdicts_path=verdicts,
                place_votes=options("candidates")["place_votes"], **options("groups"))
    write_exports(root / "overlaps.parquet", paths["groups"], tiles, paths["duplicates"], paths["removable"],
                  verdicts_path=verdicts)
    return paths


def partners(dmap, a, b) -> list[dict]:
    return [e for e in dmap[a] if e["image"] == b]


def test_verdicts_flip_verify_both_ways_in_the_exports_summary_and_report(verified, report_inputs, tmp_path):
    root, tiles, overlaps = verified
    decided = overlaps[overlaps.is_dup.notna()]
    dups = decided[decided.is_dup.astype(bool)]
    assert len(dups) >= 2, "verify finds the real duplicates of tests/data"
    # one duplicate verify found, overruled; one full overlap verify rejected, and one pair of chips that
    # is not even a candidate, both called duplicates (a person's claims: what matters is that they reach)
    gone = dups.iloc[0]
    missed = decided[~decided.is_dup.astype(bool) & (decided.tag == "08")].iloc[0]
    pairs = set(zip(overlaps.img1, overlaps.img2))
    ids = sorted(set(pq.read_table(tiles[0]).column("image_id").to_pylist()))
    new = next((a, b) for k, a in enumerate(ids) for b in ids[k + 1:] if (a, b) not in pairs)
    verdicts = tmp_path / "verdicts.txt"
    verdicts.write_text(f"{gone.img1} {gone.img2} {gone.tag} 0\n{missed.img1} {missed.img2} 08 1\n"
                        f"{new[1]} {new[0]} 08 1\n")  # the other way round: the same overlap

    before = discover(root, tiles, tmp_path / "verify")
    after = discover(root, tiles, tmp_path / "verdicts", verdicts)

    dmap0, dmap1 = (json.loads(p["duplicates"].read_text()) for p in (before, after))
    assert partners(dmap0, gone.img1, gone.img2) and not partners(dmap1, gone.img1, gone.img2)
    assert not partners(dmap1, gone.img2, gone.img1)
    assert not partners(dmap0, missed.img1, missed.img2)
    assert dmap1[missed.img1][0] == {"image": missed.img2, "tag": "08", "score": round(float(missed.score), 4),
                                     "by": "verdict"}  # a person's verdict first
    assert partners(dmap1, missed.img2, missed.img1) == [{"image": missed.img1, "tag": "08",
                                                          "score": round(float(missed.score), 4), "by": "verdict"}]
    assert partners(dmap1, *new) == [{"image": new[1], "tag": "08", "score": None, "by": "verdict"}]
    assert sum(map(len, dmap0.values())) == 2 * len(dups)
    assert sum(map(len, dmap1.values())) == 2 * (len(dups) - 1 + 2)
    assert all("by" not in e for entries in dmap0.values() for e in entries)

    # full-overlap duplicates by verdict: each pair sits at one position, the larger id is safe to drop
    drop0, drop1 = (p["removable"].read_text().split() for p in (before, after))
    assert missed.img2 not in drop0 and new[1] not in drop0
    assert missed.img2 in drop1 and new[1] in drop1 and missed.img1 not in drop1 and new[0] not in drop1

    # the summary counts the decisions after the verdicts, and says how many were a person's
    f0 = read_found(root / "overlaps.parquet", before["groups"], before["split"], before["conflicts"])
    f1 = read_found(root / "overlaps.parquet", after["groups"], after["split"], after["conflicts"], verdicts)
    assert f0["duplicates"] == len(dups) and f0["verdicts"] == 0
    assert f1["duplicates"] == len(dups) + 1 and f1["duplicates_by_verdicts"] == 2 and f1["verdicts"] == 3
    assert f1["candidates"] == f0["candidates"] == len(overlaps)  # the pair that was not one is not counted
    assert f1["leaks"]["overlaps"] == 0  # the split follows the same decisions
    line0 = summary_lines(f0, before["split"], "r.html")[0]
    line1 = summary_lines(f1, after["split"], "r.html")[0]
    assert line0.startswith(f"Duplicates found: {counted(len(dups), 'overlap')} between") and "verdicts" not in line0
    assert line1.startswith(f"Duplicates found: {len(dups) + 1} overlaps (2 by a person's verdicts) between")

    # the report: the same counts, and the gallery says who decided
    scored, metrics, images = report_inputs
    metrics = {**metrics, "truth": None, "methods": {}, "undecidable": [], "skipped_truth_lines": [],
               "note": "no truth given: config key `truth` is empty", "counts": {}}
    write_report(scored.iloc[:0], metrics, images, tmp_path / "eval",
                 found_paths={"overlaps": root / "overlaps.parquet", **after, "verdicts": verdicts},
                 **report_options(thumb=64))
    page = (tmp_path / "eval" / "report.html").read_text()
    summary = page[page.index('class="summary"'):page.index("<nav")]
    assert f"{len(dups) + 1} duplicate overlaps (2 by a person&#39;s verdicts) between" in summary
    assert f"of {len(overlaps)} candidate overlaps scored by DupNet" in summary
    gallery = page[page.index('<section id="duplicates">'):page.index('<section id="groups">')]
    assert "then the 2 that a person's verdicts decided" in gallery
    assert f"Duplicates found ({len(dups) + 1})" in gallery and gallery.count('<figure class="card">') == len(dups) + 1
    by_person = re.findall(r"a person&#39;s verdict[^<]*", gallery)
    assert sorted(by_person) == ["a person&#39;s verdict", f"a person&#39;s verdict (verify: DupNet {missed.score:.3f})"]
    assert f"{gone.img1} × {gone.img2}" not in gallery


def test_the_summary_says_one_in_the_singular():
    overlaps = pd.DataFrame({"img1": ["a.jpg", "a.jpg"], "img2": ["b.jpg", "c.jpg"], "tag": ["08", "38"],
                             "score": [0.9, None], "is_dup": [True, None], "verdict": False, "candidate": True})
    groups = pd.DataFrame({"image_id": ["a.jpg", "b.jpg", "c.jpg"], "group": [0, 1, 2], "n_images": 1})
    split = pd.DataFrame({"image_id": ["a.jpg", "b.jpg", "c.jpg"], "group": [0, 1, 2],
                          "split": ["train", "test", "train"]})
    conflicts = pd.DataFrame({"kind": ["outweighed by non-duplicates"]})
    lines = summary_lines(found(overlaps, groups, split, conflicts), "split.csv", "report.html", "removable.txt", 1)
    assert lines[0] == ("Duplicates found: 1 overlap between 2 of 3 chips (1 overlap undecidable); "
                        "1 chip safe to drop: removable.txt")
    assert "; 1 decided overlap overruled in the mosaics" in lines[1]
    assert lines[2].endswith("; 1 found duplicate crosses two splits (2 chips)")
    assert counted(0, "group") == "0 groups" and counted(1_234, "chip") == "1,234 chips"

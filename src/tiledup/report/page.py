"""The report: one self-contained HTML page (images inline), plus errors.csv, roc.png and pr.png beside it.

It leads with the user's dataset: a summary (chips, duplicates found, groups,
the split and its leak check, conflicts, undecidable overlaps, rejects, the
model), the duplicates found as a gallery, the groups as mosaics, the
conflicts and undecidable overlaps; then the model and, with a truth, the
evaluation (metrics, curves, confusion, errors by kind, error gallery).
tiledup.report.view computes every figure and text as plain data;
templates/*.html.j2 lay it out (Jinja2, autoescaped).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tiledup.evaluate.evaluation import evaluate
from tiledup.run.io import atomic_path, write_text
from tiledup.report.html import render
from tiledup.report.pictures import curves, legend
from tiledup.report.view import dupnet_first, page_view

log = logging.getLogger(__name__)


@dataclass
class ReportData:
    """Everything the page shows; found_paths = the run's discovery files (overlaps, groups, split,
    conflicts, duplicates, removable, and a person's verdicts if any), absent when the report is written
    without them."""

    scored: pd.DataFrame  # one row per truth overlap: scores.parquet's columns, `line` for its source
    metrics: dict  # metrics.json
    images_dir: Path
    out_dir: Path
    errors: pd.DataFrame  # DupNet's errors among the decidable overlaps, most confident first
    # the `evaluate` block's report settings (config/config.yaml)
    gallery_errors: int
    gallery_correct: int
    gallery_duplicates: int
    list_cap: int
    thumb: int
    mosaics: int
    mosaic_tile: int
    seed: int
    roc: bytes = b""
    pr: bytes = b""
    found_paths: dict = field(default_factory=dict)

    @property
    def has_truth(self) -> bool:
        return bool(self.metrics["methods"])

    @property
    def legend(self) -> dict:
        return legend()


def dupnet_errors(scored: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """DupNet's wrong decisions among the decidable overlaps, most confident first, with kind and margin."""
    decided = scored[scored.decidable]
    pred = decided.dupnet >= threshold
    wrong = decided[pred != decided.is_dup.astype(bool)]
    kind = np.where(wrong.is_dup.astype(bool), "missed duplicate", "false duplicate")
    wrong = wrong.assign(kind=kind, margin=(wrong.dupnet - threshold).abs())
    return wrong.sort_values(["margin", "img1", "img2", "tag"], ascending=[False, True, True, True])


def errors_csv(errors: pd.DataFrame, methods) -> str:
    """errors.csv: every DupNet error, the gallery's order (rank 1 = most confident), all scores."""
    cols = ["kind", "img1", "img2", "tag", "is_dup", "n_tile_pairs", "n_informative", *methods, "line"]
    out = errors.reindex(columns=cols).rename(columns={"line": "source"})
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.to_csv(index=False, float_format="%.4f", lineterminator="\n")


def page(data: ReportData) -> str:
    """The whole HTML page."""
    return render("report.html.j2", **page_view(data))


def write_report(scored: pd.DataFrame, metrics: dict, images_dir, out_dir, found_paths: dict | None = None,
                 **settings) -> None:
    """Write report.html, errors.csv, roc.png and pr.png into out_dir; settings = ReportData's caps and sizes."""
    out_dir = Path(out_dir)
    methods = dupnet_first(metrics["validation"]["methods"])
    roc, pr = curves(scored, methods)
    write_bytes(roc, out_dir / "roc.png")
    write_bytes(pr, out_dir / "pr.png")
    errors = (dupnet_errors(scored, metrics["methods"]["dupnet"]["threshold"]) if metrics["methods"]
              else scored.iloc[:0].assign(kind=pd.Series(dtype=str), margin=pd.Series(dtype=float)))
    write_text(errors_csv(errors, methods), out_dir / "errors.csv")
    data = ReportData(scored=scored, metrics=metrics, images_dir=Path(images_dir), out_dir=out_dir,
                      errors=errors, roc=roc, pr=pr, found_paths=found_paths or {}, **settings)
    text = page(data)
    write_text(text, out_dir / "report.html")
    log.info("%s: %.1f MB, %d gallery panels", out_dir / "report.html", len(text.encode()) / 1e6,
             text.count("<figure class=\"card"))


def write_bytes(data: bytes, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def evaluate_and_report(*, gallery_errors: int, gallery_correct: int, gallery_duplicates: int, thumb: int,
                        mosaics: int, mosaic_tile: int, exports: dict | None = None, **evaluate_args) -> dict:
    """The `evaluate` rule: tiledup.evaluate.evaluation.evaluate, then the report from its result.

    Keywords = the `evaluate` config block: the report's own (galleries, thumbnails, mosaics of the
    `mosaics` largest groups at `mosaic_tile` pixels per tile) and the evaluation's (list_cap is both's).
    exports: the split, duplicates.json and removable.txt paths (shown and linked).
    """
    result = evaluate(**evaluate_args)
    discovery = evaluate_args.get("discovery_paths") or {}
    found_paths = ({"overlaps": discovery["overlaps_path"], "groups": discovery["groups_path"],
                    "conflicts": discovery["conflicts_path"], "verdicts": evaluate_args.get("verdicts_path"),
                    **(exports or {})} if discovery else {})
    write_report(result.scored, result.metrics, evaluate_args["images_dir"], evaluate_args["out_dir"],
                 found_paths=found_paths, gallery_errors=gallery_errors, gallery_correct=gallery_correct,
                 gallery_duplicates=gallery_duplicates, list_cap=evaluate_args["list_cap"], thumb=thumb,
                 mosaics=mosaics, mosaic_tile=mosaic_tile, seed=evaluate_args["val_seed"])
    return result.metrics


# Its keywords are the report's and the evaluation's: the command line checks a config key against both.
evaluate_and_report.__signature__ = inspect.Signature([
    *(p for p in inspect.signature(evaluate_and_report).parameters.values() if p.kind is p.KEYWORD_ONLY),
    *(p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(evaluate).parameters.values()),
])

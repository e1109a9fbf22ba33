"""The evaluation report: one self-contained HTML page (images inline as base64).

Sections: summary, metrics table (best value per column highlighted), ROC and
precision-recall curves, confusion matrices, a gallery of every overlap DupNet
gets wrong (capped, with a note) and a sample of correct ones, undecidable
overlaps and skipped truth lines. Each gallery panel shows both chips with the
overlap box drawn and, below, the seed's "average channel subtraction" view:
each chip minus the per-channel median of its own overlap region, wrapping in
uint8, so that values near the median land near 0 or 255 and any local scene
difference (a ship, a wave, a cloud edge) stands out from a flat background.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import simplejpeg  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from .grid import CHIP, TILE, partner_tag, tile_rc  # noqa: E402
from .images import RejectedImage, read_chip  # noqa: E402
from .io import write_text  # noqa: E402
from .mosaic import discovery_section, section_html  # noqa: E402

COLUMNS = [  # (metrics key, header, higher is better)
    ("roc_auc", "ROC-AUC", True), ("average_precision", "AP", True), ("accuracy", "accuracy", True),
    ("precision", "precision", True), ("recall", "recall", True), ("f1", "F1", True),
    ("errors", "errors", False), ("threshold", "threshold", None),
]
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
td.best{background:#c9f2c9;font-weight:bold}.note{background:#fff6d6;border:1px solid #e6d38a;padding:.6em 1em}
.plots img{max-width:49%}.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #ddd;padding:6px}figure img{width:100%}
figcaption{font-size:12px;font-family:monospace}.cm{display:inline-block;margin-right:1.5em;vertical-align:top}
"""


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _img(data: bytes, mime: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def curves(scored: pd.DataFrame, methods) -> tuple[bytes, bytes]:
    """ROC and precision-recall plots (PNG bytes) over the decidable overlaps."""
    decided = scored[scored.decidable]
    y = decided.is_dup.to_numpy(bool)
    figs = []
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(6, 5))
        if len(y) and 0 < y.sum() < len(y):
            for m in methods:
                s = decided[m].to_numpy(float)
                if kind == "roc":
                    x, yy, _ = roc_curve(y, s)
                    ax.plot(x, yy, lw=2.5 if m == "dupnet" else 1.2, label=m)
                else:
                    p, r, _ = precision_recall_curve(y, s)
                    ax.plot(r, p, lw=2.5 if m == "dupnet" else 1.2, label=m)
            ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=9)
        else:
            ax.text(0.5, 0.5, "no labelled overlaps of both classes", ha="center", va="center")
        ax.set_xlabel("false positive rate" if kind == "roc" else "recall")
        ax.set_ylabel("true positive rate" if kind == "roc" else "precision")
        ax.set_title("ROC" if kind == "roc" else "precision-recall")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02), ax.grid(alpha=0.3)
        figs.append(_png(fig))
    return figs[0], figs[1]


def overlap_box(tag: str) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) pixel box of the overlap region inside the chip that sees it as `tag`."""
    (r0, c0), (r1, c1) = tile_rc(int(tag[0])), tile_rc(int(tag[1]))
    return r0 * TILE, c0 * TILE, (r1 + 1) * TILE, (c1 + 1) * TILE


def channel_subtraction(chip: np.ndarray, box) -> np.ndarray:
    """Chip minus the per-channel median of its overlap region, wrapping in uint8 (the seed's view)."""
    y0, x0, y1, x1 = box
    median = np.median(chip[y0:y1, x0:x1].reshape(-1, 3), axis=0).astype(np.uint8)
    return chip - median  # uint8 arithmetic wraps on purpose


def panel(chip1, chip2, tag: str, thumb: int) -> np.ndarray:
    """2 x 2 panel: chips with the overlap box drawn (top), channel subtraction views (bottom)."""
    cells = []
    for chip, t in ((chip1, tag), (chip2, partner_tag(tag))):
        box = overlap_box(t)
        scale = thumb / CHIP
        y0, x0, y1, x1 = (int(round(v * scale)) for v in box)
        views = []
        for view in (chip, channel_subtraction(chip, box)):
            small = cv2.resize(view, (thumb, thumb), interpolation=cv2.INTER_AREA)
            cv2.rectangle(small, (x0, y0), (x1 - 1, y1 - 1), (255, 220, 0), 2)
            views.append(small)
        cells.append(views)
    gap = np.full((thumb, 4, 3), 255, np.uint8)
    top = np.hstack([cells[0][0], gap, cells[1][0]])
    bottom = np.hstack([cells[0][1], gap, cells[1][1]])
    return np.vstack([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom])


def gallery(rows: pd.DataFrame, images_dir, thumb: int, methods) -> str:
    """One figure per overlap; JPEG quality 70 keeps a panel near 40 KB at thumb 160 (noisy sea)."""
    width = int(1.4 * (2 * thumb + 4))  # shown a little larger than stored: the page stays small
    items = []
    for r in rows.itertuples():
        try:
            pic = panel(read_chip(Path(images_dir) / r.img1), read_chip(Path(images_dir) / r.img2), r.tag, thumb)
            img = _img(simplejpeg.encode_jpeg(np.ascontiguousarray(pic), quality=70, colorspace="RGB"),
                       "image/jpeg", f"{r.img1} {r.img2} {r.tag}")
        except RejectedImage as e:
            img = f"<p>cannot show: {html.escape(str(e))}</p>"
        scores = " ".join(f"{m}={getattr(r, m):.3f}" for m in methods)
        items.append(
            f'<figure style="width:{width}px">{img}<figcaption>'
            f"{html.escape(r.img1)} {html.escape(r.img2)} tag {r.tag} "
            f"(partner {partner_tag(r.tag)})<br>truth: {'dup' if r.is_dup else 'not dup'}, "
            f"{r.n_informative}/{r.n_tile_pairs} informative tile pairs<br>{scores}</figcaption></figure>")
    return '<div class="gallery">' + "\n".join(items) + "</div>"


def metrics_table(methods: dict, validation: dict) -> str:
    names = list(methods)
    best = {}
    for key, _, higher in COLUMNS:
        vals = [methods[m][key] for m in names if methods[m][key] is not None]
        if higher is not None and vals:
            best[key] = max(vals) if higher else min(vals)
    head = "".join(f"<th>{h}</th>" for _, h, _ in COLUMNS) + "<th>val. accuracy</th><th>val. ROC-AUC</th>"
    body = []
    for m in names:
        cells = []
        for key, _, _ in COLUMNS:
            v = methods[m][key]
            text = "n/a" if v is None else (str(v) if key == "errors" else f"{v:.4f}")
            cls = ' class="best"' if v is not None and key in best and v == best[key] else ""
            cells.append(f"<td{cls}>{text}</td>")
        val = validation.get(m, {})
        cells.append(f"<td>{val.get('accuracy', float('nan')):.4f}</td><td>{val.get('roc_auc', float('nan')):.4f}</td>")
        body.append(f"<tr><td>{m}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(body)}</table>"


def summary(metrics: dict) -> str:
    """One sentence per headline figure: the best method and whether DupNet beats every baseline."""
    methods, beats = metrics["methods"], metrics.get("dupnet_beats_every_baseline", {})
    lines = []
    for key, name in (("roc_auc", "ROC-AUC"), ("accuracy", "accuracy")):
        scored = {m: v[key] for m, v in methods.items() if v[key] is not None}
        if not scored:
            lines.append(f"{name}: undefined (one class only).")
            continue
        best = max(scored, key=scored.get)
        answer = {True: "<b>yes</b>", False: "<b>no</b>", None: "undefined"}[beats.get(key)]
        lines.append(f"Best {name}: {best} ({scored[best]:.4f}), DupNet {scored.get('dupnet', float('nan')):.4f}; "
                     f"DupNet beats every baseline on {name}: {answer}.")
    return "<p>" + "<br>".join(lines) + "</p>"


def validation_table(validation: dict) -> str:
    rows = "".join(f"<tr><td>{m}</td><td>{v['threshold']:.4f}</td><td>{v['accuracy']:.4f}</td>"
                   f"<td>{v['roc_auc']:.4f}</td></tr>" for m, v in validation.items())
    return ("<table><tr><th>method</th><th>threshold</th><th>val. accuracy</th><th>val. ROC-AUC</th></tr>"
            f"{rows}</table>")


def confusion(methods: dict) -> str:
    out = []
    for m, v in methods.items():
        c = v["confusion"]
        out.append(f'<div class="cm"><b>{m}</b><table><tr><th></th><th>pred. dup</th><th>pred. not</th></tr>'
                   f"<tr><th>dup</th><td>{c['tp']}</td><td>{c['fn']}</td></tr>"
                   f"<tr><th>not dup</th><td>{c['fp']}</td><td>{c['tn']}</td></tr></table></div>")
    return "".join(out)


def write_report(scored: pd.DataFrame, metrics: dict, images_dir, out_dir, gallery_errors: int = 400,
                 gallery_correct: int = 12, thumb: int = 160, seed: int = 0, discovery: dict | None = None) -> None:
    """Write report.html, roc.png and pr.png into out_dir."""
    out_dir = Path(out_dir)
    methods = list(metrics["validation"]["methods"])
    roc, pr = curves(scored, methods)
    write_bytes(roc, out_dir / "roc.png")
    write_bytes(pr, out_dir / "pr.png")
    val = metrics["validation"]
    parts = ["<h1>tiledup evaluation: DupNet vs image-metric baselines</h1>"]
    if metrics["truth"] is None:
        reason = metrics.get("note", "").split(": ", 1)[-1]
        parts.append(f'<p class="note"><b>No truth was given</b>, so no overlap was scored: '
                     f"{html.escape(reason)}.</p>")
    else:
        parts.append(
            f"<p>Truth: <code>{html.escape(metrics['truth'])}</code>: {metrics['n_overlaps']} overlaps "
            f"({metrics['n_dup']} duplicates, {metrics['n_nondup']} not), "
            f"<b>{metrics['n_undecidable']} undecidable</b> (every tile pair solid on both sides; not scored), "
            f"{len(metrics['skipped_truth_lines'])} truth lines skipped.</p>")
    parts.append(
        "<p>Overlap score = the minimum over its informative tile pairs (an overlap is a duplicate only if "
        "every tile pair is). Every baseline is a similarity (1 = identical). Thresholds were chosen on "
        f"{val['n_pairs']} validation tile pairs ({val['n_dup']} duplicates), never on the truth: "
        f"{html.escape(metrics['threshold_rule'])}.</p>"
        '<p class="note">Limitation: validation pairs are tile i vs tile i of one chip (duplicate) and tile i '
        "vs tile j (different places), both augmented as in training (JPEG re-encode, HLS shift, colour "
        "offset). Same place at another time, the truth file's hard negatives, never occurs there, so "
        "thresholds tuned on it favour methods that separate places, not times.</p>")
    if metrics["methods"]:
        parts += ["<h2>Metrics (decidable overlaps)</h2>", summary(metrics),
                  metrics_table(metrics["methods"], val["methods"]),
                  "<h2>ROC and precision-recall</h2>",
                  f'<div class="plots">{_img(roc, "image/png", "ROC")}{_img(pr, "image/png", "PR")}</div>',
                  "<h2>Confusion matrices</h2>", confusion(metrics["methods"])]
        decided = scored[scored.decidable]
        thr = metrics["methods"]["dupnet"]["threshold"]
        wrong = decided[(decided.dupnet >= thr) != decided.is_dup.astype(bool)]
        wrong = wrong.assign(margin=(wrong.dupnet - thr).abs())  # most confident mistakes first
        wrong = wrong.sort_values("margin", ascending=False)
        note = (f" Showing the {gallery_errors} most confident of {len(wrong)} errors; all are listed in "
                "scores.parquet." if len(wrong) > gallery_errors else "")
        parts += [f"<h2>DupNet errors ({len(wrong)})</h2><p>Top: both chips, overlap box in yellow. Bottom: "
                  f"average channel subtraction view.{note}</p>",
                  gallery(wrong.head(gallery_errors), images_dir, thumb, methods) if len(wrong) else
                  "<p>None.</p>"]
        right = decided.drop(wrong.index)
        sample = right.sample(n=min(gallery_correct, len(right)), random_state=seed).sort_index()
        parts += [f"<h2>A sample of correct DupNet decisions ({len(sample)} of {len(right)})</h2>",
                  gallery(sample, images_dir, thumb, methods)]
    else:
        parts += ["<h2>Thresholds from the validation split</h2><p>Tile pairs, not overlaps.</p>",
                  validation_table(val["methods"])]
    parts.append(section_html(discovery_section(discovery, images_dir)))
    if metrics["undecidable"]:
        rows = "".join(f"<tr><td>{html.escape(u['img1'])}</td><td>{html.escape(u['img2'])}</td>"
                       f"<td>{u['tag']}</td><td>{int(u['is_dup'])}</td></tr>" for u in metrics["undecidable"])
        parts.append(f"<h2>Undecidable overlaps ({metrics['n_undecidable']})</h2>"
                     f"<table><tr><th>img1</th><th>img2</th><th>tag</th><th>is_dup</th></tr>{rows}</table>")
    if metrics["skipped_truth_lines"]:
        rows = "".join(f"<tr><td>{html.escape(s['line'])}</td><td>{html.escape(s['reason'])}</td></tr>"
                       for s in metrics["skipped_truth_lines"])
        parts.append(f"<h2>Skipped truth lines ({len(metrics['skipped_truth_lines'])})</h2>"
                     f"<table><tr><th>line</th><th>reason</th></tr>{rows}</table>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>tiledup evaluation</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    write_text(page, out_dir / "report.html")


def write_bytes(data: bytes, path) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)

"""The evaluation report: one HTML page (images inline) plus errors.csv beside it.

The page opens with a summary (what was scored, how good, where the errors
are) and a table of contents; then one <section> per entry of SECTIONS. A
section is a function of the ReportData returning (anchor id, title, HTML), or
None when it has nothing to show; adding a section is one line in SECTIONS.

Gallery panels show both chips with the overlap box and, below, the seed's
"average channel subtraction" view made readable: each chip minus the
per-channel median of its own overlap region, averaged over R, G and B,
clipped at +-DIFF_CLIP levels and drawn with a diverging colour map (white =
the median, red = brighter, blue = darker). The seed's uint8 wrap-around
turned dark sea one level below the median into 255, i.e. noise.
"""

from __future__ import annotations

import html
import inspect
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import simplejpeg  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from tiledup.grid import CHIP, TILE, partner_tag, tile_rc  # noqa: E402
from tiledup.tiles.decode import RejectedImage, read_chip  # noqa: E402
from tiledup.run.io import atomic_path, write_text  # noqa: E402
from tiledup.run.progress import Progress  # noqa: E402
from tiledup.evaluate.evaluation import evaluate  # noqa: E402
from tiledup.report import mosaics  # noqa: E402
from tiledup.report.html import _img, gallery  # noqa: E402

COLUMNS = [  # (metrics key, header, higher is better)
    ("roc_auc", "ROC-AUC", True), ("average_precision", "AP", True), ("accuracy", "accuracy", True),
    ("precision", "precision", True), ("recall", "recall", True), ("f1", "F1", True),
    ("errors", "errors", False), ("threshold", "threshold", None),
]
DIFF_CLIP = 24  # levels: JPEG noise on dark sea (1-3 levels) stays pale, ships and cloud edges saturate
PANEL_QUALITY = 70  # JPEG quality of a gallery panel
BOX_CHIP, BOX_DIFF = (255, 220, 0), (0, 0, 0)  # overlap box: yellow on the chip, black on the map
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;padding:1em 2em 4em;color:#222;max-width:2400px}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
p,.note,.summary,details{max-width:75em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
td.best{background:#c9f2c9;font-weight:bold}.note{background:#fff6d6;border:1px solid #e6d38a;padding:.6em 1em}
.summary{background:#eef4fb;border:1px solid #b8cde6;padding:.4em 1.2em;font-size:15px}
.toc{background:#fafafa;border:1px solid #ddd;padding:.5em 1em;max-width:60em;margin-top:1em}
.toc ol{margin:.2em 0;columns:2 18em}.toc a{text-decoration:none}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,560px));gap:1em}.plots img{width:100%}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px}
figure{margin:0;border:1px solid #ddd;padding:5px;background:#fff}figure img{width:100%;display:block}
figcaption{font-size:12px;line-height:1.35;margin-top:4px;overflow-wrap:anywhere}
figcaption .scores{color:#555;font-family:monospace;font-size:11px}
.fp{color:#b00020;font-weight:bold}.fn{color:#0050a0;font-weight:bold}.ok{color:#1b6e1b;font-weight:bold}
.legend{display:flex;gap:1.5em;align-items:center;flex-wrap:wrap;max-width:75em}
.legend img{width:256px;height:14px;border:1px solid #999}
.scale{font-size:12px;display:flex;justify-content:space-between;width:258px}
.cm{display:inline-block;margin-right:1.5em;vertical-align:top}
"""

log = logging.getLogger(__name__)

Section = tuple[str, str, str]  # (anchor id, title, HTML)


def dupnet_first(methods) -> list[str]:
    """Method names in their given order, DupNet moved to the front."""
    return sorted(methods, key=lambda m: m != "dupnet")


@dataclass
class ReportData:
    """Everything a section may show; `extra` carries inputs that only some sections need, by name."""

    scored: pd.DataFrame  # one row per overlap: scores.parquet's columns, `line` for its source
    metrics: dict  # metrics.json
    images_dir: Path
    out_dir: Path
    errors: pd.DataFrame  # DupNet's errors among the decidable overlaps, most confident first
    roc: bytes = b""
    pr: bytes = b""
    gallery_errors: int = 100
    gallery_correct: int = 12
    thumb: int = 128
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """Every scored method, DupNet first."""
        return dupnet_first(self.metrics["validation"]["methods"])

    @property
    def has_truth(self) -> bool:
        return bool(self.metrics["methods"])


# ---------------------------------------------------------------- pictures

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


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
    """Signed difference (float32, H x W) of each pixel to the per-channel median of the overlap
    region, averaged over R, G, B: 0 = as the median, > 0 brighter, < 0 darker."""
    y0, x0, y1, x1 = box
    median = np.median(chip[y0:y1, x0:x1].reshape(-1, 3), axis=0).astype(np.float32)
    return (chip.astype(np.float32) - median).mean(axis=2)


_LUT = (matplotlib.colormaps["RdBu_r"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def diverging(diff: np.ndarray, clip: float = DIFF_CLIP) -> np.ndarray:
    """Signed levels -> RGB: blue (<= -clip) through white (0) to red (>= +clip).

    The colour follows the square root of |diff| / clip (signed): a coherent change of a
    few levels (calm sea brightness, a clipped dark chip) shows as a tint, a ship or a
    cloud edge is full colour, and pixel noise, already averaged by the thumbnail's
    downscaling, stays pale. Quarter marks of the scale: -clip/4 and +clip/4.
    """
    v = np.sign(diff) * np.sqrt(np.minimum(np.abs(diff), clip) / clip)  # in [-1, 1]
    return _LUT[np.round((v + 1) * 127.5).astype(np.uint8)]


def panel(chip1, chip2, tag: str, thumb: int) -> np.ndarray:
    """2 x 2 panel: chips with the overlap box drawn (top), their channel subtraction maps (bottom)."""
    cells = []
    for chip, t in ((chip1, tag), (chip2, partner_tag(tag))):
        box = overlap_box(t)
        scale = thumb / CHIP
        y0, x0, y1, x1 = (int(round(v * scale)) for v in box)
        small = cv2.resize(chip, (thumb, thumb), interpolation=cv2.INTER_AREA)
        # resize the signed difference, not its colours, so averaging stays meaningful
        diff = diverging(cv2.resize(channel_subtraction(chip, box), (thumb, thumb),
                                    interpolation=cv2.INTER_AREA))
        views = []
        for view, colour in ((small, BOX_CHIP), (np.ascontiguousarray(diff), BOX_DIFF)):
            cv2.rectangle(view, (x0, y0), (x1 - 1, y1 - 1), colour, 2)
            views.append(view)
        cells.append(views)
    gap = np.full((thumb, 4, 3), 255, np.uint8)
    top = np.hstack([cells[0][0], gap, cells[1][0]])
    bottom = np.hstack([cells[0][1], gap, cells[1][1]])
    return np.vstack([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom])


def legend() -> str:
    """The colour scale of the channel subtraction maps, with what it shows."""
    strip = np.repeat(_LUT[None], 14, axis=0)
    png = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))[1].tobytes()
    return (
        f'<div class="legend"><div>{_img(png, "image/png", "colour scale")}<div class="scale">'
        f"<span>&le;&minus;{DIFF_CLIP}</span><span>&minus;{DIFF_CLIP // 4}</span><span>0</span>"
        f"<span>+{DIFF_CLIP // 4}</span><span>&ge;+{DIFF_CLIP}</span></div></div>"
        "<p><b>How to read a panel.</b> Top: image 1 (left) and image 2 (right), the overlap in the yellow "
        "box. Bottom: the same chips as an <i>average channel subtraction</i> map: each pixel minus the "
        "per-channel median of its own chip's overlap region, averaged over R, G and B, in levels (0-255): "
        "white = as the median, red = brighter, blue = darker. The colour grows with the square root of "
        f"the difference: {DIFF_CLIP // 4} levels are half colour, {DIFF_CLIP} or more full colour, so calm "
        "sea texture shows while pixel noise stays pale. "
        "Each chip subtracts its own median, so a colour offset between the two chips cancels: inside the "
        "boxes a same-time pair shows the same pattern, while moved ships, other waves or clouds (another "
        "time) show a different one.</p></div>")


# ---------------------------------------------------------------- tables and cards

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


def card(r, images_dir, thumb: int, methods, label: str, css: str) -> str:
    """One gallery figure: the panel, what the truth and DupNet say, and the baselines' scores."""
    try:
        pic = panel(read_chip(Path(images_dir) / r.img1), read_chip(Path(images_dir) / r.img2), r.tag, thumb)
        img = _img(simplejpeg.encode_jpeg(np.ascontiguousarray(pic), quality=PANEL_QUALITY, colorspace="RGB"),
                   "image/jpeg", f"{r.img1} {r.img2} {r.tag}")
    except RejectedImage as e:
        img = f"<p>cannot show: {html.escape(str(e))}</p>"
    scores = " ".join(f"{m}&nbsp;{getattr(r, m):.3f}" for m in methods if m != "dupnet")
    return (f'<figure>{img}<figcaption><span class="{css}">{label}</span> &middot; DupNet {r.dupnet:.3f}<br>'
            f"{html.escape(r.img1)} &times; {html.escape(r.img2)}, tag {r.tag} (partner {partner_tag(r.tag)}), "
            f"truth: {'dup' if r.is_dup else 'not dup'}, {r.n_informative}/{r.n_tile_pairs} tile pairs "
            f'informative<br><span class="scores">{scores}</span></figcaption></figure>')


def metrics_table(methods: dict, validation: dict) -> str:
    names = dupnet_first(methods)
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


def validation_table(validation: dict) -> str:
    rows = "".join(f"<tr><td>{m}</td><td>{validation[m]['threshold']:.4f}</td>"
                   f"<td>{validation[m]['accuracy']:.4f}</td><td>{validation[m]['roc_auc']:.4f}</td></tr>"
                   for m in dupnet_first(validation))
    return ("<table><tr><th>method</th><th>threshold</th><th>val. accuracy</th><th>val. ROC-AUC</th></tr>"
            f"{rows}</table>")


def collapsible(summary: str, body: str) -> str:
    """A long list folded away behind one line (open it with a click)."""
    return f"<details><summary>{summary}</summary>{body}</details>"


# ---------------------------------------------------------------- summary and sections

def counts_sentence(counts: dict) -> str:
    """All overlaps = decidable + undecidable, each as duplicates + not: counts that add up."""
    def part(c):
        return f"{c['dup']:,} duplicates + {c['nondup']:,} not"

    a, d, u = counts["all"], counts["decidable"], counts["undecidable"]
    return (f"{a['overlaps']:,} labelled overlaps ({part(a)}) = <b>{d['overlaps']:,} decidable</b> ({part(d)}) "
            f"+ <b>{u['overlaps']:,} undecidable</b> ({part(u)}; no tile pair is evidence either way, "
            "so not scored)")


def summary(data: ReportData) -> str:
    """The top of the page: what was scored, how good, where the errors are."""
    m = data.metrics
    if m["truth"] is None:
        reason = m.get("note", "").split(": ", 1)[-1]
        return (f'<div class="summary"><p><b>No truth was given</b>, so no overlap was scored: '
                f"{html.escape(reason)}. The thresholds chosen on the validation split are below.</p></div>")
    skipped = len(m["skipped_truth_lines"])
    lines = [f"<b>Scored:</b> <code>{html.escape(m['truth'])}</code>: {counts_sentence(m['counts'])}."
             + (f" {skipped} truth line(s) skipped (not counted; see below)." if skipped else "")]
    methods = m["methods"]
    if methods:
        dn, beats = methods["dupnet"], m.get("dupnet_beats_every_baseline", {})
        fmt = {k: ("n/a" if dn[k] is None else f"{dn[k]:.3f}") for k in ("accuracy", "roc_auc", "f1")}
        text = (f"<b>How good:</b> DupNet: accuracy {fmt['accuracy']}, ROC-AUC {fmt['roc_auc']}, F1 "
                f"{fmt['f1']} at threshold {dn['threshold']:.3g}; <b>{dn['errors']:,} errors</b> in "
                f"{m['counts']['decidable']['overlaps']:,} decidable overlaps.")
        for key, name in (("roc_auc", "ROC-AUC"), ("accuracy", "accuracy")):
            base = {k: v[key] for k, v in methods.items() if k != "dupnet" and v[key] is not None}
            if base:
                top = max(base, key=base.get)
                answer = {True: "yes", False: "<b>no</b>", None: "undefined"}[beats.get(key)]
                text += (f" Best baseline on {name}: {top} {base[top]:.3f} ({methods[top]['errors']:,} "
                         f"errors); DupNet better than every baseline: {answer}.")
        lines.append(text)
        c, shown = dn["confusion"], min(len(data.errors), data.gallery_errors)
        where = (f"{c['fp']:,} false duplicates (other times called duplicates) and {c['fn']:,} missed "
                 "duplicates.")
        if shown:
            where += (f" The <a href=\"#errors\">gallery</a> shows the {shown:,} most confident; "
                      f"<a href=\"errors.csv\">errors.csv</a> lists all {len(data.errors):,} with every "
                      "method's score.")
        lines.append(f"<b>Where the errors are:</b> {where if dn['errors'] else 'DupNet makes none.'}")
    return '<div class="summary">' + "".join(f"<p>{x}</p>" for x in lines) + "</div>"


def metrics_section(data: ReportData) -> Section | None:
    if not data.has_truth:
        return ("thresholds", "Thresholds from the validation split",
                "<p>Tile pairs, not overlaps.</p>" + validation_table(data.metrics["validation"]["methods"]))
    return ("metrics", "Metrics (decidable overlaps)",
            "<p>Best value per column in green. Every method is judged on the same decidable overlaps; "
            "val. = on the validation tile pairs its threshold was chosen on.</p>"
            + metrics_table(data.metrics["methods"], data.metrics["validation"]["methods"]))


def scoring_section(data: ReportData) -> Section:
    val = data.metrics["validation"]
    return ("scoring", "How overlaps were scored",
            "<p>Each overlap is expanded to its tile pairs (1 to 9). A pair of textured tiles is scored by "
            "every method; a pair with a solid side (cloud, no-data, border band) is settled by one rule for "
            "every method: two clearly different solid colours, or texture that no colour offset plus "
            "clipping explains, is evidence of \"not duplicate\" (score 0); anything else is no evidence. "
            "Overlap score = the minimum over its evidence pairs (an overlap is a "
            "duplicate only if every tile pair is). Every baseline is a similarity (1 = identical). "
            f"Thresholds were chosen on {val['n_pairs']:,} validation tile pairs ({val['n_dup']:,} "
            f"duplicates), never on the truth: {html.escape(data.metrics['threshold_rule'])}.</p>"
            '<p class="note">Limitation: validation pairs are tile i vs tile i of one chip (duplicate) and '
            "tile i vs tile j (different places) or vs tile i changed locally or in texture (a synthetic "
            "stand-in for another time), all augmented as in training (JPEG re-encode, HLS shift, colour "
            "offset). Real same-place-other-time pairs, the truth file's hard negatives, never occur there; "
            "the thresholds and the combined tree are fitted on these stand-ins.</p>")


def curves_section(data: ReportData) -> Section | None:
    if not data.has_truth:
        return None
    return ("curves", "ROC and precision-recall",
            f'<div class="plots">{_img(data.roc, "image/png", "ROC")}{_img(data.pr, "image/png", "PR")}</div>')


def confusion_section(data: ReportData) -> Section | None:
    if not data.has_truth:
        return None
    out = []
    for m, v in data.metrics["methods"].items():
        c = v["confusion"]
        out.append(f'<div class="cm"><b>{m}</b><table><tr><th></th><th>pred. dup</th><th>pred. not</th></tr>'
                   f"<tr><th>dup</th><td>{c['tp']}</td><td>{c['fn']}</td></tr>"
                   f"<tr><th>not dup</th><td>{c['fp']}</td><td>{c['tn']}</td></tr></table></div>")
    return "confusion", "Confusion matrices", "".join(out)


def kinds_section(data: ReportData) -> Section | None:
    """Errors by kind of overlap (scene kind from the demo layout; same time or not)."""
    by_kind = data.metrics.get("by_kind")
    if not by_kind:
        return None
    others = [m for m in data.methods if m != "dupnet"]
    head = ("<tr><th>kind</th><th>overlaps</th><th>same time</th><th>other time</th><th>undecidable</th>"
            "<th>DupNet accuracy</th><th>DupNet false dup</th><th>DupNet false non-dup</th>"
            + "".join(f"<th>{html.escape(m)} errors</th>" for m in others) + "</tr>")
    rows = []
    for kind, k in by_kind.items():
        d = k["methods"]["dupnet"]
        acc = "n/a" if d["accuracy"] is None else f"{d['accuracy']:.4f}"
        rows.append(f"<tr><td>{html.escape(kind)}</td><td>{k['n_overlaps']:,}</td><td>{k['n_same_time']:,}</td>"
                    f"<td>{k['n_other_time']:,}</td><td>{k['n_undecidable']:,}</td><td>{acc}</td>"
                    f"<td>{d['false_dup']}</td><td>{d['false_nondup']}</td>"
                    + "".join(f"<td>{k['methods'][m]['errors']}</td>" for m in others) + "</tr>")
    return ("kinds", "Errors by kind of overlap",
            "<p>Scene kind from the demo layout; same time = duplicate (an error there is a missed "
            "duplicate), other time = not (an error there is a false duplicate). Decidable overlaps only, "
            f"undecidable ones counted apart.</p><table>{head}{''.join(rows)}</table>")


def _cards(data: ReportData, rows: pd.DataFrame, what: str, label) -> list[str]:
    with Progress(f"report {what}", len(rows), "overlaps", log=log) as progress:
        cards = []
        for r in rows.itertuples():
            text, css = label(r)
            cards.append(card(r, data.images_dir, data.thumb, data.methods, text, css))
            progress.update()
    return cards


def errors_section(data: ReportData) -> Section | None:
    if not data.has_truth:
        return None
    n, shown = len(data.errors), data.errors.head(data.gallery_errors)
    cap = (f"Showing the {len(shown):,} most confident of {n:,} errors (config key "
           "<code>evaluate.gallery_errors</code>); " if len(shown) < n else "All errors, most confident first; ")
    body = (f"<p>{cap}<a href=\"errors.csv\">errors.csv</a> lists every one in this order, with all scores "
            "and the truth line.</p>" + legend())
    ranks = {i: k + 1 for k, i in enumerate(shown.index)}
    cards = _cards(data, shown, "error gallery",
                   lambda r: (f"#{ranks[r.Index]} {r.kind}", "fp" if r.kind == "false duplicate" else "fn"))
    if not n:
        return "errors", "DupNet errors (0)", "<p>None.</p>"
    return "errors", f"DupNet errors ({n:,})", body + gallery(cards)


def correct_section(data: ReportData) -> Section | None:
    if not data.has_truth or data.gallery_correct <= 0:
        return None
    decided = data.scored[data.scored.decidable]
    right = decided.drop(data.errors.index)
    sample = right.sample(n=min(data.gallery_correct, len(right)), random_state=data.seed).sort_index()
    cards = _cards(data, sample, "correct sample",
                   lambda r: ("correct: " + ("duplicate" if r.is_dup else "not duplicate"), "ok"))
    return ("correct", f"A sample of correct DupNet decisions ({len(sample)} of {len(right):,})",
            "<p>Same panels as the errors (see the colour scale there).</p>" + gallery(cards))


def undecidable_section(data: ReportData) -> Section | None:
    und = data.metrics["undecidable"]
    if not und:
        return None
    rows = "".join(f"<tr><td>{html.escape(u['img1'])}</td><td>{html.escape(u['img2'])}</td>"
                   f"<td>{u['tag']}</td><td>{int(u['is_dup'])}</td></tr>" for u in und)
    c = data.metrics["counts"]["undecidable"]
    return ("undecidable", f"Undecidable overlaps ({len(und):,})",
            "<p>No tile pair of these overlaps is evidence either way (solid tiles of one colour on both "
            "sides, or texture within the clipping band of a solid colour), so none is scored: "
            f"{c['dup']:,} duplicates and {c['nondup']:,} not by the truth. They are left out of every "
            "figure above.</p>"
            + collapsible(f"Show the {len(und):,} overlaps",
                          f"<table><tr><th>img1</th><th>img2</th><th>tag</th><th>is_dup</th></tr>{rows}</table>"))


def skipped_section(data: ReportData) -> Section | None:
    skipped = data.metrics["skipped_truth_lines"]
    if not skipped:
        return None
    rows = "".join(f"<tr><td>{html.escape(s['line'])}</td><td>{html.escape(s['reason'])}</td></tr>"
                   for s in skipped)
    table = f"<table><tr><th>line</th><th>reason</th></tr>{rows}</table>"
    return ("skipped", f"Skipped truth lines ({len(skipped):,})",
            "<p>Lines of the truth file that were skipped (<code>on_bad_truth: skip</code>); they "
            "are not in any count.</p>" + (collapsible(f"Show the {len(skipped):,} lines", table)
                                           if len(skipped) > 20 else table))


def rejects_section(data: ReportData, show: int = 50) -> Section:
    """Images the tile stage rejected: count, reasons, and the first `show` file names."""
    rejects = data.metrics["rejects"]
    n, k = rejects["n_images"], rejects["n_rejected"]
    title = f"Rejected images ({k:,} of {n:,})"
    if not k:
        return ("rejects", title, "<p>The tile stage accepted every image.</p>")
    reasons = "".join(f"<tr><td>{html.escape(r)}</td><td>{c:,}</td></tr>" for r, c in rejects["by_reason"].items())
    images = "".join(f"<tr><td>{html.escape(r['image_id'])}</td><td>{html.escape(r['reason'])}</td></tr>"
                     for r in rejects["images"][:show])
    more = (f"<p>The first {show} of {k:,}; metrics.json and results/rejects.parquet list them all.</p>"
            if k > show else "")
    table = f"<table><tr><th>image</th><th>reason</th></tr>{images}</table>{more}"
    return ("rejects", title,
            "<p>These images were left out of every stage (not tiled, paired, trained on or "
            "scored); a truth line naming one is an error or, with <code>on_bad_truth: skip</code>, "
            f"skipped.</p><table><tr><th>reason</th><th>images</th></tr>{reasons}</table>"
            + (collapsible(f"Show the {min(k, show):,} images", table) if k > 20 else table))


def discovery_section(data: ReportData) -> Section | None:
    """Discovery against the truth, and mosaics of the largest duplicate groups (tiledup.report.mosaics)."""
    return mosaics.discovery_section(data.extra.get("discovery"), data.images_dir)


# The page, in order. Add a section with one line: a function (ReportData) -> (id, title, HTML) or None.
SECTIONS: list[Callable[[ReportData], Section | None]] = [
    metrics_section,
    scoring_section,
    curves_section,
    confusion_section,
    kinds_section,
    errors_section,
    correct_section,
    discovery_section,
    undecidable_section,
    rejects_section,
    skipped_section,
]


def page(data: ReportData, sections=None) -> str:
    """The whole HTML page: title, summary, table of contents, then every section that has content."""
    built = [s for s in (fn(data) for fn in (SECTIONS if sections is None else sections)) if s is not None]
    toc = "".join(f'<li><a href="#{sid}">{html.escape(title)}</a></li>' for sid, title, _ in built)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                   for sid, title, content in built)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>tiledup evaluation</title>"
            f"<style>{CSS}</style></head><body><h1>tiledup evaluation: DupNet vs image-metric baselines</h1>"
            f'{summary(data)}<nav class="toc"><b>Contents</b><ol>{toc}</ol></nav>{body}</body></html>\n')


def write_report(scored: pd.DataFrame, metrics: dict, images_dir, out_dir, gallery_errors: int,
                 gallery_correct: int, thumb: int, seed: int, extra: dict | None = None) -> None:
    """Write report.html, errors.csv, roc.png and pr.png into out_dir."""
    out_dir = Path(out_dir)
    methods = dupnet_first(metrics["validation"]["methods"])
    roc, pr = curves(scored, methods)
    write_bytes(roc, out_dir / "roc.png")
    write_bytes(pr, out_dir / "pr.png")
    errors = (dupnet_errors(scored, metrics["methods"]["dupnet"]["threshold"]) if metrics["methods"]
              else scored.iloc[:0].assign(kind=pd.Series(dtype=str), margin=pd.Series(dtype=float)))
    write_text(errors_csv(errors, methods), out_dir / "errors.csv")
    data = ReportData(scored=scored, metrics=metrics, images_dir=Path(images_dir), out_dir=out_dir,
                      errors=errors, roc=roc, pr=pr, gallery_errors=gallery_errors,
                      gallery_correct=gallery_correct, thumb=thumb, seed=seed, extra=extra or {})
    text = page(data)
    write_text(text, out_dir / "report.html")
    log.info("%s: %.1f MB, %d gallery panels", out_dir / "report.html", len(text.encode()) / 1e6,
                text.count("<figure>"))


def write_bytes(data: bytes, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def evaluate_and_report(*, gallery_errors: int, gallery_correct: int, thumb: int, mosaics: int, mosaic_tile: int,
                        **evaluate_args) -> dict:
    """The `evaluate` rule: tiledup.evaluate.evaluation.evaluate, then the report from its result.

    Keywords = the `evaluate` config block: the report's own (gallery, thumbnails, mosaics of the
    `mosaics` largest groups at `mosaic_tile` pixels per tile) and the evaluation's.
    """
    result = evaluate(**evaluate_args)
    m = result.metrics
    discovery = ({"figures": m["discovery"], "groups": result.groups_path, "mosaics": mosaics,
                  "tile_px": mosaic_tile} if result.groups_path else None)
    write_report(result.scored, m, evaluate_args["images_dir"], evaluate_args["out_dir"],
                 gallery_errors=gallery_errors, gallery_correct=gallery_correct, thumb=thumb,
                 seed=evaluate_args["val_seed"], extra={"discovery": discovery})
    return m


# Its keywords are the report's and the evaluation's: the command line checks a config key against both.
evaluate_and_report.__signature__ = inspect.Signature([
    *(p for p in inspect.signature(evaluate_and_report).parameters.values() if p.kind is p.KEYWORD_ONLY),
    *(p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(evaluate).parameters.values()),
])

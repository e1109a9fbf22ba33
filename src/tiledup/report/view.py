"""The report's content as plain data (dicts, lists, strings, numbers); the templates only lay it out.

Order of the page: the user's dataset first (summary, duplicates found, groups,
conflicts, undecidable overlaps), then the model, then the evaluation against a
truth when there is one, then the rejected images and skipped truth lines.
Every list on the page is capped (`list_cap`, the galleries by their own keys);
each says where its full list is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from tiledup.discovery.groups import decided_overlaps
from tiledup.discovery.summary import by_verdicts, contentless_text, counted, found, read_leaks_file
from tiledup.grid import partner_tag
from tiledup.run.io import read_table
from tiledup.run.progress import Progress
from tiledup.report import mosaics as mosaic_pictures
from tiledup.report.html import data_uri
from tiledup.report.pictures import panel_uri

log = logging.getLogger(__name__)

COLUMNS = [  # (metrics key, header, higher is better)
    ("roc_auc", "ROC-AUC", True), ("average_precision", "AP", True), ("accuracy", "accuracy", True),
    ("precision", "precision", True), ("recall", "recall", True), ("f1", "F1", True),
    ("errors", "errors", False), ("threshold", "threshold", None),
]


def dupnet_first(methods) -> list[str]:
    """Method names in their given order, DupNet moved to the front."""
    return sorted(methods, key=lambda m: m != "dupnet")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _f(x, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def link(data, path) -> dict:
    """A link from the report to one of the run's files (relative, so the folder can move)."""
    return {"href": os.path.relpath(path, data.out_dir), "text": Path(path).name}


# ---------------------------------------------------------------- the run's own result

def load_found(data) -> dict | None:
    """Discovery's tables (verify's overlaps with a person's verdicts applied, groups, split, conflicts) when
    the run has them."""
    paths = data.found_paths
    if not paths or not all(paths.get(k) for k in ("overlaps", "groups", "split", "conflicts")):
        return None
    groups = read_table(paths["groups"], ["image_id", "group", "row", "col", "n_images"], "groups table").to_pandas()
    overlaps = decided_overlaps(paths["overlaps"], paths.get("verdicts"), groups.image_id,
                                ["img1", "img2", "tag", "score", "is_dup", "certain", "n_tile_pairs", "n_informative"])
    conflicts = read_table(paths["conflicts"], ["kind", "img1", "img2", "tag", "score", "is_dup", "verdict",
                                                "group1", "group2"], "conflicts table").to_pandas()
    split = pd.read_csv(paths["split"], dtype={"image_id": str, "split": str})
    return {"overlaps": overlaps, "groups": groups, "conflicts": conflicts, "split": split,
            "counts": found(overlaps, groups, split, conflicts), "leaks_file": read_leaks_file(paths["groups"])}


def model_name(metrics: dict) -> str | None:
    """metrics.json's "model" (which DupNet was used), as one line, when the evaluation recorded it."""
    model = metrics.get("model")
    if model is None:
        return None
    if isinstance(model, dict):  # training's choice.json: which model, on how many pairs, and why
        pairs = model.get("train_pairs")
        return (f"{model.get('model')}" + (f" ({pairs:,} training pairs)" if pairs is not None else "")
                + (f": {model['why']}" if model.get("why") else ""))
    return str(model)


def summary(data, f: dict | None) -> dict:
    """The top of the page: the dataset's result in a few lines, then the evaluation's headline."""
    m, rejects = data.metrics, data.metrics["rejects"]
    items = [{"label": "Chips", "text": f"{rejects['n_images']:,} in {data.images_dir}"
              + (f", {rejects['n_rejected']:,} rejected (see below)" if rejects["n_rejected"] else
                 ", every one tiled"), "links": [{"href": "#rejects", "text": "rejects"}] if rejects["n_rejected"] else []}]
    if f:
        c, paths = f["counts"], data.found_paths
        removable = paths.get("removable")
        n_removable = len(Path(removable).read_text().split()) if removable and Path(removable).exists() else None
        items.append({"label": "Duplicates found",
                      "text": f"{counted(c['duplicates'], 'duplicate overlap')}{by_verdicts(c)} between "
                              f"{counted(c['chips_with_duplicates'], 'chip')}, of "
                              f"{counted(c['candidates'], 'candidate overlap')} scored by DupNet"
                              + (f"; {counted(n_removable, 'chip')} "
                                 f"{'is a full-overlap copy' if n_removable == 1 else 'are full-overlap copies'} "
                                 "of a kept chip, safe to drop" if n_removable is not None else ""),
                      "links": [{"href": "#duplicates", "text": "gallery"}]
                      + [link(data, paths[k]) for k in ("duplicates", "removable") if paths.get(k)]})
        items.append({"label": "Groups",
                      "text": f"{counted(c['multi_image_groups'], 'group')} of two or more chips (largest "
                              f"{c['largest_group']:,}); {counted(c['groups'] - c['multi_image_groups'], 'chip')} "
                              f"{'has' if c['groups'] - c['multi_image_groups'] == 1 else 'have'} no duplicate",
                      "links": [{"href": "#groups", "text": "mosaics"}, link(data, paths["groups"])]})
        sizes = ", ".join(f"{s} {counted(v['images'], 'chip')} ({counted(v['groups'], 'group')})"
                          for s, v in c["split"].items())
        leaks = c["leaks"]
        check = ("leak check: no found duplicate crosses two splits" if not leaks["overlaps"] else
                 f"leak check: {counted(leaks['overlaps'], 'found duplicate')} "
                 f"{'crosses' if leaks['overlaps'] == 1 else 'cross'} two splits ({counted(leaks['images'], 'chip')})")
        lf = f["leaks_file"]
        if lf and "candidate_overlaps" in lf:  # leaks.json (groups rule): the same place at any time
            check += (f"; candidate overlaps that place their chips (same place, any time) across splits: "
                      f"{lf['candidate_overlaps_across_splits']:,} of {lf['candidate_overlaps']:,} "
                      f"(split.by: {lf['split_by']})")
        check += contentless_text(lf)
        items.append({"label": "Split", "text": f"{sizes}; {check}", "links": [link(data, paths["split"])]})
        kinds = ", ".join(f"{k}: {v:,}" for k, v in c["conflicts_by_kind"].items())
        items.append({"label": "Conflicts", "text": f"{counted(c['conflicts'], 'decided overlap')} the mosaic groups overrule (the split still keeps "
                      "every decided duplicate's chips together)"
                      + (f" ({kinds})" if kinds else ""), "links": [{"href": "#conflicts", "text": "list"}]})
        items.append({"label": "Undecidable", "text": f"{counted(c['undecidable'], 'candidate overlap')} with no "
                      "tile pair that is evidence either way (e.g. cloud or no-data on both sides): not decided",
                      "links": [{"href": "#undecidable", "text": "list"}]})
    model = model_name(m)
    if model:
        items.append({"label": "Model", "text": f"DupNet: {model}", "links": [{"href": "#model", "text": "model"}]})
    return {"items": items, "evaluation": evaluation_headline(data)}


def evaluation_headline(data) -> list[str]:
    """What the truth says about DupNet (or that there is no truth), in plain sentences."""
    m = data.metrics
    if m["truth"] is None:
        reason = m.get("note", "").split(": ", 1)[-1]
        return [f"No truth was given, so nothing above is checked against labels ({reason}). The model "
                "section shows the thresholds chosen on the validation split."]
    skipped = len(m["skipped_truth_lines"])
    lines = [f"Evaluation against {m['truth']}: {counts_sentence(m['counts'])}."
             + (f" {skipped} truth line(s) skipped (not counted; see below)." if skipped else "")]
    methods = m["methods"]
    if methods:
        dn, beats = methods["dupnet"], m.get("dupnet_beats_every_baseline", {})
        text = (f"DupNet: accuracy {_f(dn['accuracy'], 3)}, ROC-AUC {_f(dn['roc_auc'], 3)}, F1 {_f(dn['f1'], 3)} "
                f"at threshold {dn['threshold']:.3g}; {counted(dn['errors'], 'error')} in "
                f"{counted(m['counts']['decidable']['overlaps'], 'decidable overlap')} "
                f"({counted(dn['confusion']['fp'], 'false duplicate')}, "
                f"{counted(dn['confusion']['fn'], 'missed duplicate')}).")
        for key, name in (("roc_auc", "ROC-AUC"), ("accuracy", "accuracy")):
            base = {k: v[key] for k, v in methods.items() if k != "dupnet" and v[key] is not None}
            if base:
                top = max(base, key=base.get)
                answer = {True: "yes", False: "no", None: "undefined"}[beats.get(key)]
                text += (f" Best baseline on {name}: {top} {base[top]:.3f} ({counted(methods[top]['errors'], 'error')}); "
                         f"DupNet better than every baseline: {answer}.")
        lines.append(text)
    return lines


def counts_sentence(counts: dict) -> str:
    """All overlaps = decidable + undecidable, each as duplicates + not: counts that add up."""
    def part(c):
        return f"{counted(c['dup'], 'duplicate')} + {c['nondup']:,} not"

    a, d, u = counts["all"], counts["decidable"], counts["undecidable"]
    return (f"{counted(a['overlaps'], 'labelled overlap')} ({part(a)}) = {d['overlaps']:,} decidable ({part(d)}) "
            f"+ {u['overlaps']:,} undecidable ({part(u)}; no tile pair is evidence either way, so not scored)")


def cards(data, rows: pd.DataFrame, what: str, describe, maps: bool = True) -> list[dict]:
    """Gallery cards (panel picture + caption lines) for overlap rows; describe(row) -> (label, css, lines)."""
    out = []
    with Progress(f"report {what}", len(rows), "overlaps", log=log) as progress:
        for r in rows.itertuples():
            label, css, lines = describe(r)
            src, problem = panel_uri(data.images_dir, r.img1, r.img2, r.tag, data.thumb, maps)
            out.append({"src": src, "problem": problem, "alt": f"{r.img1} {r.img2} {r.tag}", "label": label,
                        "css": css, "lines": lines})
            progress.update()
    return out


def _found_by(r) -> str:
    """Who decided a found duplicate: a person's verdict (with verify's score, if it scored the overlap),
    the certain evidence, or DupNet's score."""
    if r.verdict:
        return "a person's verdict" + ("" if pd.isna(r.score) else f" (verify: DupNet {r.score:.3f})")
    return ("certain: pixels equal up to JPEG noise" if not pd.isna(r.certain) and bool(r.certain)
            else f"DupNet {r.score:.3f}")


def duplicates_section(data, f) -> dict:
    dups = f["overlaps"][f["overlaps"].is_dup.fillna(False).astype(bool)]
    # most uncertain first: every duplicate verify found scored at least the threshold, so the lowest
    # score; a person's verdicts after them
    shown = dups.sort_values(["verdict", "score", "img1", "img2", "tag"]).head(data.gallery_duplicates)
    items = cards(data, shown, "duplicates gallery", lambda r: (
        _found_by(r), "ok",
        [f"{r.img1} × {r.img2}", f"tag {r.tag} (partner {partner_tag(r.tag)})"
         + ("" if pd.isna(r.n_tile_pairs) else
            f", {int(r.n_informative)}/{int(r.n_tile_pairs)} tile pairs informative")]), maps=False)
    paths = data.found_paths
    return {"id": "duplicates", "title": f"Duplicates found ({len(dups):,})", "template": "duplicates.html.j2",
            "shown": len(shown), "total": len(dups), "by_verdicts": int(dups.verdict.sum()), "cards": items, "cap_key": "evaluate.gallery_duplicates",
            "links": [link(data, paths[k]) for k in ("duplicates", "overlaps") if paths.get(k)]}


def groups_section(data, f) -> dict:
    c = f["counts"]
    pictures = mosaic_pictures.mosaics(f["groups"], data.images_dir, data.mosaics, data.mosaic_tile)
    return {"id": "groups", "title": f"Groups ({c['multi_image_groups']:,} of two or more chips)",
            "template": "groups.html.j2", "mosaics": pictures, "total": c["multi_image_groups"],
            "largest": c["largest_group"], "links": [link(data, data.found_paths[k]) for k in ("groups", "split")]}


def conflicts_section(data, f) -> dict:
    conflicts = f["conflicts"]
    rows = [{"kind": r.kind, "img1": r.img1, "img2": r.img2, "tag": r.tag, "score": _f(r.score, 3),
             "decided": "duplicate" if r.is_dup else "not duplicate",
             "by": "a person's verdict" if r.verdict else "verify",
             "groups": f"{r.group1} / {r.group2}"}
            for r in conflicts.head(data.list_cap).itertuples()]
    return {"id": "conflicts", "title": f"Conflicts ({len(conflicts):,})", "template": "conflicts.html.j2",
            "rows": rows, "total": len(conflicts), "link": link(data, data.found_paths["conflicts"])}


def undecidable_section(data, f) -> dict:
    und = f["overlaps"][f["overlaps"].is_dup.isna()].sort_values(["img1", "img2", "tag"])
    rows = [{"img1": r.img1, "img2": r.img2, "tag": r.tag, "tile_pairs": int(r.n_tile_pairs)}
            for r in und.head(data.list_cap).itertuples()]
    return {"id": "undecidable", "title": f"Undecidable overlaps ({len(und):,})", "template": "undecidable.html.j2",
            "rows": rows, "total": len(und), "link": link(data, data.found_paths["overlaps"])}


# ---------------------------------------------------------------- the model and the evaluation

def model_section(data) -> dict:
    val = data.metrics["validation"]
    rows = [{"method": m, "threshold": _f(val["methods"][m]["threshold"]), "accuracy": _f(val["methods"][m]["accuracy"]),
             "roc_auc": _f(val["methods"][m]["roc_auc"])} for m in dupnet_first(val["methods"])]
    return {"id": "model", "title": "The model: DupNet and the thresholds", "template": "model.html.j2",
            "model": model_name(data.metrics), "rows": rows, "n_pairs": val["n_pairs"], "n_dup": val["n_dup"],
            "threshold_rule": data.metrics["threshold_rule"]}


def metrics_section(data) -> dict:
    methods, validation = data.metrics["methods"], data.metrics["validation"]["methods"]
    names = dupnet_first(methods)
    best = {}
    for key, _, higher in COLUMNS:
        vals = [methods[m][key] for m in names if methods[m][key] is not None]
        if higher is not None and vals:
            best[key] = max(vals) if higher else min(vals)
    rows = []
    for m in names:
        cells = [{"text": "n/a" if methods[m][key] is None else (str(methods[m][key]) if key == "errors"
                                                                  else f"{methods[m][key]:.4f}"),
                  "best": methods[m][key] is not None and key in best and methods[m][key] == best[key]}
                 for key, _, _ in COLUMNS]
        val = validation.get(m, {})
        cells += [{"text": _f(val.get("accuracy")), "best": False}, {"text": _f(val.get("roc_auc")), "best": False}]
        rows.append({"method": m, "cells": cells})
    return {"id": "metrics", "title": "Metrics (decidable overlaps)", "template": "metrics.html.j2",
            "headers": [h for _, h, _ in COLUMNS] + ["val. accuracy", "val. ROC-AUC"], "rows": rows}


def curves_section(data) -> dict:
    return {"id": "curves", "title": "ROC and precision-recall", "template": "curves.html.j2",
            "roc": data_uri(data.roc, "image/png"), "pr": data_uri(data.pr, "image/png")}


def confusion_section(data) -> dict:
    return {"id": "confusion", "title": "Confusion matrices", "template": "confusion.html.j2",
            "methods": [{"name": m, **v["confusion"]} for m, v in data.metrics["methods"].items()]}


def kinds_section(data) -> dict | None:
    by_kind = data.metrics.get("by_kind")
    if not by_kind:
        return None
    others = [m for m in dupnet_first(data.metrics["validation"]["methods"]) if m != "dupnet"]
    rows = []
    for kind, k in by_kind.items():
        d = k["methods"]["dupnet"]
        rows.append([kind, f"{k['n_overlaps']:,}", f"{k['n_same_time']:,}", f"{k['n_other_time']:,}",
                     f"{k['n_undecidable']:,}", _f(d["accuracy"]), str(d["false_dup"]), str(d["false_nondup"]),
                     *(str(k["methods"][m]["errors"]) for m in others)])
    headers = ["kind", "overlaps", "same time", "other time", "undecidable", "DupNet accuracy", "DupNet false dup",
               "DupNet false non-dup", *(f"{m} errors" for m in others)]
    return {"id": "kinds", "title": "Errors by kind of overlap", "template": "kinds.html.j2",
            "headers": headers, "rows": rows}


def _scores(r, methods) -> str:
    return " ".join(f"{m} {getattr(r, m):.3f}" for m in methods if m != "dupnet")


def errors_section(data) -> dict:
    n, shown = len(data.errors), data.errors.head(data.gallery_errors)
    methods = dupnet_first(data.metrics["validation"]["methods"])
    ranks = {i: k + 1 for k, i in enumerate(shown.index)}
    items = cards(data, shown, "error gallery", lambda r: (
        f"#{ranks[r.Index]} {r.kind}", "fp" if r.kind == "false duplicate" else "fn",
        [f"DupNet {r.dupnet:.3f}", f"{r.img1} × {r.img2}, tag {r.tag} (partner {partner_tag(r.tag)}), "
         f"truth: {'dup' if r.is_dup else 'not dup'}, {r.n_informative}/{r.n_tile_pairs} tile pairs informative",
         _scores(r, methods)]))
    return {"id": "errors", "title": f"DupNet errors ({n:,})", "template": "errors.html.j2", "total": n,
            "shown": len(shown), "cards": items, "legend": data.legend}


def correct_section(data) -> dict | None:
    if data.gallery_correct <= 0:
        return None
    decided = data.scored[data.scored.decidable]
    right = decided.drop(data.errors.index)
    sample = right.sample(n=min(data.gallery_correct, len(right)), random_state=data.seed).sort_index()
    methods = dupnet_first(data.metrics["validation"]["methods"])
    items = cards(data, sample, "correct sample", lambda r: (
        "correct: " + ("duplicate" if r.is_dup else "not duplicate"), "ok",
        [f"DupNet {r.dupnet:.3f}", f"{r.img1} × {r.img2}, tag {r.tag}", _scores(r, methods)]))
    return {"id": "correct", "title": f"A sample of correct DupNet decisions ({len(sample)} of {len(right):,})",
            "template": "correct.html.j2", "cards": items}


def discovery_truth_section(data) -> dict | None:
    """Discovery against the truth: candidate recall, verify's precision and recall, group purity."""
    d = data.metrics.get("discovery")
    if not d or "candidates" not in d:
        return None
    cand, dec, pur = d["candidates"], d["decisions"], d["groups"]
    rows = [
        ("candidate recall (decidable truth duplicates that are candidates)",
         f"{_pct(cand['recall'])} of {cand['n_truth_dups_decidable']} ({cand.get('n_missed', len(cand['missed']))} missed)"),
        ("... without implied overlaps", _pct(cand["recall_without_implied"])),
        ("verify precision", f"{_pct(dec['precision'])} ({dec['fp']} false duplicates, "
                             f"{dec['fp_not_in_truth']} of them not in the truth)"),
        ("verify recall", f"{_pct(dec['recall'])} ({dec['fn']} truth duplicates missed)"),
        ("impure groups", f"{pur['n_impure']} of {pur['n_multi_image_groups']} multi-image groups "
                          f"({pur['impure_images']} images); {pur['n_impure_explained_by_dupnet_errors']} "
                          f"explained by DupNet's false duplicates. Impure = {pur['rule']}"),
    ]
    return {"id": "discovery", "title": "Discovery against the truth: candidates, decisions, groups",
            "template": "discovery.html.j2", "rows": rows}


def truth_undecidable_section(data) -> dict | None:
    und = data.metrics["undecidable"]
    if not und:
        return None
    c = data.metrics["counts"]["undecidable"]
    return {"id": "truth-undecidable", "title": f"Undecidable truth overlaps ({c['overlaps']:,})",
            "template": "truth_undecidable.html.j2", "rows": und[:data.list_cap], "total": c["overlaps"],
            "dup": c["dup"], "nondup": c["nondup"]}


def skipped_section(data) -> dict | None:
    skipped = data.metrics["skipped_truth_lines"]
    if not skipped:
        return None
    return {"id": "skipped", "title": f"Skipped truth lines ({len(skipped):,})", "template": "skipped.html.j2",
            "rows": skipped[:data.list_cap], "total": len(skipped)}


def rejects_section(data, show: int | None = None) -> dict:
    """Images the tile stage rejected: count, reasons, and the first `show` file names."""
    show = data.list_cap if show is None else show
    rejects = data.metrics["rejects"]
    n, k = rejects["n_images"], rejects["n_rejected"]
    return {"id": "rejects", "title": f"Rejected images ({k:,} of {n:,})", "template": "rejects.html.j2",
            "total": k, "reasons": list(rejects["by_reason"].items()), "images": rejects["images"][:show],
            "show": show}


def sections(data) -> tuple[dict | None, list[dict]]:
    """(the run's discovery tables or None, the page's sections in order)."""
    f = load_found(data)
    out = []
    if f:
        out += [duplicates_section(data, f), groups_section(data, f), conflicts_section(data, f),
                undecidable_section(data, f)]
    out.append(model_section(data))
    if data.has_truth:
        out += [metrics_section(data), curves_section(data), confusion_section(data), kinds_section(data),
                errors_section(data), correct_section(data), discovery_truth_section(data)]
    out += [truth_undecidable_section(data), rejects_section(data), skipped_section(data)]
    return f, [s for s in out if s is not None]


def page_view(data) -> dict:
    f, parts = sections(data)
    return {"images": str(data.images_dir), "summary": summary(data, f), "sections": parts,
            "has_truth": data.has_truth}

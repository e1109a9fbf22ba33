"""What a run found, in numbers: the console summary at its end, and the report's summary reads it too.

The decisions counted are verify's with a person's verdicts (config `verdicts`)
applied, as the groups, the split and the exports take them; the summary says
how many duplicates the verdicts decided.

Split leak check: a duplicate overlap that verify found (or a person's verdict
confirmed) between chips in two different splits leaks. The groups rule keeps
every decided duplicate's chips in one split, so the check should find none; it
counts those overlaps and the chips involved, so a split edited by hand shows.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tiledup.discovery.groups import decided_overlaps
from tiledup.pairs.dataset import SPLITS
from tiledup.run.io import read_table, write_text
from tiledup.tiles.rejects import show_rejects


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """"1 group", "2 groups", "1,234 chips": the count with the noun in the number it takes."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def contentless_text(leaks_file: dict | None) -> str:
    """"; 3 contentless chips (every tile solid...): train 3" from the groups rule's leaks.json, or ""."""
    per_split = (leaks_file or {}).get("contentless_images") or {}
    n = sum(per_split.values())
    if not n:
        return ""
    return (f"; {counted(n, 'contentless chip')} (every tile solid: duplicates unseen, so a unit of "
            f"only such chips goes to train): " + ", ".join(f"{s} {per_split[s]:,}" for s in SPLITS
                                                            if per_split.get(s)))


def split_leaks(overlaps: pd.DataFrame, split: pd.DataFrame) -> dict:
    """Found duplicate overlaps whose two chips are in different splits, and how many chips they touch."""
    where = dict(zip(split.image_id, split.split))
    dups = overlaps[overlaps.is_dup.fillna(False).astype(bool)]
    # a bool array, not a list: an empty list would select columns (no duplicate found)
    crossing = dups[np.array([where.get(a) != where.get(b) for a, b in zip(dups.img1, dups.img2)], bool)]
    return {"overlaps": int(len(crossing)), "images": int(len(set(crossing.img1) | set(crossing.img2)))}


def found(overlaps: pd.DataFrame, groups: pd.DataFrame, split: pd.DataFrame, conflicts: pd.DataFrame) -> dict:
    """Counts of what discovery found: duplicates, undecidable overlaps, groups, conflicts, split sizes, leaks.

    overlaps: decided_overlaps' (verify's with a person's verdicts applied, `verdict` and `candidate` columns).
    """
    dups = overlaps[overlaps.is_dup.fillna(False).astype(bool)]
    sizes = groups.drop_duplicates("group").n_images
    per_split = split.split.value_counts().reindex(SPLITS, fill_value=0)
    groups_per_split = split.drop_duplicates("group").split.value_counts().reindex(SPLITS, fill_value=0)
    return {
        "chips": int(len(groups)),
        "candidates": int(overlaps.candidate.sum()),
        "duplicates": int(len(dups)),
        "chips_with_duplicates": int(len(set(dups.img1) | set(dups.img2))),
        "undecidable": int(overlaps.is_dup.isna().sum()),
        "verdicts": int(overlaps.verdict.sum()),
        "duplicates_by_verdicts": int(dups.verdict.sum()),
        "groups": int(len(sizes)),
        "multi_image_groups": int((sizes > 1).sum()),
        "largest_group": int(sizes.max()) if len(sizes) else 0,
        "conflicts": int(len(conflicts)),
        "conflicts_by_kind": {str(k): int(v) for k, v in conflicts.kind.value_counts().items()},
        "split": {s: {"images": int(per_split[s]), "groups": int(groups_per_split[s])} for s in SPLITS},
        "leaks": split_leaks(overlaps, split),
    }


def read_found(overlaps_path, groups_path, split_path, conflicts_path, verdicts_path=None) -> dict:
    groups = read_table(groups_path, ["image_id", "group", "n_images"], "groups table").to_pandas()
    overlaps = decided_overlaps(overlaps_path, verdicts_path, groups.image_id, ["img1", "img2", "tag", "score", "is_dup"])
    conflicts = read_table(conflicts_path, ["kind"], "conflicts table").to_pandas()
    split = pd.read_csv(split_path, dtype={"image_id": str, "split": str})
    return {**found(overlaps, groups, split, conflicts), "leaks_file": read_leaks_file(groups_path)}


def read_leaks_file(groups_path) -> dict | None:
    """The groups rule's leaks.json beside its groups table, if there is one."""
    path = Path(groups_path).with_name("leaks.json")
    return json.loads(path.read_text()) if path.exists() else None


def by_verdicts(f: dict) -> str:
    """" (2 by a person's verdicts)" after the duplicates count when verdicts were given, else ""."""
    return f" ({f['duplicates_by_verdicts']:,} by a person's verdicts)" if f["verdicts"] else ""


def summary_lines(f: dict, split_path, report_path, removable_path=None, n_removable: int | None = None) -> list[str]:
    """The run's result in a few lines: duplicates, groups, the split and where things are."""
    leaks = f["leaks"]
    sizes = ", ".join(f"{s} {v['images']:,}" for s, v in f["split"].items())
    lines = [
        f"Duplicates found: {counted(f['duplicates'], 'overlap')}{by_verdicts(f)} between "
        f"{f['chips_with_duplicates']:,} of {counted(f['chips'], 'chip')} "
        f"({counted(f['undecidable'], 'overlap')} undecidable)"
        + (f"; {counted(n_removable, 'chip')} safe to drop: {removable_path}" if n_removable is not None else ""),
        f"Groups: {f['multi_image_groups']:,} of two or more chips (largest {f['largest_group']:,}); "
        f"{counted(f['conflicts'], 'decided overlap')} overruled in the mosaics (conflicts.parquet)",
        f"Split: {sizes} chips, every decided duplicate's chips together: {split_path}; "
        + ("no found duplicate crosses two splits" if not leaks["overlaps"] else
           f"{counted(leaks['overlaps'], 'found duplicate')} "
           f"{'crosses' if leaks['overlaps'] == 1 else 'cross'} two splits ({counted(leaks['images'], 'chip')})")
        + contentless_text(f.get("leaks_file")),
        f"Report: {report_path}",
    ]
    return lines


def print_summary(*, manifest, rejects, overlaps, groups, split, conflicts, removable, report, verdicts=None,
                  split_check=None, save=None) -> None:
    """Print what exists of the summary (a run of one target reaches only some steps), then the rejects.

    split_check: the split_check rule's JSON when the run checks a user's split (config `split_check`).
    save: a text file to keep the printed summary in (`tiledup run` shows it again when a re-run has
    nothing to do)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _print_summary(manifest, rejects, overlaps, groups, split, conflicts, removable, report, verdicts,
                       split_check)
    print(out.getvalue(), end="")
    if save:
        write_text(out.getvalue(), save)


def _print_summary(manifest, rejects, overlaps, groups, split, conflicts, removable, report, verdicts,
                   split_check) -> None:
    lines = []
    if all(Path(p).exists() for p in (overlaps, groups, split, conflicts)):
        f = read_found(overlaps, groups, split, conflicts, verdicts)
        n_removable = len(Path(removable).read_text().split()) if Path(removable).exists() else None
        lines += summary_lines(f, split, report if Path(report).exists() else "not written yet (rule evaluate)",
                               removable, n_removable)
    if split_check and Path(split_check).exists():
        from tiledup.discovery.split_check import describe

        lines += [f"Your split checked ({split_check}, every leak in {Path(split_check).with_suffix('.csv')}):",
                  *(f"  {line}" for line in describe(json.loads(Path(split_check).read_text())))]
    if lines:
        print("\n".join(lines))
    show_rejects(manifest, rejects)

"""Check a user's existing train / val / test split against the duplicates found (`tiledup check-split`).

A split leaks when two chips of one same-time place sit in two splits. The
check reads the split (a CSV with an image column and a split column), verify's
decided overlaps (a person's verdicts replace them where given) and the groups,
and lists every decided-duplicate overlap whose chips sit in two splits, with
its tag (how much of the chips overlaps) and score; then the chips and groups
involved, the split units (connected components of decided duplicates, as the
groups rule's split) cut by the split, and a count per pair of splits.

FiftyOne's leaky-splits check (fiftyone.brain.compute_leaky_splits) compares
whole images by embedding distance under one threshold: two chips that share a
third of their area are far apart as whole images, so most Airbus overlaps
(24 of the 25 tags are partial) are invisible to it, and a near-identical pair
of the same place at another time looks like a leak. Here a leak is an overlap
decided duplicate tile pair by tile pair at its exact position (tag), a partial
overlap included, and the same place at another time is not one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tiledup.discovery.groups import LOGGED, components, decided_overlaps
from tiledup.run.errors import TiledupError, listing
from tiledup.run.io import atomic_path, read_table, write_json

log = logging.getLogger(__name__)

# Column names accepted for the image and the split (case and spaces ignored), most specific first.
IMAGE_COLUMNS = ("image_id", "imageid", "image", "image_name", "filename", "file_name", "file", "path",
                 "img", "name", "id")
SPLIT_COLUMNS = ("split", "subset", "set", "fold", "partition", "stage")
# by_verdict: a person's verdict (config `verdicts`) decided the overlap a duplicate, not verify
LEAK_COLUMNS = ["img1", "img2", "tag", "score", "n_informative", "by_verdict", "split1", "split2", "group1", "group2"]


def _column(columns: list[str], wanted: tuple[str, ...], what: str, path) -> str:
    norm = {c.strip().lower().replace(" ", "_").replace("-", "_"): c for c in columns}
    for w in wanted:
        if w in norm:
            return norm[w]
    raise TiledupError(f"{path}:1: no {what} column among {', '.join(map(repr, columns))} "
                       f"(expected one of {', '.join(wanted)})")


def read_split(path, image_ids) -> tuple[pd.DataFrame, list[str]]:
    """(image_id, split, line) of the chips the split names that are among image_ids, and the names it
    gives that are not.

    Lenient: any accepted column names; a path or a name without .jpg matches the chip's file name.
    Empty fields and a chip given two different splits are errors naming the file and line.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise TiledupError(f"{path}: cannot read the split as CSV ({e})") from None
    image_col = _column(list(df.columns), IMAGE_COLUMNS, "image", path)
    split_col = _column(list(df.columns), SPLIT_COLUMNS, "split", path)
    df = pd.DataFrame({"given": df[image_col].str.strip(), "split": df[split_col].str.strip().str.lower(),
                       "line": np.arange(len(df)) + 2})  # line 1 is the header
    empty = df[(df.given == "") | (df.split == "")]
    if len(empty):
        raise TiledupError(listing(f"{path}: {len(empty)} line(s) without an image or a split:",
                                   [f"{path}:{n}: empty {image_col!r} or {split_col!r}" for n in empty.line]))
    # a name matches a chip by its file name, or by its stem when the split leaves out the extension
    names = df.given.str.replace("\\", "/", regex=False).str.rsplit("/", n=1).str[-1]
    known = set(image_ids)
    stems = {Path(i).stem: i for i in image_ids}
    df["image_id"] = [n if n in known else stems.get(n, stems.get(Path(n).stem)) for n in names]
    twice = df[df.image_id.notna()].groupby("image_id").filter(lambda g: g.split.nunique() > 1)
    if len(twice):
        bad = [f"{path}:{n}: {i} in {s}" for i, s, n in zip(twice.image_id, twice.split, twice.line)]
        raise TiledupError(listing(f"{path}: {twice.image_id.nunique()} chip(s) given two different splits:", bad))
    unknown = df[df.image_id.isna()].given.tolist()
    return df[df.image_id.notna()].drop_duplicates("image_id")[["image_id", "split", "line"]], unknown


def check_split(split_path, overlaps_path, groups_path, out_path=None, csv_path=None, verdicts_path=None) -> dict:
    """Leaks of a user's split: the JSON summary (also written to out_path) and every leaking overlap
    (written to csv_path)."""
    groups = read_table(groups_path, ["image_id", "group"], "groups table").to_pandas()
    overlaps = decided_overlaps(overlaps_path, verdicts_path, groups.image_id)
    split, unknown = read_split(split_path, groups.image_id)
    where = dict(zip(split.image_id, split.split))
    group_of = dict(zip(groups.image_id, groups.group))

    dups = overlaps[overlaps.is_dup.fillna(False).astype(bool)]
    s1, s2 = dups.img1.map(where), dups.img2.map(where)
    judged = dups[s1.notna() & s2.notna()]  # both chips in the user's split
    leaking = judged.assign(split1=s1, split2=s2)[s1[judged.index] != s2[judged.index]]
    leaking = leaking.assign(group1=leaking.img1.map(group_of), group2=leaking.img2.map(group_of),
                             by_verdict=leaking.verdict)
    leaking = leaking.sort_values(["split1", "split2", "img1", "img2", "tag"])[LEAK_COLUMNS]

    # units of the user's chips joined by decided duplicates, and how many the split cuts
    ids = split.image_id.to_numpy()
    index = {name: k for k, name in enumerate(ids)}
    units = components(len(ids), [(judged.img1.map(index).to_numpy(), judged.img2.map(index).to_numpy())])
    per_unit = pd.DataFrame({"unit": units, "split": split.split.to_numpy()}).groupby("unit").split.nunique()
    cut_groups = (split.assign(group=split.image_id.map(group_of)).groupby("group").split
                  .agg(lambda s: sorted(set(s))))
    cut_groups = cut_groups[cut_groups.map(len) > 1]
    pairs = (leaking.split1.where(leaking.split1 < leaking.split2, leaking.split2) + " / "
             + leaking.split2.where(leaking.split1 < leaking.split2, leaking.split1))
    chips = sorted(set(leaking.img1) | set(leaking.img2))
    summary = {
        "split": str(split_path),
        "n_images_in_split": int(len(split) + len(unknown)),
        "images_per_split": {k: int(v) for k, v in split.split.value_counts().sort_index().items()},
        "n_unknown_images": len(unknown), "unknown_images": unknown[:LOGGED],
        "n_images_not_in_split": int(len(set(groups.image_id) - set(where))),
        "decided_duplicate_overlaps": int(len(judged)),
        "leaking_overlaps": int(len(leaking)),
        "leaking_overlaps_by_split_pair": {k: int(v) for k, v in pairs.value_counts().sort_index().items()},
        "leaking_chips": len(chips),
        "units_cut": int((per_unit > 1).sum()), "units": int(len(per_unit)),
        "groups_cut": int(len(cut_groups)),
        "cut_groups": [{"group": int(g), "splits": s} for g, s in cut_groups.head(LOGGED).items()],
        "leaking": leaking.head(LOGGED).astype(object).where(leaking.head(LOGGED).notna(), None).to_dict("records"),
    }
    if out_path:
        write_json(summary, out_path)
    if csv_path:
        with atomic_path(csv_path) as tmp:
            leaking.to_csv(tmp, index=False)
    for o in leaking.head(LOGGED).itertuples():
        log.warning("leak: %s (%s) ~ %s (%s), tag %s, groups %s / %s", o.img1, o.split1, o.img2, o.split2, o.tag,
                    o.group1, o.group2)
    return summary


def describe(s: dict) -> list[str]:
    """The summary in a few lines of text (the log, and the command's output)."""
    pairs = ", ".join(f"{k}: {v}" for k, v in s["leaking_overlaps_by_split_pair"].items()) or "none"
    named = s["unknown_images"][:3]
    unknown = f" ({', '.join(named)}{', ...' if s['n_unknown_images'] > len(named) else ''})" if named else ""
    return [f"{s['split']}: {s['n_images_in_split']} images "
            f"({', '.join(f'{k} {v}' for k, v in s['images_per_split'].items())}); {s['n_unknown_images']} not "
            f"among the tiled chips{unknown}, {s['n_images_not_in_split']} tiled chips not in it",
            f"{s['leaking_overlaps']} of {s['decided_duplicate_overlaps']} decided-duplicate overlaps leak across "
            f"splits ({pairs}), {s['leaking_chips']} chips; the split cuts {s['units_cut']} of {s['units']} units "
            f"of duplicates and {s['groups_cut']} group{'' if s['groups_cut'] == 1 else 's'}"]

"""Exports for the tools users already have (rule `exports`, after `groups`).

Both follow the decisions after a person's verdicts (config `verdicts`), as the
groups and the split do: an overlap the verdicts call not duplicate is in
neither, one they call duplicate is in both, verify's decision or not.

- duplicates.json: every tiled image mapped to its duplicates, the way imagededup
  writes its duplicate map: {"a.jpg": [{"image": "b.jpg", "tag": "38", "score": 0.97}, ...]},
  the tag as seen from the key image (so b.jpg's entry for a.jpg carries the partner tag),
  score = verify's decision score (DupNet's minimum over the tile pairs, a certain pair counting 1.0;
  null for an overlap verify never scored). A duplicate a person's verdict decided has
  "by": "verdict" and comes first. Images without a duplicate map to []. Keys and lists are
  sorted (lists by score, highest first), so the file is byte-stable.
- removable.txt: chips that are safe to drop, one id per line: full-overlap (tag 08)
  duplicates of a chip that is kept. Chips joined by tag-08 duplicate decisions
  or with identical pixels (all 9 tile digests equal) form a set only where the groups
  place both at the same position (an edge the groups cut as a conflict joins nothing);
  each set keeps its smallest image id and lists the others.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tiledup.discovery.candidates import read_tile_hashes
from tiledup.discovery.groups import decided_overlaps, exact_duplicates
from tiledup.grid import partner_tag
from tiledup.run.io import read_table, write_text

log = logging.getLogger(__name__)

FULL = "08"  # full overlap: the two chips cover the same ground


def duplicate_map(image_ids, overlaps: pd.DataFrame) -> dict:
    """image -> its duplicates [{image, tag, score}], a person's verdicts first (with "by": "verdict"),
    then highest score first; [] for an image without one. overlaps: decided_overlaps' (or verify's)."""
    dups = overlaps[overlaps.is_dup.fillna(False).astype(bool)]
    by_verdict = dups.verdict.to_numpy(bool) if "verdict" in dups else [False] * len(dups)
    out: dict[str, list] = {str(i): [] for i in image_ids}
    for a, b, tag, score, verdict in zip(dups.img1, dups.img2, dups.tag, dups.score, by_verdict):
        s = None if pd.isna(score) else round(float(score), 4)
        by = {"by": "verdict"} if verdict else {}
        out.setdefault(a, []).append({"image": b, "tag": tag, "score": s, **by})
        out.setdefault(b, []).append({"image": a, "tag": partner_tag(tag), "score": s, **by})
    for entries in out.values():
        entries.sort(key=lambda e: ("by" not in e, -(e["score"] or 0.0), e["image"], e["tag"]))
    return dict(sorted(out.items()))


def removable(groups: pd.DataFrame, overlaps: pd.DataFrame, identical: list[list[str]]) -> list[str]:
    """Chips safe to drop: per set of full-overlap duplicates at one group position, all but the smallest id."""
    full = overlaps[overlaps.is_dup.fillna(False).astype(bool) & (overlaps.tag == FULL)]
    pairs = [*zip(full.img1, full.img2), *((s[0], o) for s in identical for o in s[1:])]
    if not pairs:
        return []
    index = {name: k for k, name in enumerate(groups.image_id)}
    place = list(zip(groups.group, groups.row, groups.col))
    a = np.array([index[x] for x, _ in pairs])
    b = np.array([index[y] for _, y in pairs])
    same = np.array([place[i] == place[j] for i, j in zip(a, b)], bool)
    n = len(groups)
    graph = coo_matrix((np.ones(same.sum()), (a[same], b[same])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    names = groups.image_id.to_numpy(object)
    frame = pd.DataFrame({"image_id": names, "set": label})
    sets = frame[frame.groupby("set").image_id.transform("size") > 1]
    keep = sets.groupby("set").image_id.transform("min")
    return sorted(sets.image_id[sets.image_id != keep])


def write_exports(overlaps_path, groups_path, tiles_paths, duplicates_path, removable_path,
                  verdicts_path=None) -> dict:
    """The `exports` rule: duplicates.json and removable.txt from verify's overlaps with a person's verdicts
    applied, the groups and the tiles."""
    groups = read_table(groups_path, ["image_id", "group", "row", "col"], "groups table").to_pandas()
    overlaps = decided_overlaps(overlaps_path, verdicts_path, groups.image_id,
                                ["img1", "img2", "tag", "score", "is_dup"])
    h = read_tile_hashes(tiles_paths)
    identical = [[str(h.image_ids[k]) for k in s] for s in exact_duplicates(h)]
    dmap = duplicate_map(groups.image_id, overlaps)
    drop = removable(groups, overlaps, identical)
    write_text(json.dumps(dmap, indent=1) + "\n", duplicates_path)
    write_text("".join(f"{i}\n" for i in drop), removable_path)
    n_with = sum(bool(v) for v in dmap.values())
    by_verdict = int((overlaps.verdict & overlaps.is_dup.fillna(False).astype(bool)).sum())
    log.info("%s: %d images, %d with duplicates (%d duplicate overlap(s) by a person's verdicts); %s: %d chips "
             "safe to drop", duplicates_path, len(dmap), n_with, by_verdict, removable_path, len(drop))
    return {"images": len(dmap), "with_duplicates": n_with, "removable": len(drop)}

"""verify: every tile pair of every candidate overlap scored by DupNet, decided as the evaluation does.

Each candidate goes through tiledup.scoring.overlaps, the code the evaluation uses on a
dup_truth file: expanded into its tile pairs, tile pairs that carry no evidence
left out, certain evidence first (a textured pair equal up to JPEG noise on real
structure is a certain duplicate, SAME), the others scored by DupNet, and the
overlap's score is the minimum over its informative tile pairs, a SAME pair
counting 1.0 (`decision`). So an overlap whose evidence pairs are all SAME
(`certain`) is a duplicate whatever DupNet says, and any other is a duplicate
when DupNet's score over its other pairs reaches `dupnet_threshold` (0.5, as in
the evaluation: no threshold is fitted on any truth); an overlap with no
informative tile pair is undecidable (is_dup null), never guessed. Only what
the decision needs is scored (score_pairs' `decide_at`): a non-duplicate's
score is the first DupNet score below the threshold, not always its minimum.

Candidates are scored in chunks of about `chunk` overlaps, in an order that
keeps each chip's overlaps close together (reverse Cuthill-McKee on the graph of
candidate overlaps): a chip is kept from its first chunk to its last, for at
most `held_chips` chips (those done soonest; the others are decoded again), so
memory is bounded whatever the dataset's size; progress is logged.

Outputs:
- overlaps.parquet (OVERLAP_SCHEMA), one row per candidate, sorted by img1, img2, tag;
- dup_truth.txt: `img1 img2 tag is_dup` for every decided overlap, undecidable ones
  as `#` comment lines, so a person can review it and feed it back as `truth`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from tiledup.run.errors import TiledupError
from tiledup.run.io import read_parquets, read_table, write_parquet, write_text
from tiledup.scoring.overlaps import TILE_COLUMNS, ChipCache, score_overlaps, tile_lookup
from tiledup.run.progress import Progress

log = logging.getLogger(__name__)

# Kept beside DupNet's score because they cost next to nothing: bmh and bmh96 come from the tile
# table, pixel_eq and pixel_mad from one cv2.absdiff of pixels already decoded. phash, dhash and
# colorhash (about 1 ms per tile) are left to the evaluation, which reads none of verify's columns.
BASELINES = ("bmh", "bmh96", "pixel_eq", "pixel_mad")
METHODS = ("dupnet", *BASELINES)  # all that verify scores
OVERLAP_SCHEMA = pa.schema([
    ("img1", pa.string()),
    ("img2", pa.string()),
    ("tag", pa.string()),
    ("how", pa.string()),             # from candidates: hash or implied
    ("votes", pa.int32()),            # tile matches that voted for it
    ("n_tile_pairs", pa.int8()),
    ("n_informative", pa.int8()),
    ("score", pa.float32()),          # DupNet, minimum over informative tile pairs, SAME pairs 1.0 (a non-duplicate:
                                      # the first pair scored below the threshold); null if undecidable
    ("is_dup", pa.bool_()),           # score >= threshold; null if undecidable
    ("certain", pa.bool_()),          # every informative tile pair SAME (a certain duplicate); null if undecidable
    *[(m, pa.float32()) for m in BASELINES],
])
CANDIDATE_COLUMNS = ["img1", "img2", "tag", "how", "votes"]


def chunks(overlaps: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk number of each overlap (about `size` per chunk), chips ordered so that each is used in few
    consecutive chunks: reverse Cuthill-McKee keeps the chips of overlapping candidates close."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n = len(overlaps)
    codes, uniques = pd.factorize(pd.concat([overlaps.img1, overlaps.img2], ignore_index=True))
    if n == 0:  # reverse Cuthill-McKee fails on an empty graph
        return np.zeros(0, np.int64), codes
    a, b = codes[:n], codes[n:]
    graph = coo_matrix((np.ones(2 * n, np.int8), (np.r_[a, b], np.r_[b, a])),
                       shape=(len(uniques), len(uniques))).tocsr()
    rank = np.empty(len(uniques), np.int64)
    rank[reverse_cuthill_mckee(graph, symmetric_mode=True)] = np.arange(len(uniques))
    order = np.lexsort((np.minimum(rank[a], rank[b]), np.maximum(rank[a], rank[b])))
    chunk = np.empty(n, np.int64)
    chunk[order] = np.arange(n) // size
    return chunk, codes


def verify(candidates_path, images_dir, model_path, tiles_paths, overlaps_path, truth_path, *,
           batch_size: int, device: str, dupnet_threshold: float, chunk: int, held_chips: int,
           evidence: dict) -> pd.DataFrame:
    """The `verify` rule: candidates.parquet -> overlaps.parquet and a reviewable dup_truth.txt.

    Keywords = the `verify` config block; `evidence` = the `evidence` block (shared with the evaluation).
    """
    from tiledup.model.dupnet import load_dupnet

    if not (isinstance(dupnet_threshold, (int, float)) and 0 <= dupnet_threshold <= 1):
        raise TiledupError(f"verify.dupnet_threshold must be a number in [0, 1], got {dupnet_threshold!r}")
    if batch_size < 1 or chunk < 1 or held_chips < 0:
        raise TiledupError(f"verify: batch_size and chunk must be >= 1 and held_chips >= 0, got {batch_size}, "
                           f"{chunk}, {held_chips}")
    start = time.perf_counter()
    cands = read_table(candidates_path, CANDIDATE_COLUMNS, "candidates table").to_pandas()
    images = set(cands.img1) | set(cands.img2)
    tiles = read_parquets(tiles_paths, TILE_COLUMNS, "tile table")
    table = tile_lookup(tiles, images)
    missing = sorted(images - set(table.images))
    if missing:
        raise TiledupError(f"{candidates_path}: {len(missing)} image(s) not in the tile tables, e.g. "
                           f"{', '.join(missing[:5])} (re-run the workflow)")
    model = load_dupnet(model_path, device)
    cache = ChipCache(images_dir)
    n = len(cands)
    chunk_of, codes = chunks(cands, chunk)
    last_chunk = np.zeros(codes.max() + 1 if n else 0, np.int64)  # last chunk that uses each chip
    np.maximum.at(last_chunk, codes, np.r_[chunk_of, chunk_of])
    names = pd.concat([cands.img1, cands.img2], ignore_index=True).to_numpy()
    name_of = dict(zip(codes, names))
    parts, held = [], set()
    n_chunks = int(chunk_of.max()) + 1 if n else 0
    order = np.argsort(chunk_of, kind="stable")  # each chunk's rows, in table order, without a scan per chunk
    bounds = np.searchsorted(chunk_of[order], np.arange(n_chunks + 1))
    with Progress("verify", n, "overlaps", log=log) as progress:
        for k in range(n_chunks):
            rows = order[bounds[k]:bounds[k + 1]]
            part = cands.iloc[rows].reset_index(drop=True)
            used = set(codes[rows]) | set(codes[n + rows])
            hold = {c for c in used if last_chunk[c] > k} - held  # chips later chunks need: keep them,
            if len(held) + len(hold) > held_chips:  # up to held_chips, those done soonest first; the others
                room = max(held_chips - len(held), 0)  # are decoded again when a later chunk needs them
                hold = set(sorted(hold, key=lambda c: (last_chunk[c], c))[:room])
            cache.expect(name_of[c] for c in hold)
            held |= hold
            scored, _ = score_overlaps(part[["img1", "img2", "tag"]], table, cache, model, batch_size, evidence,
                                       methods=METHODS, decide_at=dupnet_threshold)
            parts.append(pd.concat([part[["how", "votes"]], scored], axis=1))
            finished = {c for c in held if last_chunk[c] == k}
            cache.release(name_of[c] for c in finished)
            held -= finished
            progress.update(len(part))
    scored = pd.concat(parts, ignore_index=True) if parts else _empty(cands)
    scored = scored.sort_values(["img1", "img2", "tag"], ignore_index=True)
    out = overlaps_table(scored, dupnet_threshold)
    write_parquet(out, overlaps_path)
    write_text(truth_text(out, dupnet_threshold), truth_path)
    decided = scored.decidable.to_numpy(bool)
    dups = int((decided & (scored.decision.to_numpy() >= dupnet_threshold)).sum())
    log.info("%d candidate overlaps: %d duplicates (%d of them certain), %d not, %d undecidable; %d chips "
             "decoded for %d images in %.1f s", len(out), dups, int(scored.certain.sum()), int(decided.sum()) - dups,
             int((~decided).sum()), cache.decodes, len(images), time.perf_counter() - start)
    return scored


def _empty(cands: pd.DataFrame) -> pd.DataFrame:
    out = cands.assign(n_tile_pairs=0, n_informative=0, decidable=False, decision=np.float32(0), certain=False)
    for m in BASELINES:
        out[m] = np.float32(0)
    return out


def overlaps_table(scored: pd.DataFrame, threshold: float) -> pa.Table:
    """overlaps.parquet from scored candidates (score columns named by method, as overlaps.aggregate gives)."""
    undecided = ~scored.decidable.to_numpy(bool)
    score = scored.decision.to_numpy(np.float32)
    cols = {
        "img1": pa.array(scored.img1.astype(str), pa.string()),
        "img2": pa.array(scored.img2.astype(str), pa.string()),
        "tag": pa.array(scored.tag.astype(str), pa.string()),
        "how": pa.array(scored.how.astype(str), pa.string()),
        "votes": pa.array(scored.votes.to_numpy(np.int32), pa.int32()),
        "n_tile_pairs": pa.array(scored.n_tile_pairs.to_numpy(np.int8), pa.int8()),
        "n_informative": pa.array(scored.n_informative.to_numpy(np.int8), pa.int8()),
        "score": pa.array(score, pa.float32(), mask=undecided),
        "is_dup": pa.array(score >= threshold, pa.bool_(), mask=undecided),
        "certain": pa.array(scored.certain.to_numpy(bool), pa.bool_(), mask=undecided),
    }
    for m in BASELINES:
        cols[m] = pa.array(scored[m].to_numpy(np.float32), pa.float32(), mask=undecided)
    return pa.table(cols, schema=OVERLAP_SCHEMA)


def truth_text(overlaps: pa.Table, threshold: float) -> str:
    """dup_truth lines for the decided overlaps; undecidable ones as comments to review."""
    lines = [f"# tiledup verify: the decision on every candidate overlap (certain evidence, else DupNet's "
             f"score >= {threshold}).",
             "# Format: img1 img2 tag is_dup. Review it, then use it as `truth`.",
             "# Undecidable overlaps (every tile pair solid on both sides) are commented out."]
    d = overlaps.select(["img1", "img2", "tag", "is_dup"]).to_pylist()
    for r in d:
        if r["is_dup"] is None:
            lines.append(f"# {r['img1']} {r['img2']} {r['tag']} ?  undecidable")
        else:
            lines.append(f"{r['img1']} {r['img2']} {r['tag']} {int(r['is_dup'])}")
    return "\n".join(lines) + "\n"

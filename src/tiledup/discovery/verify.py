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
candidate overlaps); between chunks at most `held_chips` chips stay decoded,
those needed again soonest (the others are decoded again), so memory is bounded
whatever the dataset's size; progress is logged. On the CPU,
jobs of consecutive chunks go to `workers` processes (tiledup.run.workers) once
there are PARALLEL_CHUNKS chunks; a chunk is scored alike in any job, so the
outputs do not depend on the number of workers.

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
from tiledup.run.workers import process_pool

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


def chunks(overlaps: pd.DataFrame, size: int) -> np.ndarray:
    """Chunk number of each overlap (about `size` per chunk), chips ordered so that each is used in few
    consecutive chunks: reverse Cuthill-McKee keeps the chips of overlapping candidates close."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n = len(overlaps)
    codes, uniques = pd.factorize(pd.concat([overlaps.img1, overlaps.img2], ignore_index=True))
    if n == 0:  # reverse Cuthill-McKee fails on an empty graph
        return np.zeros(0, np.int64)
    a, b = codes[:n], codes[n:]
    graph = coo_matrix((np.ones(2 * n, np.int8), (np.r_[a, b], np.r_[b, a])),
                       shape=(len(uniques), len(uniques))).tocsr()
    rank = np.empty(len(uniques), np.int64)
    rank[reverse_cuthill_mckee(graph, symmetric_mode=True)] = np.arange(len(uniques))
    order = np.lexsort((np.minimum(rank[a], rank[b]), np.maximum(rank[a], rank[b])))
    chunk = np.empty(n, np.int64)
    chunk[order] = np.arange(n) // size
    return chunk


def verify(candidates_path, images_dir, model_path, tiles_paths, overlaps_path, truth_path, *,
           batch_size: int, device: str, dupnet_threshold: float, chunk: int, held_chips: int,
           evidence: dict, workers: int) -> pd.DataFrame:
    """The `verify` rule: candidates.parquet -> overlaps.parquet and a reviewable dup_truth.txt.

    Keywords = the `verify` config block; `evidence` = the `evidence` block (shared with the evaluation);
    `workers`: processes scoring on the CPU (the rule's threads; one process on a GPU).
    """
    from tiledup.model.dupnet import load_dupnet, resolve_device

    if not (isinstance(dupnet_threshold, (int, float)) and 0 <= dupnet_threshold <= 1):
        raise TiledupError(f"verify.dupnet_threshold must be a number in [0, 1], got {dupnet_threshold!r}")
    if batch_size < 1 or chunk < 1 or held_chips < 0 or workers < 1:
        raise TiledupError(f"verify: batch_size, chunk and workers must be >= 1 and held_chips >= 0, got "
                           f"{batch_size}, {chunk}, {workers}, {held_chips}")
    start = time.perf_counter()
    cands = read_table(candidates_path, CANDIDATE_COLUMNS, "candidates table").to_pandas()
    images = set(cands.img1) | set(cands.img2)
    tiles = read_parquets(tiles_paths, TILE_COLUMNS, "tile table")
    table = tile_lookup(tiles, images)
    missing = sorted(images - set(table.images))
    if missing:
        raise TiledupError(f"{candidates_path}: {len(missing)} image(s) not in the tile tables, e.g. "
                           f"{', '.join(missing[:5])} (re-run the workflow)")
    model = load_dupnet(model_path, device)  # a bad model file is named here, not as a broken worker
    n = len(cands)
    chunk_of = chunks(cands, chunk)
    n_chunks = int(chunk_of.max()) + 1 if n else 0
    if resolve_device(device).type != "cpu" or n_chunks < PARALLEL_CHUNKS:
        workers = 1  # one process fills the GPU; a few chunks are done before workers start
    # Jobs of consecutive chunks: a worker process per core on the CPU, each job's scores its own (a
    # chunk is scored alike in any job), so the outputs do not depend on `workers`. Enough jobs that
    # the progress moves; each job decodes again the chips it shares with the one before.
    n_jobs = 1 if workers == 1 else min(n_chunks, max(2 * workers, -(-n // (JOB_CHUNKS * chunk))))
    job_of = chunk_of * n_jobs // max(n_chunks, 1)
    order = np.argsort(job_of, kind="stable")  # each job's rows in table order
    bounds = np.searchsorted(job_of[order], np.arange(n_jobs + 1))
    jobs = [(cands.iloc[rows].reset_index(drop=True), chunk_of[rows])
            for rows in (order[bounds[j]:bounds[j + 1]] for j in range(n_jobs))]
    processes = min(workers, max(n_jobs, 1))
    scorer = (table, images_dir, batch_size, evidence, dupnet_threshold, held_chips // processes)
    parts, decodes = [], 0
    with Progress("verify", n, "overlaps", log=log) as progress:
        if processes > 1:
            with process_pool(processes, _start_scorer, (model_path, *scorer)) as pool:
                for part, d in pool.map(_score_job, jobs):  # in job order; re-raises a worker's error
                    parts.append(part)
                    decodes += d
                    progress.update(len(part))
        else:
            one = ChunkScorer(model, *scorer)
            for job in jobs:
                part, d = one.score(*job, progress=progress)
                parts.append(part)
                decodes += d
    scored = pd.concat(parts, ignore_index=True) if parts else _empty(cands)
    scored = scored.sort_values(["img1", "img2", "tag"], ignore_index=True)
    out = overlaps_table(scored, dupnet_threshold)
    write_parquet(out, overlaps_path)
    write_text(truth_text(out, dupnet_threshold), truth_path)
    decided = scored.decidable.to_numpy(bool)
    dups = int((decided & (scored.decision.to_numpy() >= dupnet_threshold)).sum())
    log.info("%d candidate overlaps: %d duplicates (%d of them certain), %d not, %d undecidable; %d chips "
             "decoded for %d images by %d process(es) in %.1f s", len(out), dups, int(scored.certain.sum()),
             int(decided.sum()) - dups, int((~decided).sum()), decodes, len(images), processes,
             time.perf_counter() - start)
    return scored


JOB_CHUNKS = 50  # chunks per job at most, when there are workers: a job's result is held until it ends
# Starting a worker costs about 2 s (imports, the tile table): 2 workers were slower than one process
# on the 3,451 candidates (7 chunks) of the seed-1 development demo (8.7 s against 6.6 s), 1.28x
# faster on the 81,099 (163 chunks) of the 2,000-chip one (docs/benchmarks.md#verify-throughput).
PARALLEL_CHUNKS = 20


class ChunkScorer:
    """Scores chunks of candidates: one per process, holding DupNet, the tile table and the chip cache's
    options (verify's arguments)."""

    def __init__(self, model, table, images_dir, batch_size, evidence, threshold, held_chips):
        self.model, self.table, self.images_dir, self.batch_size = model, table, images_dir, batch_size
        self.evidence, self.threshold, self.held_chips = evidence, threshold, held_chips

    def score(self, cands: pd.DataFrame, chunk_of: np.ndarray, progress=None) -> tuple[pd.DataFrame, int]:
        """The scored candidates of consecutive chunks (chunk_of: each row's chunk), and the chips decoded.

        After each chunk the chips kept decoded for later ones are, of those held or just used, the
        held_chips whose next use comes soonest (Belady's rule: the fewest decodes a cache of that
        size allows); the others are decoded again when a later chunk needs them."""
        cache = ChipCache(self.images_dir)
        n = len(cands)
        codes, _ = pd.factorize(pd.concat([cands.img1, cands.img2], ignore_index=True))
        names = pd.concat([cands.img1, cands.img2], ignore_index=True).to_numpy()
        name_of = dict(zip(codes, names))
        span = int(chunk_of.max()) + 1 if n else 1
        uses = np.unique(codes * span + np.r_[chunk_of, chunk_of])  # (chip, chunk) pairs, sorted

        def next_use(chips: np.ndarray, k: int) -> np.ndarray:  # the next chunk after k using each chip; -1: none
            found = uses[np.minimum(np.searchsorted(uses, chips * span + k, side="right"), len(uses) - 1)]
            return np.where(found // span == chips, found % span, -1)

        parts, held = [], set()
        order = np.argsort(chunk_of, kind="stable")  # each chunk's rows, in table order, without a scan per chunk
        steps = np.unique(chunk_of)
        bounds = np.searchsorted(chunk_of[order], np.r_[steps, steps[-1] + 1 if len(steps) else 0])
        for i, k in enumerate(steps):
            rows = order[bounds[i]:bounds[i + 1]]
            part = cands.iloc[rows].reset_index(drop=True)
            chips = np.fromiter(held | set(codes[rows]) | set(codes[n + rows]), np.int64)
            soon = next_use(chips, k)
            later = soon >= 0
            keep = set(chips[later][np.lexsort((chips[later], soon[later]))][:self.held_chips].tolist())
            cache.expect(name_of[c] for c in keep - held)  # kept past this chunk: announced before it
            scored, _ = score_overlaps(part[["img1", "img2", "tag"]], self.table, cache, self.model,
                                       self.batch_size, self.evidence, methods=METHODS, decide_at=self.threshold)
            parts.append(pd.concat([part[["how", "votes"]], scored], axis=1))
            cache.release(name_of[c] for c in held - keep)
            held = keep
            if progress is not None:
                progress.update(len(part))
        return (pd.concat(parts, ignore_index=True) if parts else _empty(cands)), cache.decodes


_SCORER: ChunkScorer | None = None  # a worker process's own


def _start_scorer(model_path, *args) -> None:
    from tiledup.model.dupnet import load_dupnet

    global _SCORER
    _SCORER = ChunkScorer(load_dupnet(model_path, "cpu"), *args)  # workers run on the CPU only


def _score_job(job) -> tuple[pd.DataFrame, int]:
    return _SCORER.score(*job)


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

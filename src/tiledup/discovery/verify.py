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
outputs do not depend on the number of workers. The candidates stay an Arrow
table in the command (their chips and tags as integer codes for the jobs), and
jobs return only their scores: the command's peak grows by 0.5 to 0.7 kB per
candidate (2,000- to 20,000-chip demos), where a Python object per name and a
dict per output row took 1.5 kB (some 5 million candidates at Airbus scale).

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
import pyarrow.compute as pc

from tiledup.discovery.candidates import placing_overlaps
from tiledup.run.errors import TiledupError
from tiledup.run.io import atomic_path, read_parquets, read_table, write_parquet
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
CANDIDATE_COLUMNS = ["img1", "img2", "tag", "how", "votes", "exact_votes"]


def chunks(img1: np.ndarray, img2: np.ndarray, size: int, placing: np.ndarray | None = None) -> np.ndarray:
    """Chunk number of each overlap (its chips' codes img1, img2; about `size` per chunk), chips ordered
    so that each is used in few consecutive chunks: reverse Cuthill-McKee keeps the chips of
    overlapping candidates close. Only the overlaps marked `placing` (all, without it) order the
    chips: lone tile matches join far places by chance, and followed they spread each chunk's chips
    over many scenes (chips decoded again: 35,718 -> 22,962 at 5,000 chips, Belady's rule simulated)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n = len(img1)
    codes, uniques = pd.factorize(np.r_[img1, img2])  # chips numbered as they first appear
    if n == 0:  # reverse Cuthill-McKee fails on an empty graph
        return np.zeros(0, np.int64)
    a, b = codes[:n], codes[n:]
    keep = np.ones(n, bool) if placing is None else np.asarray(placing, bool)
    graph = coo_matrix((np.ones(2 * int(keep.sum()), np.int8), (np.r_[a[keep], b[keep]], np.r_[b[keep], a[keep]])),
                       shape=(len(uniques), len(uniques))).tocsr()
    rank = np.empty(len(uniques), np.int64)
    rank[reverse_cuthill_mckee(graph, symmetric_mode=True)] = np.arange(len(uniques))
    order = np.lexsort((np.minimum(rank[a], rank[b]), np.maximum(rank[a], rank[b])))
    chunk = np.empty(n, np.int64)
    chunk[order] = np.arange(n) // size
    return chunk


def verify(candidates_path, images_dir, model_path, tiles_paths, overlaps_path, truth_path, *,
           batch_size: int, device: str, dupnet_threshold: float, chunk: int, held_chips: int,
           evidence: dict, workers: int, place_votes: int | None = None) -> pa.Table:
    """The `verify` rule: candidates.parquet -> overlaps.parquet (returned) and a reviewable dup_truth.txt.

    Keywords = the `verify` config block; `evidence` = the `evidence` block (shared with the evaluation);
    `workers`: processes scoring on the CPU (the rule's threads; one process on a GPU); `place_votes`:
    candidates.place_votes, the overlaps that order the chips (chunks; every one without it).
    """
    from tiledup.model.dupnet import load_dupnet, resolve_device

    if not (isinstance(dupnet_threshold, (int, float)) and 0 <= dupnet_threshold <= 1):
        raise TiledupError(f"verify.dupnet_threshold must be a number in [0, 1], got {dupnet_threshold!r}")
    if batch_size < 1 or chunk < 1 or held_chips < 0 or workers < 1:
        raise TiledupError(f"verify: batch_size, chunk and workers must be >= 1 and held_chips >= 0, got "
                           f"{batch_size}, {chunk}, {workers}, {held_chips}")
    start = time.perf_counter()
    cands = read_table(candidates_path, CANDIDATE_COLUMNS, "candidates table")
    # the output's order (the candidates rule writes it so)
    cands = cands.take(pc.sort_indices(cands, sort_keys=[(k, "ascending") for k in ("img1", "img2", "tag")]))
    images = pc.unique(pa.chunked_array(cands["img1"].chunks + cands["img2"].chunks, pa.string()))
    tiles = read_parquets(tiles_paths, TILE_COLUMNS, "tile table")
    table = tile_lookup(tiles, images.to_pylist())
    if len(table.images) < len(images):
        missing = pc.filter(images, pc.invert(pc.is_in(images, value_set=pa.array(table.images, pa.string()))))
        raise TiledupError(f"{candidates_path}: {len(missing)} image(s) not in the tile tables, e.g. "
                           f"{', '.join(missing.to_pylist()[:5])} (re-run the workflow)")
    model = load_dupnet(model_path, device)  # a bad model file is named here, not as a broken worker
    n = cands.num_rows
    names = pa.array(table.images, pa.string())
    img1, img2 = (pc.index_in(cands[c], value_set=names).to_numpy() for c in ("img1", "img2"))  # chips as table rows
    tags = pc.dictionary_encode(cands["tag"]).combine_chunks()
    tag = tags.indices.to_numpy()
    placing = None if place_votes is None else placing_overlaps(
        cands["votes"].to_numpy(), cands["how"].to_numpy(zero_copy_only=False), cands["exact_votes"].to_numpy(),
        place_votes)
    chunk_of = chunks(img1, img2, chunk, placing)
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
    job_rows = [order[bounds[j]:bounds[j + 1]] for j in range(n_jobs)]
    jobs = [(img1[rows], img2[rows], tag[rows], chunk_of[rows]) for rows in job_rows]
    processes = min(workers, max(n_jobs, 1))
    scorer = (table, tags.dictionary.to_numpy(zero_copy_only=False), images_dir, batch_size, evidence,
              dupnet_threshold, held_chips // processes)
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
    scored = pd.concat(parts, ignore_index=True) if parts else _empty()
    scored.index = np.concatenate(job_rows) if job_rows else np.zeros(0, np.int64)
    scored = scored.sort_index()  # the candidates' order
    out = overlaps_table(cands, scored, dupnet_threshold)
    write_parquet(out, overlaps_path)
    write_truth(out, dupnet_threshold, truth_path)
    decided = scored.decidable.to_numpy(bool)
    dups = int((decided & (scored.decision.to_numpy() >= dupnet_threshold)).sum())
    log.info("%d candidate overlaps: %d duplicates (%d of them certain), %d not, %d undecidable; %d chips "
             "decoded for %d images by %d process(es) in %.1f s", n, dups, int(scored.certain.sum()),
             int(decided.sum()) - dups, int((~decided).sum()), decodes, len(images), processes,
             time.perf_counter() - start)
    return out


JOB_CHUNKS = 50  # chunks per job at most, when there are workers: a job's result is held until it ends
# Starting a worker costs about 2 s (imports, the tile table): 2 workers were slower than one process
# on the 3,451 candidates (7 chunks) of the seed-1 development demo (8.7 s against 6.6 s), 1.28x
# faster on the 81,099 (163 chunks) of the 2,000-chip one (docs/benchmarks.md#verify-throughput).
PARALLEL_CHUNKS = 20


SCORE_COLUMNS = ["n_tile_pairs", "n_informative", "decidable", "decision", "certain", *BASELINES]  # what a job returns


class ChunkScorer:
    """Scores chunks of candidates: one per process, holding DupNet, the tile table (a chip's code is its
    index in table.images), the tag each tag code stands for and the chip cache's options."""

    def __init__(self, model, table, tags, images_dir, batch_size, evidence, threshold, held_chips):
        self.model, self.table, self.tags, self.images_dir = model, table, tags, images_dir
        self.batch_size, self.evidence, self.threshold, self.held_chips = batch_size, evidence, threshold, held_chips

    def score(self, img1: np.ndarray, img2: np.ndarray, tag: np.ndarray, chunk_of: np.ndarray,
              progress=None) -> tuple[pd.DataFrame, int]:
        """The SCORE_COLUMNS of candidates in consecutive chunks (chips and tags as codes; chunk_of: each
        row's chunk), in their order, and the chips decoded.

        After each chunk the chips kept decoded for later ones are, of those held or just used, the
        held_chips whose next use comes soonest (Belady's rule: the fewest decodes a cache of that
        size allows); the others are decoded again when a later chunk needs them."""
        cache = ChipCache(self.images_dir)
        n = len(img1)
        codes, chips_of = pd.factorize(np.r_[img1, img2])  # this job's chips, numbered as they first appear
        name_of = self.table.images[chips_of]
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
            part = pd.DataFrame({"img1": name_of[codes[rows]], "img2": name_of[codes[n + rows]],
                                 "tag": self.tags[tag[rows]]})
            chips = np.fromiter(held | set(codes[rows]) | set(codes[n + rows]), np.int64)
            soon = next_use(chips, k)
            later = soon >= 0
            keep = set(chips[later][np.lexsort((chips[later], soon[later]))][:self.held_chips].tolist())
            cache.expect(name_of[c] for c in keep - held)  # kept past this chunk: announced before it
            scored, _ = score_overlaps(part, self.table, cache, self.model, self.batch_size, self.evidence,
                                       methods=METHODS, decide_at=self.threshold)
            parts.append(scored[SCORE_COLUMNS])
            cache.release(name_of[c] for c in held - keep)
            held = keep
            if progress is not None:
                progress.update(len(part))
        scored = pd.concat(parts) if parts else _empty()
        return scored.iloc[np.argsort(order, kind="stable")].reset_index(drop=True), cache.decodes


_SCORER: ChunkScorer | None = None  # a worker process's own


def _start_scorer(model_path, *args) -> None:
    from tiledup.model.dupnet import load_dupnet

    global _SCORER
    _SCORER = ChunkScorer(load_dupnet(model_path, "cpu"), *args)  # workers run on the CPU only


def _score_job(job) -> tuple[pd.DataFrame, int]:
    return _SCORER.score(*job)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"n_tile_pairs": np.zeros(0, np.int64), "n_informative": np.zeros(0, np.int64),
                         "decidable": np.zeros(0, bool), "decision": np.zeros(0, np.float32),
                         "certain": np.zeros(0, bool), **{m: np.zeros(0, np.float32) for m in BASELINES}})


def overlaps_table(cands: pa.Table, scored: pd.DataFrame, threshold: float) -> pa.Table:
    """overlaps.parquet from the candidates and their SCORE_COLUMNS, row for row."""
    undecided = ~scored.decidable.to_numpy(bool)
    score = scored.decision.to_numpy(np.float32)
    cols = {
        "img1": cands["img1"].cast(pa.string()),
        "img2": cands["img2"].cast(pa.string()),
        "tag": cands["tag"].cast(pa.string()),
        "how": cands["how"].cast(pa.string()),
        "votes": cands["votes"].cast(pa.int32()),
        "n_tile_pairs": pa.array(scored.n_tile_pairs.to_numpy(np.int8), pa.int8()),
        "n_informative": pa.array(scored.n_informative.to_numpy(np.int8), pa.int8()),
        "score": pa.array(score, pa.float32(), mask=undecided),
        "is_dup": pa.array(score >= threshold, pa.bool_(), mask=undecided),
        "certain": pa.array(scored.certain.to_numpy(bool), pa.bool_(), mask=undecided),
    }
    for m in BASELINES:
        cols[m] = pa.array(scored[m].to_numpy(np.float32), pa.float32(), mask=undecided)
    return pa.table(cols, schema=OVERLAP_SCHEMA).combine_chunks()


def write_truth(overlaps: pa.Table, threshold: float, path, batch: int = 1 << 16) -> None:
    """dup_truth lines for the decided overlaps, undecidable ones as comments to review; written a batch
    of rows at a time (atomically), so the text is never whole in memory."""
    header = [f"# tiledup verify: the decision on every candidate overlap (certain evidence, else DupNet's "
              f"score >= {threshold}).",
              "# Format: img1 img2 tag is_dup. Review it, then use it as `truth`.",
              "# Undecidable overlaps (every tile pair solid on both sides) are commented out."]
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("\n".join(header) + "\n")
        for rows in overlaps.select(["img1", "img2", "tag", "is_dup"]).to_batches(batch):
            img1, img2, tag, is_dup = (rows.column(i).to_pylist() for i in range(4))
            f.writelines(f"# {a} {b} {t} ?  undecidable\n" if d is None else f"{a} {b} {t} {int(d)}\n"
                         for a, b, t, d in zip(img1, img2, tag, is_dup))

"""The built-in demo: synthetic, Airbus-like chips with exact dup_truth, deterministic by seed.

Several scenes (large acquisitions on the 256-px grid) are each rendered at
2 or more passes (times). Every pass is cut into 768 x 768 chips at a 256
stride; a random subset of positions is kept and each chip is saved as its
own JPEG under a random 9-hex-digit id. Overlapping chips of one scene are
the dup_truth: duplicates when they come from the same pass, hard negatives
(same place, different time) otherwise.

Random streams are keyed by (seed, scene, pass), so a scene renders the
same whatever the other options are; ids come from their own stream.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from tiledup.run.errors import TiledupError
from tiledup.grid import GRID
from tiledup.run.io import write_parquet, write_text
from tiledup.run.workers import process_pool
from .chips import chip_ids, encode_chip, truth_lines
from .scene import make_geography, render_pass

log = logging.getLogger(__name__)

# Random stream keys: (seed, scene, _GEO) geography, (seed, scene, _PASS + p) pass p and
# (..., row, col) its chip at (row, col), (seed, scene, _CHIPS) kept positions, (seed, _IDS) ids.
_GEO, _PASS, _CHIPS, _IDS = 0, 1, 1000, 2 ** 31 - 1

LAYOUT_SCHEMA = pa.schema([("image_id", pa.string()), ("scene", pa.int32()), ("pass", pa.int32()),
                           ("row", pa.int32()), ("col", pa.int32()), ("kind", pa.string())])


def scene_kind(dark: bool, coast: bool, overcast: bool) -> str:
    """The layout's `kind` of a scene, e.g. "dark sea", "bright water + coast", "overcast bright water"."""
    return ("overcast " if overcast else "") + ("dark sea" if dark else "bright water") + (" + coast" if coast else "")


def _check(name: str, value, kind: type, lo=None, hi=None):
    ok_type = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok_type, value = True, float(value)
    if not ok_type:
        raise TiledupError(f"demo option `{name}` must be {kind.__name__}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise TiledupError(f"demo option `{name}` = {value!r} is outside [{lo}, {hi}]")
    return value


def _plan(scenes: int, passes_min: int, passes_max: int, rows: int, cols: int,
          keep: float, seed: int) -> list[list[list[tuple[int, int]]]]:
    """Kept chip positions: plan[scene][pass] = [(row, col), ...], at least one per pass."""
    positions = [(r, c) for r in range(rows - GRID + 1) for c in range(cols - GRID + 1)]
    plan = []
    for s in range(scenes):
        srng = np.random.default_rng([seed, s, _CHIPS])
        n_passes = int(srng.integers(passes_min, passes_max + 1))
        passes = []
        for _ in range(n_passes):
            kept = [pos for pos in positions if srng.random() < keep]
            passes.append(kept or [positions[int(srng.integers(len(positions)))]])
        plan.append(passes)
    return plan


def scenes_for(chips: int, scenes: int, overcast_scenes: int, passes_min: int, passes_max: int,
               rows: int, cols: int, keep: float) -> tuple[int, int]:
    """(scenes, overcast scenes) for about `chips` chips: as many scenes of the configured kind as
    that many chips need on average, and the configured share of them overcast."""
    per_scene = (rows - GRID + 1) * (cols - GRID + 1) * keep * (passes_min + passes_max) / 2
    n = max(1, int(round(chips / max(per_scene, 1.0))))
    return n, int(round(overcast_scenes / scenes * n))


def _pick(rng: np.random.Generator, n: int, share: float) -> set[int]:
    """round(share * n) of range(n), at random: scene kinds come in exact proportions."""
    return set(rng.permutation(n)[: int(round(share * n))].tolist())


def _check_replaceable(dest: Path) -> None:
    """`dest` must be absent or an earlier demo (a folder of .jpg files only): never replace anything else."""
    if dest.exists() and (not dest.is_dir() or any(not p.name.endswith(".jpg") for p in dest.iterdir())):
        raise TiledupError(f"{dest}: exists and is not an earlier demo images folder; not replacing it")


def _swap_in(tmp: Path, dest: Path) -> None:
    """Replace `dest` (absent, or an earlier demo) with the finished folder `tmp`."""
    _check_replaceable(dest)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old)
    else:
        os.replace(tmp, dest)


def _render_scene(job) -> None:
    """Render every pass of one scene and write its kept chips (a process pool job)."""
    seed, s, rows, cols, dark, coast, overcast, border_share, pass_opts, chip_opts, layout, n_passes, tmp = job
    geo = make_geography(np.random.default_rng([seed, s, _GEO]), rows, cols, dark, coast)
    for p in range(n_passes):
        rng = np.random.default_rng([seed, s, _PASS + p])
        img, fill = render_pass(rng, geo, overcast=overcast, border=rng.random() < border_share, **pass_opts)
        for image_id, _, _, r, c in (rec for rec in layout if rec[2] == p):
            # Per-chip randomness keyed by position, so a chip does not depend on which others are kept.
            crng = np.random.default_rng([seed, s, _PASS + p, r, c])
            (Path(tmp) / image_id).write_bytes(encode_chip(img, fill, r, c, crng, **chip_opts))


def generate(images_dir, truth_path, layout_path, *, seed: int, scenes: int, passes_min: int, passes_max: int,
             scene_rows: int, scene_cols: int, keep: float, quality_min: int, quality_max: int,
             offset_share: float, offset_level: float, hls_share: float, hls_level: float, dark_share: float,
             coast_share: float, overcast_scenes: int, chips: int, cloudy_share: float, cloud_cover: float,
             border_share: float, ships_per_tile: float, noise: float, workers: int, **unknown) -> dict:
    """Render the demo: JPEG chips in images_dir, dup_truth at truth_path, layout Parquet at layout_path.

    Returns counts (chips, truth lines, duplicates). Keywords = the `demo` config block, plus
    `workers`: processes rendering scenes in parallel (the output does not depend on it).
    chips > 0 replaces `scenes` with as many scenes as about that many chips need, the same
    share of them overcast (scenes_for); 0 keeps `scenes`.
    """
    if unknown:
        raise TiledupError(f"unknown demo option(s): {', '.join(sorted(unknown))}")
    seed = _check("seed", seed, int, 0)
    scenes = _check("scenes", scenes, int, 1, 1000)
    passes_min = _check("passes_min", passes_min, int, 2, 50)
    passes_max = _check("passes_max", passes_max, int, passes_min, 50)
    rows = _check("scene_rows", scene_rows, int, GRID, 200)
    cols = _check("scene_cols", scene_cols, int, GRID, 200)
    keep = _check("keep", keep, float, 0.0, 1.0)
    quality_min = _check("quality_min", quality_min, int, 50, 100)
    quality_max = _check("quality_max", quality_max, int, quality_min, 100)
    chip_opts = dict(
        offset_share=_check("offset_share", offset_share, float, 0.0, 1.0),
        offset_level=_check("offset_level", offset_level, float, 0.0, 50.0),
        hls_share=_check("hls_share", hls_share, float, 0.0, 1.0),
        hls_level=_check("hls_level", hls_level, float, 0.0, 60.0),
        quality_min=quality_min, quality_max=quality_max)
    dark_share = _check("dark_share", dark_share, float, 0.0, 1.0)
    coast_share = _check("coast_share", coast_share, float, 0.0, 1.0)
    overcast_scenes = _check("overcast_scenes", overcast_scenes, int, 0, scenes)
    if _check("chips", chips, int, 0, 10_000_000):
        scenes, overcast_scenes = scenes_for(chips, scenes, overcast_scenes, passes_min, passes_max,
                                             rows, cols, keep)
    pass_opts = dict(
        cloudy_share=_check("cloudy_share", cloudy_share, float, 0.0, 1.0),
        cloud_cover=_check("cloud_cover", cloud_cover, float, 0.0, 0.45),
        ships_per_tile=_check("ships_per_tile", ships_per_tile, float, 0.0, 5.0),
        noise=_check("noise", noise, float, 0.0, 20.0))
    border_share = _check("border_share", border_share, float, 0.0, 1.0)
    workers = _check("workers", workers, int, 1, 256)

    start = time.perf_counter()
    images_dir = Path(images_dir)
    _check_replaceable(images_dir)
    krng = np.random.default_rng([seed, _IDS])
    plan = _plan(scenes, passes_min, passes_max, rows, cols, keep, seed)
    dark, coast = _pick(krng, scenes, dark_share), _pick(krng, scenes, coast_share)
    # Overcast scenes are taken from the bright ones first: clouds would hide the dark-sea hard case.
    order = sorted(krng.permutation(scenes).tolist(), key=lambda s: s in dark)
    overcast = set(order[:overcast_scenes])
    ids = iter(chip_ids(krng, sum(len(kept) for passes in plan for kept in passes)))
    layout = [(next(ids), s, p, r, c) for s, passes in enumerate(plan)
              for p, kept in enumerate(passes) for r, c in kept]

    tmp = images_dir.with_name(f".{images_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    by_scene: list[list] = [[] for _ in range(scenes)]  # one pass over the layout, not one per scene
    for rec in layout:
        by_scene[rec[1]].append(rec)
    jobs = [(seed, s, rows, cols, s in dark, s in coast, s in overcast, border_share, pass_opts, chip_opts,
             by_scene[s], len(plan[s]), str(tmp)) for s in range(scenes)]
    try:
        # Spawning a worker costs about a second (imports), so small demos render in this process.
        if workers > 1 and scenes > 1 and sum(len(p) for p in plan) * rows * cols >= 256:
            # one scene per job, each writing its own files
            with process_pool(min(workers, scenes)) as pool:
                list(pool.map(_render_scene, jobs))  # list(): re-raises a worker's exception
        else:
            for job in jobs:
                _render_scene(job)
        kinds = [scene_kind(rec[1] in dark, rec[1] in coast, rec[1] in overcast) for rec in layout]
        table = pa.table([*zip(*layout), kinds], schema=LAYOUT_SCHEMA)
        lines = truth_lines(layout)
        write_parquet(table, layout_path)
        write_text("".join(f"{line}\n" for line in lines), truth_path)
        _swap_in(tmp, images_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dups = sum(line.endswith(" 1") for line in lines)
    counts = {"chips": len(layout), "truth_lines": len(lines), "dups": dups, "non_dups": len(lines) - dups}
    log.info("demo: %d scenes, %d chips, %d overlaps (%d dup, %d non-dup) in %.1f s",
             scenes, counts["chips"], counts["truth_lines"], dups, counts["non_dups"],
             time.perf_counter() - start)
    return counts

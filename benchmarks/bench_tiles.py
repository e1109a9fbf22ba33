"""Tile + hash stage vs plain JPEG decoding, per chip and per core, in one run on the same chips.

    .venv/bin/python benchmarks/bench_tiles.py [--images DIR] [--repeat 4] [--rounds 15]

The chips (default: the 24 real Airbus chips in tests/data/airbus_samples) are
read into memory first, so disk speed is out of the figures. The headline
alternates, round by round, a pass that only decodes the chips (simplejpeg,
the fastest decoder here) with a pass of the stage's own per-chip work
(tiles.tile_bytes: decode, cut, hash), each over `repeat` x the chips, and
keeps each round's ratio: on a shared machine both passes of a round see the
same load, so the median ratio over the rounds is the figure to trust. OpenCV
is held to one thread, so that every figure is one core's work; CPU time
(process time) is printed beside wall time as a check.

The step profile replays the stage chip by chip and times each step in
thread CPU time on what the step before left in the cache (scan_tiles' parts
one by one, each in a compiled loop over the 9 tiles, then the fused call the
stage makes). The projection takes the CPU-time medians (one idle core per
shard job) and adds what every shard job pays once: importing numba and
loading the compiled kernels, measured in a fresh process.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numba
import numpy as np
import simplejpeg
from PIL import Image

from tiledup.tiles import hashing
from tiledup.tiles import kernels
from tiledup.tiles.decode import cut_tiles, decode_chip
from tiledup.run.config import defaults
from tiledup.tiles.shard import tile_bytes

SOLID_OPTIONS = {k: v for k, v in defaults()["tiles"].items() if k != "workers"}  # the config's
AIRBUS_TRAIN_IMAGES = 192_556
CORES = 2
SHARDS = 256  # the order of shard count the README suggests for the full Airbus set
DEFAULT_IMAGES = Path(__file__).resolve().parents[1] / "tests" / "data" / "airbus_samples"

STARTUP = """
import time
start = time.process_time()
import cv2, numpy as np, pyarrow, simplejpeg, xxhash
libraries = time.process_time()
from tiledup.tiles.shard import tile_bytes
from tiledup.run.config import defaults
from tiledup.tiles.hashing import hash_tiles
hash_tiles(np.zeros((9, 256, 256, 3), np.uint8), **{k: v for k, v in defaults()['tiles'].items() if k != 'workers'})
print(libraries - start, time.process_time() - libraries)
"""


@numba.njit
def _scan_part(part, rgb, grey, dominant, acc, hist_parts, sums, hist, bits, median):
    """One of scan_tiles' steps, alone, over a chip's 9 tiles (for the step timings)."""
    total = 0.0
    for t in range(rgb.shape[0]):
        if part == 0:
            kernels._block_sums(rgb[t], 3, 16, acc, sums)
            for c in range(3):
                kernels._mean_hash_bits(sums[c], bits[c * 32:(c + 1) * 32])
                total += sums[c].sum() / 65536
        elif part == 1:
            kernels._block_sums(grey[t], 1, 16, acc[:256], sums[:1])
            kernels._mean_hash_bits(sums[0], bits[:32])
        elif part == 2:
            kernels._histogram(grey[t], hist_parts, hist)
            total += kernels._grey_stats(hist)[1]
        elif part == 3:
            kernels._subsampled_median(rgb[t], 4, hist_parts[:3], median)
        else:
            total += kernels._band_count(rgb[t], dominant[t].astype(np.int64), 3)
    return total


def per_item(fn, items) -> tuple[float, float]:
    """(wall, CPU) seconds per item of one pass of fn over items."""
    wall, cpu = time.perf_counter(), time.process_time()
    for x in items:
        fn(x)
    return (time.perf_counter() - wall) / len(items), (time.process_time() - cpu) / len(items)


def best_per_item(fn, items, rounds) -> float:
    """Best over `rounds` passes of the wall seconds per item of fn(item)."""
    return min(per_item(fn, items)[0] for _ in range(rounds))


def startup_seconds(runs: int = 3) -> tuple[float, float]:
    """Median CPU seconds, in a fresh process, to import the libraries any stage would, and then
    to import tiledup (numba with it) and load the compiled kernels (first hash_tiles call)."""
    times = [tuple(map(float, subprocess.run([sys.executable, "-c", STARTUP], check=True, text=True,
                                             capture_output=True).stdout.split())) for _ in range(runs)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    p.add_argument("--repeat", type=int, default=4, help="passes over the chips per timing")
    p.add_argument("--rounds", type=int, default=15, help="alternating decode / stage rounds")
    a = p.parse_args(argv)
    cv2.setNumThreads(1)

    paths = sorted(a.images.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no .jpg chips in {a.images}")
    blobs = [f.read_bytes() for f in paths] * a.repeat
    chips = [decode_chip(b) for b in blobs[: len(paths)]]
    cuts = [cut_tiles(c) for c in chips]
    rows = [t.reshape(9, 256, 768) for t in cuts]
    greys = [hashing.grey_tiles(t) for t in cuts]
    scans = [kernels.scan_tiles(r, g, hashing.BLOCK, hashing.MEDIAN_STRIDE, 3) for r, g in zip(rows, greys)]
    r = a.rounds

    def decode(b):
        return simplejpeg.decode_jpeg(b, colorspace="RGB")

    def stage(b):
        return tile_bytes(b, "bench", **SOLID_OPTIONS)

    stage(blobs[0])  # load the compiled kernels before timing
    decode_wall, decode_cpu, stage_wall, stage_cpu = [], [], [], []
    for k in range(r):  # alternate which pass goes first, so that neither always follows the other
        for name in (("decode", "stage") if k % 2 == 0 else ("stage", "decode")):
            wall, cpu = per_item(decode if name == "decode" else stage, blobs)
            (decode_wall if name == "decode" else stage_wall).append(wall)
            (decode_cpu if name == "decode" else stage_cpu).append(cpu)
    ratios = [s / d for s, d in zip(stage_wall, decode_wall)]
    cpu_ratios = [s / d for s, d in zip(stage_cpu, decode_cpu)]
    ms = {name: 1e3 * statistics.median(v) for name, v in
          dict(decode=decode_wall, stage=stage_wall, decode_cpu=decode_cpu, stage_cpu=stage_cpu).items()}

    others = {
        "cv2.imdecode": lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR),
        "PIL": lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")),
    }
    other_ms = {name: 1e3 * best_per_item(fn, blobs[: len(paths)], r) for name, fn in others.items()}

    # Step profile: the stage's own sequence, chip after chip, each step timed in thread CPU time
    # on the data the step before left in the cache (scan_tiles' parts one after the other, then
    # the fused call itself, which is what the stage runs).
    chip_buffer, tile_buffer = np.empty_like(chips[0]), np.empty_like(cuts[0])
    scratch = (np.empty(768, np.uint16), np.empty((8, 256), np.uint16), np.empty((3, 16, 16), np.int32),
               np.empty(256, np.int64), np.empty(96, np.uint8), np.empty(3, np.uint8))
    scan_parts = ["bmh96 + channel means", "bmh", "grey histogram, std, entropy", "dominant (median)",
                  "dominant_share"]
    _scan_part(0, rows[0], greys[0], scans[0][5], *scratch)  # compile before timing
    step_s: dict[str, float] = {}
    clock = time.thread_time

    def timed(name, fn, *args):
        start = clock()
        out = fn(*args)
        step_s[name] = step_s.get(name, 0.0) + clock() - start
        return out

    for _ in range(r):
        for b in blobs:
            chip = timed("decode (simplejpeg, into a buffer)", decode_chip, b, "bench", chip_buffer)
            tiles = timed("cut 9 tiles (copy)", cut_tiles, chip, tile_buffer)
            timed("xxh3_128 (xxhash)", hashing.tile_digests, tiles)
            grey = timed("grey (cv2.cvtColor)", hashing.grey_tiles, tiles)
            rgb = tiles.reshape(9, 256, 768)
            dominant = scans[0][5]
            for k, name in enumerate(scan_parts):
                timed(f"  {name}", _scan_part, k, rgb, grey, dominant, *scratch)
            scan = timed("scan_tiles (all of the above, fused)", kernels.scan_tiles, rgb, grey, 16, 4, 3)
            timed("outliers (solid candidates only)", kernels.band_counts, rgb,
                  np.flatnonzero(scan[6] >= 0.99 * 65536), scan[5], 24)
            timed("hash_tiles (cut tiles to columns)", hashing.hash_tiles, tiles)
    step_ms = {name: 1e3 * v / (r * len(blobs)) for name, v in step_s.items()}

    with ThreadPoolExecutor(2) as pool:
        wall2 = float("inf")
        for _ in range(r):
            start = time.perf_counter()
            list(pool.map(stage, blobs))
            wall2 = min(wall2, (time.perf_counter() - start) / len(blobs))
    libraries, kernels_load = startup_seconds()

    def minutes(ms_per_image, per_job_s=0.0):
        return (AIRBUS_TRAIN_IMAGES * ms_per_image / 1e3 + SHARDS * per_job_s) / CORES / 60


    print(f"{len(paths)} chips x {a.repeat} in memory, {r} alternating rounds; ms per 768 x 768 chip, one core\n")
    print(f"{'':<34}{'wall ms':>8}{'CPU ms':>8}")
    print(f"{'decode (simplejpeg)':<34}{ms['decode']:>8.2f}{ms['decode_cpu']:>8.2f}   (median of rounds)")
    print(f"{'tile + hash stage (tile_bytes)':<34}{ms['stage']:>8.2f}{ms['stage_cpu']:>8.2f}")
    print(f"\ntile + hash / decode: median {statistics.median(ratios):.2f}x over {r} rounds "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}; CPU-time median {statistics.median(cpu_ratios):.2f}x)")
    print("other decoders, best of rounds: " + "   ".join(f"{k} {v:.2f}" for k, v in other_ms.items()))
    print(f"\n{'step profile (thread CPU time)':<40}{'ms/chip':>8}{'x decode':>9}")
    for name, value in step_ms.items():
        print(f"{name:<40}{value:>8.3f}{value / step_ms['decode (simplejpeg, into a buffer)']:>9.2f}")
    print(f"\nstage with 2 threads in one process: {1e3 * wall2:.2f} ms/chip wall "
          "(gains only when the second core is idle)")
    print(f"per shard job, once (CPU): {libraries:.2f} s to import cv2, numpy, pyarrow, ..., then "
          f"{kernels_load:.2f} s to import numba and load the compiled kernels")
    print(f"\nAirbus ({AIRBUS_TRAIN_IMAGES:,} chips) on {CORES} idle cores (CPU ms), one shard job per core: "
          f"decode alone {minutes(ms['decode_cpu']):.1f} min, tile + hash {minutes(ms['stage_cpu']):.1f} min "
          f"+ {minutes(0, kernels_load):.1f} min of numba start-up at {SHARDS} shards "
          "(disk reads and Parquet writing excluded)")


if __name__ == "__main__":
    main()

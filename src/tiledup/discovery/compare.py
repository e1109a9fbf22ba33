"""`tiledup compare A.jpg B.jpg`: every overlap of two chips, scored as verify and the evaluation score them.

For each of the 25 overlap tags whose tile pairs carry evidence (tiledup.scoring.overlaps'
rule), DupNet scores the informative tile pairs; the overlap's score is their
minimum. Solid flags and hashes come from the tile stage's own code, and the
`tiles`, `evidence` and `verify` settings from the same config file as the
workflow's, so a chip is judged exactly as in a workflow run with that config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tiledup.run.errors import TiledupError
from tiledup.grid import TAGS, tag_offset
from tiledup.scoring.overlaps import ChipCache, check_evidence, score_overlaps
from tiledup.tiles.shard import tile_chip


def compare(path_a, path_b, model_path, *, device: str, batch_size: int, threshold: float, tiles: dict,
            evidence: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per decidable overlap: tag, dr, dc, n_informative, dupnet, bmh, pixel_mad;
    its scored tile pairs: tag, tile1, tile2, dupnet), best overlap first.

    tiles, evidence: those config blocks (tiles' `workers` is not used)."""
    solid_options = {k: v for k, v in tiles.items() if k != "workers"}
    from tiledup.model.dupnet import load_dupnet

    a, b = (str(Path(p).resolve()) for p in (path_a, path_b))
    tables = {}
    for image in (a, b):
        cols = tile_chip(image, **solid_options)  # RejectedImage (a TiledupError) names the file
        for t in range(len(cols["solid"])):
            tables[(image, t)] = {"bmh": cols["bmh"][t].tobytes(), "bmh96": cols["bmh96"][t].tobytes(),
                                  "solid": bool(cols["solid"][t]), "dominant": cols["dominant"][t]}
    overlaps = pd.DataFrame({"img1": a, "img2": b, "tag": list(TAGS)})
    model = load_dupnet(model_path, device)
    # absolute paths as image ids: the cache joins them to "/" unchanged
    scored, pairs = score_overlaps(overlaps, tables, ChipCache("/"), model, batch_size, check_evidence(evidence))
    scored = scored[scored.decidable].copy()
    offsets = np.array([tag_offset(t) for t in scored.tag]).reshape(-1, 2)
    scored["dr"], scored["dc"] = offsets[:, 0], offsets[:, 1]
    scored["is_dup"] = scored.dupnet >= threshold
    scored = scored.sort_values(["dupnet", "n_informative"], ascending=False)
    pairs = pairs.assign(tag=overlaps.tag.to_numpy()[pairs.overlap.to_numpy()])
    return (scored[["tag", "dr", "dc", "n_informative", "n_tile_pairs", "dupnet", "bmh", "pixel_mad", "is_dup"]],
            pairs[["tag", "tile1", "tile2", "dupnet"]])


def report(path_a, path_b, scored: pd.DataFrame, pairs: pd.DataFrame, threshold: float) -> str:
    """The text `tiledup compare` prints."""
    lines = [f"image 1: {path_a}", f"image 2: {path_b}",
             f"{len(scored)} of 25 overlaps have informative tile pairs (DupNet threshold {threshold}); "
             "tag = first and last tile of the overlap in image 1, (dr, dc) = image 2's offset in tiles",
             f"{'tag':>4} {'dr':>3} {'dc':>3} {'pairs':>6} {'dupnet':>7} {'bmh':>6} {'pix_mad':>7}  "
             "per tile pair (tile1-tile2: dupnet)"]
    for o in scored.itertuples():
        per = pairs[pairs.tag == o.tag]
        tiles = " ".join(f"{t1}-{t2}:{s:.3f}" for t1, t2, s in zip(per.tile1, per.tile2, per.dupnet))
        lines.append(f"{o.tag:>4} {o.dr:>3} {o.dc:>3} {o.n_informative:>3}/{o.n_tile_pairs:<2} {o.dupnet:7.3f} "
                     f"{o.bmh:6.3f} {o.pixel_mad:7.3f}  {tiles}")
    if len(scored):
        best = scored.iloc[0]
        verdict = "duplicate" if best.is_dup else "not a duplicate"
        lines.append(f"best: tag {best.tag} (image 2 at {best.dr:+d}, {best.dc:+d} tiles), DupNet {best.dupnet:.3f}: "
                     f"{verdict} at threshold {threshold}")
    else:
        lines.append("no overlap of these chips has a tile pair that is evidence either way")
    return "\n".join(lines)


def run(path_a, path_b, model_path, config: dict, device: str | None = None, batch_size: int | None = None,
        threshold: float | None = None) -> str:
    """`tiledup compare`: config = the workflow's config (tiledup.run.config.read_config); device,
    batch_size and threshold, when given, override its `verify` block."""
    verify = config["verify"]
    device = verify["device"] if device is None else device
    batch_size = verify["batch_size"] if batch_size is None else batch_size
    threshold = verify["dupnet_threshold"] if threshold is None else threshold
    if not 0 <= threshold <= 1:
        raise TiledupError(f"compare: --threshold must be in [0, 1], got {threshold}")
    scored, pairs = compare(path_a, path_b, model_path, device=device, batch_size=batch_size, threshold=threshold,
                            tiles=config["tiles"], evidence=config["evidence"])
    return report(path_a, path_b, scored, pairs, threshold)

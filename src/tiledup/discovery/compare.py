"""`tiledup compare A.jpg B.jpg`: every overlap of two chips, scored as verify and the evaluation score them.

For each of the 25 overlap tags whose tile pairs carry evidence (tiledup.scoring.overlaps'
rule), DupNet scores the informative tile pairs; the overlap's score is their
minimum, a tile pair that is certain evidence (SAME: equal up to JPEG noise on
real structure, marked `=`) counting 1.0, as verify decides. DupNet's own score
of every tile pair is printed as it is. Solid flags and hashes come from the tile
stage's own code, and the `tiles`, `evidence` and `verify` settings from the same
config file as the workflow's, so a chip is judged exactly as in a workflow run
with that config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tiledup.run.errors import TiledupError
from tiledup.grid import TAGS, tag_offset
from tiledup.scoring.overlaps import NOT_DUP, SAME, ChipCache, TileTable, check_evidence, score_overlaps
from tiledup.tiles.shard import tile_chip


def compare(path_a, path_b, model_path, *, device: str, batch_size: int, threshold: float, tiles: dict,
            evidence: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per decidable overlap: tag, dr, dc, n_informative, n_tile_pairs, decision, certain, dupnet,
    bmh, pixel_mad, is_dup; its scored tile pairs: tag, tile1, tile2, evidence, dupnet), best overlap first.

    tiles, evidence: those config blocks (tiles' `workers` is not used)."""
    from tiledup.model.dupnet import load_dupnet

    solid_options = {k: v for k, v in tiles.items() if k != "workers"}
    a, b = (str(Path(p).resolve()) for p in (path_a, path_b))
    images = sorted({a, b})
    cols = [tile_chip(image, **solid_options) for image in images]  # RejectedImage (a TiledupError) names the file
    table = TileTable(np.array(images, object), *(np.stack([c[k] for c in cols])
                                                  for k in ("solid", "dominant", "bmh", "bmh96")))
    overlaps = pd.DataFrame({"img1": a, "img2": b, "tag": list(TAGS)})
    model = load_dupnet(model_path, device)
    # absolute paths as image ids: the cache joins them to "/" unchanged
    scored, pairs = score_overlaps(overlaps, table, ChipCache("/"), model, batch_size, check_evidence(evidence))
    scored = scored[scored.decidable].copy()
    offsets = np.array([tag_offset(t) for t in scored.tag]).reshape(-1, 2)
    scored["dr"], scored["dc"] = offsets[:, 0], offsets[:, 1]
    scored["is_dup"] = scored.decision >= threshold
    scored = scored.sort_values(["decision", "dupnet", "n_informative"], ascending=False)
    pairs = pairs.assign(tag=overlaps.tag.to_numpy()[pairs.overlap.to_numpy()])
    return (scored[["tag", "dr", "dc", "n_informative", "n_tile_pairs", "decision", "certain", "dupnet", "bmh",
                    "pixel_mad", "is_dup"]],
            pairs[["tag", "tile1", "tile2", "evidence", "dupnet"]])


def report(path_a, path_b, scored: pd.DataFrame, pairs: pd.DataFrame, threshold: float) -> str:
    """The text `tiledup compare` prints."""
    lines = [f"image 1: {path_a}", f"image 2: {path_b}",
             f"{len(scored)} of 25 overlaps have informative tile pairs (DupNet threshold {threshold}); "
             "tag = first and last tile of the overlap in image 1, (dr, dc) = image 2's offset in tiles; "
             "score = the decision's (a certain tile pair, marked =, counts 1.0), dupnet = DupNet's own minimum",
             f"{'tag':>4} {'dr':>3} {'dc':>3} {'pairs':>6} {'score':>6} {'dupnet':>7} {'bmh':>6} {'pix_mad':>7}  "
             "per tile pair (tile1-tile2: dupnet, = certain, x evidence of not duplicate: "
             "a solid side or fine structure)"]
    for o in scored.itertuples():
        per = pairs[pairs.tag == o.tag]
        tiles = " ".join(f"{t1}-{t2}:{s:.3f}{'=' if e == SAME else 'x' if e == NOT_DUP else ''}"
                         for t1, t2, e, s in zip(per.tile1, per.tile2, per.evidence, per.dupnet))
        lines.append(f"{o.tag:>4} {o.dr:>3} {o.dc:>3} {o.n_informative:>3}/{o.n_tile_pairs:<2} {o.decision:6.3f} "
                     f"{o.dupnet:7.3f} {o.bmh:6.3f} {o.pixel_mad:7.3f}  {tiles}")
    if len(scored):
        best = scored.iloc[0]
        verdict = "duplicate" if best.is_dup else "not a duplicate"
        why = "certain (every tile pair equal up to JPEG noise on real structure)" if best.certain \
            else f"DupNet {best.decision:.3f} at threshold {threshold}"
        lines.append(f"best: tag {best.tag} (image 2 at {best.dr:+d}, {best.dc:+d} tiles): {verdict}, {why}")
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

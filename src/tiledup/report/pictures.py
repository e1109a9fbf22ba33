"""The report's pictures: ROC / PR curves, and gallery panels of an overlap.

Gallery panels show both chips with the overlap box and, below, the seed's
"average channel subtraction" view made readable: each chip minus the
per-channel median of its own overlap region, averaged over R, G and B,
clipped at +-DIFF_CLIP levels and drawn with a diverging colour map (white =
the median, red = brighter, blue = darker). The seed's uint8 wrap-around
turned dark sea one level below the median into 255, i.e. noise.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import simplejpeg  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from tiledup.grid import CHIP, TILE, partner_tag, tile_rc  # noqa: E402
from tiledup.tiles.decode import RejectedImage, read_chip  # noqa: E402
from tiledup.report.html import data_uri  # noqa: E402

DIFF_CLIP = 24  # levels: JPEG noise on dark sea (1-3 levels) stays pale, ships and cloud edges saturate
PANEL_QUALITY = 70  # JPEG quality of a gallery panel
BOX_CHIP, BOX_DIFF = (255, 220, 0), (0, 0, 0)  # overlap box: yellow on the chip, black on the map


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curves(scored: pd.DataFrame, methods) -> tuple[bytes, bytes]:
    """ROC and precision-recall plots (PNG bytes) over the decidable overlaps."""
    decided = scored[scored.decidable]
    y = decided.is_dup.to_numpy(bool)
    figs = []
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(6, 5))
        if len(y) and 0 < y.sum() < len(y):
            for m in methods:
                s = decided[m].to_numpy(float)
                if kind == "roc":
                    x, yy, _ = roc_curve(y, s)
                    ax.plot(x, yy, lw=2.5 if m == "dupnet" else 1.2, label=m)
                else:
                    p, r, _ = precision_recall_curve(y, s)
                    ax.plot(r, p, lw=2.5 if m == "dupnet" else 1.2, label=m)
            ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=9)
        else:
            ax.text(0.5, 0.5, "no labelled overlaps of both classes", ha="center", va="center")
        ax.set_xlabel("false positive rate" if kind == "roc" else "recall")
        ax.set_ylabel("true positive rate" if kind == "roc" else "precision")
        ax.set_title("ROC" if kind == "roc" else "precision-recall")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02), ax.grid(alpha=0.3)
        figs.append(_png(fig))
    return figs[0], figs[1]


def overlap_box(tag: str) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) pixel box of the overlap region inside the chip that sees it as `tag`."""
    (r0, c0), (r1, c1) = tile_rc(int(tag[0])), tile_rc(int(tag[1]))
    return r0 * TILE, c0 * TILE, (r1 + 1) * TILE, (c1 + 1) * TILE


def channel_subtraction(chip: np.ndarray, box) -> np.ndarray:
    """Signed difference (float32, H x W) of each pixel to the per-channel median of the overlap
    region, averaged over R, G, B: 0 = as the median, > 0 brighter, < 0 darker."""
    y0, x0, y1, x1 = box
    median = np.median(chip[y0:y1, x0:x1].reshape(-1, 3), axis=0).astype(np.float32)
    return (chip.astype(np.float32) - median).mean(axis=2)


_LUT = (matplotlib.colormaps["RdBu_r"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def diverging(diff: np.ndarray, clip: float = DIFF_CLIP) -> np.ndarray:
    """Signed levels -> RGB: blue (<= -clip) through white (0) to red (>= +clip).

    The colour follows the square root of |diff| / clip (signed): a coherent change of a
    few levels (calm sea brightness, a clipped dark chip) shows as a tint, a ship or a
    cloud edge is full colour, and pixel noise, already averaged by the thumbnail's
    downscaling, stays pale. Quarter marks of the scale: -clip/4 and +clip/4.
    """
    v = np.sign(diff) * np.sqrt(np.minimum(np.abs(diff), clip) / clip)  # in [-1, 1]
    return _LUT[np.round((v + 1) * 127.5).astype(np.uint8)]


def panel(chip1, chip2, tag: str, thumb: int, maps: bool = True) -> np.ndarray:
    """2 x 2 panel: chips with the overlap box drawn (top), their channel subtraction maps (bottom; only the
    top row without `maps`)."""
    cells = []
    for chip, t in ((chip1, tag), (chip2, partner_tag(tag))):
        box = overlap_box(t)
        scale = thumb / CHIP
        y0, x0, y1, x1 = (int(round(v * scale)) for v in box)
        small = cv2.resize(chip, (thumb, thumb), interpolation=cv2.INTER_AREA)
        # resize the signed difference, not its colours, so averaging stays meaningful
        diff = diverging(cv2.resize(channel_subtraction(chip, box), (thumb, thumb),
                                    interpolation=cv2.INTER_AREA))
        views = []
        for view, colour in ((small, BOX_CHIP), (np.ascontiguousarray(diff), BOX_DIFF)):
            cv2.rectangle(view, (x0, y0), (x1 - 1, y1 - 1), colour, 2)
            views.append(view)
        cells.append(views)
    gap = np.full((thumb, 4, 3), 255, np.uint8)
    top = np.hstack([cells[0][0], gap, cells[1][0]])
    if not maps:
        return top
    bottom = np.hstack([cells[0][1], gap, cells[1][1]])
    return np.vstack([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom])


def legend() -> dict:
    """The colour scale of the channel subtraction maps: its picture and its marks."""
    strip = np.repeat(_LUT[None], 14, axis=0)
    png = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))[1].tobytes()
    return {"src": data_uri(png, "image/png"), "clip": DIFF_CLIP, "quarter": DIFF_CLIP // 4}


def panel_uri(images_dir, img1: str, img2: str, tag: str, thumb: int, maps: bool = True) -> tuple[str, str]:
    """(data URI of an overlap's panel, "") or ("", why it cannot be shown)."""
    try:
        pic = panel(read_chip(Path(images_dir) / img1), read_chip(Path(images_dir) / img2), tag, thumb, maps)
    except RejectedImage as e:
        return "", f"cannot show: {e}"
    jpeg = simplejpeg.encode_jpeg(np.ascontiguousarray(pic), quality=PANEL_QUALITY, colorspace="RGB")
    return data_uri(jpeg, "image/jpeg"), ""

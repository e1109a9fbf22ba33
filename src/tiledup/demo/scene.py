"""Synthetic acquisitions: a scene's fixed geography and the passes (times) that see it.

A scene is `rows x cols` tiles of open sea, optionally with a coast (land,
beach, roads, piers). Geography never changes between passes; each pass
renders its own waves, sun glint, whitecaps, ships with wakes, clouds with
shadows, crop colours, lighting and sensor noise, and may be crossed by an
acquisition border (solid blue band, then black no-data).

A pass is returned as float32 RGB that may exceed 255 (cloud cores), so that
per-chip radiometric offsets later leave saturated white exactly white, plus
a fill map: no-data and border pixels are product fill values that no
radiometric change touches.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tiledup.grid import TILE

FILL_NONE, FILL_NODATA, FILL_BORDER = 0, 1, 2
NODATA_RGB = (0, 0, 0)
BORDER_RGB = (18, 52, 128)

# Land parcel colours (RGB): vegetation, bare soil, urban grey, roofs.
LAND_PALETTE = np.array([
    (58, 78, 44), (84, 98, 58), (44, 62, 38), (118, 104, 78), (148, 128, 98),
    (128, 128, 126), (166, 162, 156), (94, 94, 98), (196, 186, 176),
], np.float32)
SAND_RGB = np.array((212, 198, 164), np.float32)
PIER_RGB = np.array((184, 180, 170), np.float32)
ROAD_RGB = np.array((104, 104, 106), np.float32)
# Open-sea colours: calm dark ocean (a few levels above black) and bright coastal water.
DARK_SEA_RGB = np.array((0.5, 1.0, 2.2), np.float32)
BRIGHT_SEA_RGB = np.array([(96, 114, 90), (62, 108, 118), (108, 124, 118)], np.float32)
SHALLOW_RGB = np.array((118, 160, 148), np.float32)
SHIP_RGB = np.array([(236, 236, 232), (180, 180, 184), (150, 48, 40), (60, 62, 66)], np.float32)


def fractal(rng: np.random.Generator, shape: tuple[int, int], scale: float, octaves: int = 4) -> np.ndarray:
    """Smooth random field (mean 0, std 1) with features about `scale` pixels wide."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp = 1.0
    for o in range(octaves):
        s = max(scale / 2 ** o, 2.0)
        gh, gw = int(np.ceil(h / s)) + 2, int(np.ceil(w / s)) + 2
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        big = cv2.resize(grid, (int(gw * s), int(gh * s)), interpolation=cv2.INTER_CUBIC)
        out += amp * big[:h, :w]
        amp *= 0.5
    out -= out.mean()
    return out / (out.std() + 1e-6)


def waves(rng: np.random.Generator, shape: tuple[int, int], wavelength: float, theta: float) -> np.ndarray:
    """Wind-wave texture (std 1): white noise through an oriented Gabor band-pass."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma = 0.55 * wavelength
    size = int(4 * sigma) | 1
    kernel = cv2.getGaborKernel((size, size), sigma, theta, wavelength, 0.45, 0, ktype=cv2.CV_32F)
    kernel -= kernel.mean()
    out = cv2.filter2D(noise, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return out / (out.std() + 1e-6)


def _quantile(field: np.ndarray, q: float) -> float:
    return float(np.quantile(field[::8, ::8], q))


def _coords(h: int, w: int, theta: float) -> np.ndarray:
    """Signed distance (pixels) along direction theta, 0 at the scene centre."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (x - w / 2) * np.cos(theta) + (y - h / 2) * np.sin(theta)


@dataclass
class Geography:
    """What a scene keeps across passes."""

    shape: tuple[int, int]
    dark: bool
    sea_rgb: np.ndarray          # (3,) open-sea base colour
    wind: float                  # prevailing wave direction (radians)
    land: np.ndarray             # (H, W) bool: land, beach, roads and piers (no sea rendering)
    surface: np.ndarray          # (H, W, 3) float32 static colours where `land`
    parcel: np.ndarray           # (H, W) int32 parcel id (crop colours change per pass)
    n_parcels: int
    shallow: np.ndarray          # (H, W) float32 0..1 weight of shallow-water colour
    sea_dist: np.ndarray         # (H, W) float32 distance of sea pixels to land
    sea_light: np.ndarray        # (H, W) float32 large-scale sea brightness: sun glint (dark) or turbidity
    glint: float                 # dark sea: levels of glint light above the base colour
    piers: list                  # [(x0, y0, x1, y1, width)] for docked ships


def make_geography(rng: np.random.Generator, rows: int, cols: int, dark: bool, coast: bool) -> Geography:
    h, w = rows * TILE, cols * TILE
    land = np.zeros((h, w), bool)
    surface = np.zeros((h, w, 3), np.float32)
    parcel = np.zeros((h, w), np.int32)
    n_parcels = 1
    piers = []
    theta = rng.uniform(0, 2 * np.pi)
    if coast:
        # Land = the far side of a wiggly line across the scene, 10-35 % of it.
        s = _coords(h, w, theta) + 160 * fractal(rng, (h, w), 420, octaves=5)
        land = s > _quantile(s, 1 - rng.uniform(0.10, 0.35))
        inland = cv2.distanceTransform(land.astype(np.uint8), cv2.DIST_L2, 3)
        # Parcels: a rotated grid of fields and blocks in a few colours of the palette.
        # Parcel 0 is reserved for what never changes colour (beach, roads, piers).
        cell = int(rng.integers(60, 140))
        gh, gw = 2 * h // cell + 2, 2 * w // cell + 2
        ids = np.arange(1, gh * gw + 1, dtype=np.float32).reshape(gh, gw)
        big = cv2.resize(ids, (gw * cell, gh * cell), interpolation=cv2.INTER_NEAREST)
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(0, 90)), 1.0)
        rot[:, 2] -= (gw * cell - w) / 2, (gh * cell - h) / 2
        parcel = cv2.warpAffine(big, rot, (w, h), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_REFLECT).astype(np.int32)
        n_parcels = gh * gw + 1
        palette = LAND_PALETTE[rng.choice(len(LAND_PALETTE), 4, replace=False)]
        colours = palette[rng.integers(0, 4, n_parcels)] * rng.uniform(0.85, 1.15, (n_parcels, 1))
        texture = 1 + 0.10 * fractal(rng, (h, w), 24, octaves=3) + 0.08 * fractal(rng, (h, w), 300, octaves=2)
        surface = colours.astype(np.float32)[parcel] * texture[..., None]
        fixed = inland < rng.uniform(10, 30) * (1 + 0.4 * fractal(rng, (h, w), 200, octaves=2))
        surface[fixed] = SAND_RGB * texture[fixed, None]
        lines = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 4))):  # roads straight across the land
            p0, p1 = rng.uniform(0, (w, h), (2, 2)).astype(int)
            cv2.line(lines, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 1, int(rng.integers(3, 7)))
        road = (lines > 0) & land & ~fixed
        surface[road] = ROAD_RGB
        fixed |= road
        # Piers: from the coast straight out to sea (against the land direction).
        lines[:] = 0
        coast_px = np.argwhere(land & (inland <= 1.5))
        for _ in range(int(rng.integers(0, 4)) if len(coast_px) else 0):
            y0, x0 = coast_px[rng.integers(len(coast_px))]
            length, width = rng.uniform(90, 320), int(rng.integers(5, 12))
            ang = theta + np.pi + rng.uniform(-0.3, 0.3)
            x1, y1 = x0 + length * np.cos(ang), y0 + length * np.sin(ang)
            cv2.line(lines, (int(x0), int(y0)), (int(x1), int(y1)), 1, width)
            piers.append((float(x0), float(y0), float(x1), float(y1), width))
        pier = lines > 0
        land |= pier
        surface[pier] = PIER_RGB
        parcel[fixed | pier] = 0
    sea_dist = cv2.distanceTransform((~land).astype(np.uint8), cv2.DIST_L2, 3)
    # The large-scale sea brightness belongs to the scene (sun-glint geometry, water masses):
    # passes differ in the fine texture on top of it, not in a global pattern a hash would see.
    if dark:
        sea_rgb = DARK_SEA_RGB * rng.uniform(0.7, 1.5)
        shallow = np.zeros((h, w), np.float32)
        sea_light = np.clip(0.55 + 0.45 * fractal(rng, (h, w), rng.uniform(300, 700), octaves=3), 0.05, None)
    else:
        sea_light = 1 + 0.05 * fractal(rng, (h, w), rng.uniform(150, 400), octaves=3)
        sea_rgb = BRIGHT_SEA_RGB[rng.integers(len(BRIGHT_SEA_RGB))] * rng.uniform(0.9, 1.1)
        shallow = np.exp(-sea_dist / rng.uniform(40, 140)).astype(np.float32)  # all 0 without a coast
    return Geography((h, w), dark, sea_rgb.astype(np.float32), theta + np.pi / 2, land, surface,
                     parcel, n_parcels, shallow, sea_dist, sea_light, float(rng.uniform(1.0, 3.5)), piers)


def _sea(rng: np.random.Generator, geo: Geography) -> np.ndarray:
    """Open sea for one pass: waves at this pass's direction and wavelength, glint, whitecaps."""
    h, w = geo.shape
    wavelength = rng.uniform(5, 11)
    theta = geo.wind + rng.uniform(-np.pi / 3, np.pi / 3)
    wave = 0.8 * waves(rng, (h, w), wavelength, theta) + 0.45 * waves(
        rng, (h, w), wavelength * rng.uniform(0.5, 0.8), theta + rng.uniform(-1.2, 1.2))
    if geo.dark:
        # Calm dark ocean: only sun glint makes the waves visible, a few levels above black.
        strength = geo.glint * rng.uniform(0.85, 1.15)
        light = strength * geo.sea_light * np.clip(1 + 0.7 * wave, 0, None)
        sea = geo.sea_rgb + light[..., None] * np.array((0.8, 1.0, 1.5), np.float32)
    else:
        base = geo.sea_rgb * geo.sea_light[..., None]
        base = base + (SHALLOW_RGB - base) * geo.shallow[..., None]
        sea = base + rng.uniform(2.5, 6.0) * wave[..., None]
    # Whitecaps / glint specks: sparse bright points, new ones every pass.
    n = int(h * w * rng.uniform(1e-4, 6e-4))
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    sea[ys, xs] += rng.uniform(15, 90, (n, 1)).astype(np.float32)
    return sea


def _ship(img: np.ndarray, wake: np.ndarray, rng: np.random.Generator, x: float, y: float,
          heading: float, length: float, moving: bool) -> None:
    """Draw a hull (pointed bow) into img and, if moving, its wake into the wake mask."""
    width = length * rng.uniform(0.14, 0.24)
    c, s = np.cos(heading), np.sin(heading)
    along, across = np.array((c, s)), np.array((-s, c))
    hull = [(-0.5, -0.5), (0.3, -0.5), (0.5, 0.0), (0.3, 0.5), (-0.5, 0.5)]
    pts = np.array([(x, y) + a * length * along + b * width * across for a, b in hull], np.int32)
    colour = SHIP_RGB[rng.integers(len(SHIP_RGB))]
    cv2.fillPoly(img, [pts], tuple(map(float, colour)))
    deck = np.array([(x, y) + a * length * along + b * width * across
                     for a, b in [(-0.4, -0.25), (0.0, -0.25), (0.0, 0.25), (-0.4, 0.25)]], np.int32)
    cv2.fillPoly(img, [deck], tuple(map(float, np.clip(colour * rng.uniform(0.6, 1.3), 0, 255))))
    if moving:
        stern = np.array((x, y)) - 0.5 * length * along
        trail = length * rng.uniform(2, 6)
        for k in range(6):  # turbulent track, fading with distance from the stern
            a, b = stern - along * trail * k / 6, stern - along * trail * (k + 1) / 6
            cv2.line(wake, tuple(map(int, a)), tuple(map(int, b)), 1.0 - k / 6, max(2, int(width * 0.9)))
        for side in (-1, 1):  # Kelvin arms, about 19.5 degrees off the track
            arm = heading + np.pi + side * 0.34
            end = stern + trail * 0.6 * np.array((np.cos(arm), np.sin(arm)))
            cv2.line(wake, tuple(map(int, stern)), tuple(map(int, end)), 0.35, 2)


def _ships(img: np.ndarray, rng: np.random.Generator, geo: Geography, per_tile: float) -> None:
    h, w = geo.shape
    wake = np.zeros((h, w), np.float32)
    for _ in range(int(rng.poisson(per_tile * h * w / TILE ** 2))):
        length = float(rng.choice([rng.uniform(12, 30), rng.uniform(30, 90)], p=[0.7, 0.3]))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if geo.sea_dist[int(y), int(x)] < length:  # keep hulls off the land
            continue
        _ship(img, wake, rng, x, y, rng.uniform(0, 2 * np.pi), length, rng.random() < 0.7)
    for x0, y0, x1, y1, width in geo.piers:  # moored ships alongside piers
        if rng.random() < 0.6:
            t = rng.uniform(0.3, 0.9)
            heading = np.arctan2(y1 - y0, x1 - x0)
            length = rng.uniform(25, 70)
            off = (width / 2 + length * 0.13 + 2) * rng.choice([-1, 1])
            x = x0 + t * (x1 - x0) - off * np.sin(heading)
            y = y0 + t * (y1 - y0) + off * np.cos(heading)
            _ship(img, wake, rng, x, y, heading, length, False)
    if wake.any():
        wake = cv2.GaussianBlur(wake, (0, 0), 2.0)
        foam = wake * np.clip(1 + 0.6 * rng.standard_normal((h, w), dtype=np.float32), 0, None)
        foam *= ~geo.land
        img += (foam * rng.uniform(30, 80))[..., None]


def _clouds(img: np.ndarray, rng: np.random.Generator, cover: float) -> None:
    """Cumulus-like clouds with saturated cores and soft edges, and their shadows."""
    h, w = img.shape[:2]
    d = fractal(rng, (h, w), rng.uniform(220, 480), octaves=5)
    t = _quantile(d, 1 - cover)
    alpha = np.clip((d - t) / 0.35, 0, 1)
    core = np.clip((d - t - 0.25) / 0.5, 0, 1)
    dx, dy = rng.uniform(-70, 70, 2)
    shadow = cv2.warpAffine(alpha, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
    img *= (1 - 0.45 * shadow)[..., None]
    value = 212 + 80 * core  # > 255 in the cores: stays pure white after any small offset
    img *= (1 - alpha)[..., None]
    img += (alpha * value)[..., None]


def _border(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Fill map of an acquisition border crossing the scene near one edge."""
    h, w = shape
    theta = rng.integers(4) * np.pi / 2 + rng.uniform(-0.25, 0.25)
    d = _coords(h, w, theta)
    edge = _quantile(d, 1 - rng.uniform(0.08, 0.3))
    band = rng.uniform(300, 560)  # wide enough to fill whole tiles
    fill = np.zeros(shape, np.uint8)
    fill[d > edge - band] = FILL_BORDER
    fill[d > edge] = FILL_NODATA
    return fill


def render_pass(rng: np.random.Generator, geo: Geography, *, cloudy_share: float, cloud_cover: float, overcast: bool,
                border: bool, ships_per_tile: float, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the scene: (H, W, 3) float32 RGB (may exceed 255) and (H, W) uint8 fill map."""
    h, w = geo.shape
    img = _sea(rng, geo)
    # Land: same fields, but a quarter of them change colour (crops), and this pass's light.
    changed = rng.random((geo.n_parcels, 1)) < 0.25
    changed[0] = False
    crop = 1 + changed * (rng.normal(0, 0.10, (geo.n_parcels, 1)) + rng.normal(0, 0.04, (geo.n_parcels, 3)))
    if geo.land.any():
        on = geo.land
        img[on] = geo.surface[on] * crop.astype(np.float32)[geo.parcel[on]]
    _ships(img, rng, geo, ships_per_tile)
    gain = rng.uniform(0.93, 1.07) * (1 + rng.normal(0, 0.02, 3))
    img *= gain.astype(np.float32)
    # Ordinary passes: a share of them cloudy, with cover uniform in [0, 2 x cloud_cover].
    cover = rng.uniform(0.85, 0.95) if overcast else (rng.random() < cloudy_share) * rng.uniform(0, 2 * cloud_cover)
    if cover > 0.01:
        _clouds(img, rng, cover)
    img += noise * rng.standard_normal((h, w, 3), dtype=np.float32)
    fill = _border(rng, (h, w)) if border else np.zeros((h, w), np.uint8)
    return img, fill

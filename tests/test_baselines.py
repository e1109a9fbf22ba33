"""Baseline similarities on real tiles: identical = 1, re-encoded copy close, other places far."""

from __future__ import annotations

import cv2
import numpy as np
import simplejpeg

from tiledup.scoring import baselines
from tiledup.tiles.decode import cut_tiles, read_chip


def recode(tile, quality=90):
    return simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(np.ascontiguousarray(tile), quality=quality,
                                                         colorspace="RGB"), colorspace="RGB")


def hashes(tiles):
    h = baselines.tile_hashes(tiles)
    h["bmh"], h["bmh96"] = baselines.bmh(tiles), baselines.bmh96(tiles)
    return h


def test_hamming_similarity_known_values():
    a = np.array([[0x00, 0x00]], np.uint8)
    assert baselines.hamming_sim(a, np.array([[0xFF, 0xFF]], np.uint8))[0] == 0
    assert baselines.hamming_sim(a, np.array([[0x01, 0x00]], np.uint8))[0] == np.float32(1 - 1 / 16)
    bits = np.array([[True, False, True, False]])
    assert baselines.hamming_sim(bits, np.array([[True, True, True, False]]))[0] == np.float32(0.75)


def test_pixel_scores_known_values():
    t = np.full((2, 8, 8, 3), 100, np.uint8)
    u = t.copy()
    u[0] += 3  # every channel value off by 3
    u[1, 0, 0, 0] = 0  # one channel value of 192 off by 100
    s = baselines.pixel_scores(t, u)
    assert s["pixel_eq"][0] == 0 and s["pixel_mad"][0] == np.float32(1 - 3 / 255)
    assert s["pixel_eq"][1] == np.float32(1 - 1 / 192)
    assert np.isclose(s["pixel_mad"][1], 1 - 100 / 192 / 255)


def test_bmh_matches_opencv_on_bgr_and_channels(airbus_chips):
    tile = cut_tiles(read_chip(airbus_chips[0]))[4]
    bgr = cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)
    assert bytes(baselines.bmh(tile[None])[0]) == cv2.img_hash.blockMeanHash(bgr, mode=0).tobytes()
    b96 = baselines.bmh96(tile[None])[0]
    assert b96.shape == (96,)
    assert bytes(b96[64:]) == cv2.img_hash.blockMeanHash(np.ascontiguousarray(bgr[..., 0]), mode=0).tobytes()


def test_similarities_rank_same_place_above_other_places(airbus_chips):
    """On real chips: tile vs itself = 1; vs its JPEG re-encode at least as similar as vs another tile."""
    near_all, far_all = {m: [] for m in baselines.METHODS}, {m: [] for m in baselines.METHODS}
    for path in airbus_chips[:4]:
        tiles = cut_tiles(read_chip(path))
        same = baselines.pair_scores(tiles, tiles, hashes(tiles), hashes(tiles))
        assert all(np.all(v == 1) for v in same.values())
        copy = np.stack([recode(t) for t in tiles])
        near = baselines.pair_scores(tiles, copy, hashes(tiles), hashes(copy))
        other = np.roll(tiles, 1, axis=0)
        far = baselines.pair_scores(tiles, other, hashes(tiles), hashes(other))
        assert np.median(near["pixel_eq"]) < 1  # a re-encode changes channel values (solid tiles aside)
        for m in baselines.METHODS:
            near_all[m].append(near[m])
            far_all[m].append(far[m])
    for m in baselines.METHODS:
        near, far = np.concatenate(near_all[m]), np.concatenate(far_all[m])
        # coarse hashes (colorhash, dhash) tie on look-alike sea tiles, so ties are allowed
        assert (near >= far).mean() >= 0.9 and near.mean() > far.mean(), m

"""Augmentations: GIMP parity of hls_shift on real edits, shared geometry, labels untouched."""

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simplejpeg

from tiledup.model.augment import (augment_pair, channel_offset, check_augment, dihedral,
                             hls_shift, jpeg_roundtrip)
from tiledup.run.errors import TiledupError
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.model.loader import TRAIN_STREAM, VAL_STREAM, PairDataset, make_loader, read_pairs

from configured import options

AUGMENT = options("train.augment")
NO_PHOTO = dict(AUGMENT, jpeg_p=0.0, hls_p=0.0, offset_p=0.0)


def _decode(path: Path) -> np.ndarray:
    return simplejpeg.decode_jpeg(path.read_bytes(), colorspace="RGB")


def test_hls_shift_matches_gimp_on_every_reference_file(real_data):
    folder = real_data / "gimp_hls"
    original = _decode(folder / "03a5fd8d2.jpg")
    edits = sorted((folder / "03a5fd8d2").glob("*.jpg"))
    # every channel at both signs, and the largest amounts: lightness and saturation 100 %, hue 180
    covered = {p.stem[:2] for p in edits}
    assert covered == {"Hp", "Hm", "Lp", "Lm", "Sp", "Sm"}, covered
    assert {"Hp180", "Lp100", "Lm100", "Sp100", "Sm100"} <= {p.stem for p in edits}
    mad = {}
    for path in edits:
        name = path.stem  # e.g. Hp135 = hue +135 degrees, Lm050 = lightness -50 %
        amount = int(name[2:]) * (1 if name[1] == "p" else -1)
        ours = hls_shift(original, name[0], amount)
        mad[name] = float(np.abs(ours.astype(np.int16) - _decode(path)).mean())
    report = ", ".join(f"{k} {v:.2f}" for k, v in mad.items())
    assert max(mad.values()) <= 2.5, f"mean abs diff vs GIMP per file: {report}"
    # and the edits are real: the unedited chip is far from every one of them
    for path in edits:
        assert float(np.abs(original.astype(np.int16) - _decode(path)).mean()) > 10, path.name


def test_hls_shift_returns_new_array_and_rejects_unknown_channel():
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    before = rgb.copy()
    out = hls_shift(rgb, "L", 30)
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out is not rgb
    assert np.array_equal(rgb, before)
    assert out.astype(int).mean() > rgb.astype(int).mean()  # lighter
    with pytest.raises(ValueError, match="channel"):
        hls_shift(rgb, "V", 10)


def test_jpeg_roundtrip_and_channel_offset_are_small_edits(airbus_chips):
    tile = cut_tiles(read_chip(airbus_chips[0]))[4]
    again = jpeg_roundtrip(tile, 95)
    mad = np.abs(again.astype(int) - tile).mean()
    assert again.shape == tile.shape and 0 < mad < 3
    shifted = channel_offset(tile, [3.0, -2.0, 0.0])
    expected = np.clip(tile.astype(int) + [3, -2, 0], 0, 255)
    assert np.array_equal(shifted, expected)


def test_dihedral_group_has_eight_distinct_members():
    x = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    members = {dihedral(x, k).tobytes() for k in range(8)}
    assert len(members) == 8


def test_geometric_transform_is_shared_by_both_tiles(airbus_chips):
    tiles = cut_tiles(read_chip(airbus_chips[1]))
    a, b = tiles[0], tiles[5]
    seen_swap = set()
    for s in range(24):
        o1, o2 = augment_pair(a, b, np.random.default_rng(s), **NO_PHOTO)
        matches = [k for k in range(8)
                   if (np.array_equal(o1, dihedral(a, k)) and np.array_equal(o2, dihedral(b, k)))
                   or (np.array_equal(o1, dihedral(b, k)) and np.array_equal(o2, dihedral(a, k)))]
        assert matches, f"seed {s}: the two tiles got different flips/rotations"
        seen_swap.add(np.array_equal(o1, dihedral(b, matches[0])))
    assert seen_swap == {True, False}  # the order is swapped sometimes, not always


def _table(tmp_path, rows) -> Path:
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"image_id": [r[0] for r in rows],
                             "tile1": pa.array([r[1] for r in rows], pa.int8()),
                             "tile2": pa.array([r[2] for r in rows], pa.int8()),
                             "is_dup": [r[1] == r[2] for r in rows]}), path)
    return path


def test_augmentations_keep_labels_and_duplicates_aligned(tmp_path, airbus_chips, real_data):
    rows = []
    for path in airbus_chips[:4]:
        tiles = cut_tiles(read_chip(path))
        a, b = np.argsort([t.std() for t in tiles])[-2:]  # the two most textured tiles
        rows += [(path.name, int(a), int(a)), (path.name, int(min(a, b)), int(max(a, b)))]
    pairs = read_pairs(_table(tmp_path, rows), "training")
    # strong photometric settings: every side re-encoded, every pair colour-shifted
    strong = check_augment({"jpeg_p": 1.0, "hls_p": 1.0, "offset_p": 1.0})
    ds = PairDataset(pairs, real_data / "airbus_samples", seed=3, stream=TRAIN_STREAM, augment=strong)
    for epoch in (1, 2):
        ds.epoch = epoch
        for i, (image_id, t1, t2) in enumerate(rows):
            x, y = ds[i]
            assert x.shape == (256, 256, 6) and x.dtype.is_floating_point is False
            assert float(y) == float(t1 == t2), f"row {i} ({image_id}) label changed"
            corr = np.mean([np.corrcoef(x[..., c].flatten().numpy(), x[..., c + 3].flatten().numpy())[0, 1]
                            for c in range(3)])
            if t1 == t2:  # still the same pixels up to colour and JPEG noise: not misaligned
                assert corr > 0.8, f"row {i} ({image_id}): duplicate decorrelated to {corr:.2f}"


def test_validation_is_fixed_and_training_varies_by_epoch(tmp_path, airbus_chips, real_data):
    rows = [(airbus_chips[2].name, 3, 3), (airbus_chips[2].name, 2, 6)]
    pairs = read_pairs(_table(tmp_path, rows), "validation")
    images = real_data / "airbus_samples"
    aug = check_augment({})
    val = PairDataset(pairs, images, seed=0, stream=VAL_STREAM, augment=aug)
    loader = make_loader(val, batch_size=2, workers=0, shuffle=False, seed=0, pin_memory=False)
    batches = [next(iter(loader))[0] for _ in range(2)]
    assert np.array_equal(batches[0].numpy(), batches[1].numpy())
    tr = PairDataset(pairs, images, seed=0, stream=TRAIN_STREAM, augment=aug)
    tr.epoch = 1
    first = [tr[i][0].numpy() for i in range(2)]
    tr.epoch = 2
    assert any(not np.array_equal(first[i], tr[i][0].numpy()) for i in range(2))


def test_loader_workers_do_not_change_the_stream(tmp_path, airbus_chips, real_data):
    """Randomness is keyed by (seed, epoch, row): 0 or 2 workers give identical batches."""
    rows = [(p.name, t, t if t % 2 else 8 - t) for p in airbus_chips[:2] for t in range(3)]
    pairs = read_pairs(_table(tmp_path, rows), "training")
    ds = PairDataset(pairs, real_data / "airbus_samples", seed=1, stream=TRAIN_STREAM,
                     augment=check_augment({}))
    def batches(workers):
        loader = make_loader(ds, batch_size=2, workers=workers, shuffle=True, seed=1, pin_memory=False)
        loader.sampler.epoch = 1
        return [x.numpy() for x, _ in loader]
    serial, parallel = batches(0), batches(2)
    assert len(serial) == 3 and all(np.array_equal(a, b) for a, b in zip(serial, parallel))
    # and no two rows share an augmentation stream: their (identical-input) pairs differ
    assert len({b.tobytes() for b in serial}) == 3


@pytest.mark.parametrize("options, message", [
    ({"jpeg_quality": [97, 90]}, "jpeg_quality"),
    ({"hue": 200}, "hue"),
    ({"hls_p": 1.5}, "hls_p"),
    ({"hls_channels": 4}, "hls_channels"),
    ({"blur": 1}, "unknown"),
])
def test_bad_augment_options_are_named(options, message):
    with pytest.raises(TiledupError, match=message):
        check_augment(options)


def _changed_hls_channels(before: np.ndarray, after: np.ndarray) -> int:
    """How many of hue, lightness, saturation an edit moved (mean over the tile > 1.5 units)."""
    a, b = (cv2.cvtColor(x, cv2.COLOR_RGB2HLS_FULL).astype(np.int16) for x in (before, after))
    d = np.abs(a - b)
    d[..., 0] = np.minimum(d[..., 0], 256 - d[..., 0])  # hue wraps around
    return int((d.reshape(-1, 3).mean(0) > 1.5).sum())


@pytest.mark.parametrize("channels", [1, 3])
def test_hls_edit_changes_up_to_hls_channels_of_hue_lightness_saturation(channels):
    # mid-tone colours, where an edit of one of hue / lightness / saturation leaves the others in place
    tile = np.random.default_rng(0).integers(60, 190, (256, 256, 3)).astype(np.uint8)
    options = dict(NO_PHOTO, hls_p=1.0, hue=30, lightness=40, saturation=40, hls_channels=channels)
    seen = []
    for seed in range(40):
        a, b = augment_pair(tile, tile, np.random.default_rng(seed), **options)
        views = [dihedral(tile, k) for k in range(8)]  # the unedited side is one of them
        edited, other = (a, b) if any(np.array_equal(b, v) for v in views) else (b, a)
        seen.append(_changed_hls_channels(other, edited))
    assert max(seen) <= channels and max(seen) == channels, seen

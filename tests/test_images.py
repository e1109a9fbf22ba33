"""Chip decoding, the colour policy, rejects with reasons, and tile cutting (real JPEG bytes)."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tiledup import grid
from tiledup.run.errors import TiledupError
from tiledup.tiles.decode import RejectedImage, cut_tiles, decode_chip, read_chip


@pytest.fixture(scope="module")
def chip_path(airbus_chips):
    return airbus_chips[0]


def jpeg_bytes(pil_image, **kw):
    buf = io.BytesIO()
    pil_image.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def reason_of(path_or_bytes):
    with pytest.raises(RejectedImage) as e:
        if isinstance(path_or_bytes, bytes):
            decode_chip(path_or_bytes, "x.jpg")
        else:
            read_chip(path_or_bytes)
    assert isinstance(e.value, TiledupError)
    assert e.value.reason in str(e.value)
    return e.value.reason


def test_real_chips_decode_like_opencv(airbus_chips):
    assert len(airbus_chips) == 24
    for path in airbus_chips:
        chip = read_chip(path)
        assert chip.shape == (768, 768, 3) and chip.dtype == np.uint8
        ref = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(chip, ref), path.name  # tile digests do not depend on the decoder


def test_cut_tiles_is_row_major_and_contiguous(chip_path):
    chip = read_chip(chip_path)
    tiles = cut_tiles(chip)
    assert tiles.shape == (9, 256, 256, 3) and tiles.flags.c_contiguous
    for t in range(9):
        assert np.array_equal(tiles[t], chip[grid.tile_slice(t)])
    assert np.array_equal(tiles[1], chip[0:256, 256:512])
    assert np.array_equal(tiles[3], chip[256:512, 0:256])
    with pytest.raises(ValueError, match="shape"):
        cut_tiles(chip[:512])


def test_decode_and_cut_into_reused_buffers(airbus_chips):
    """The tile stage decodes and cuts every chip into the same two buffers."""
    chip_buffer = np.empty((768, 768, 3), np.uint8)
    tile_buffer = np.empty((9, 256, 256, 3), np.uint8)
    for path in airbus_chips[:3]:
        data = path.read_bytes()
        chip = decode_chip(data, path, out=chip_buffer)
        assert np.shares_memory(chip, chip_buffer) and np.array_equal(chip, decode_chip(data))
        tiles = cut_tiles(chip, out=tile_buffer)
        assert tiles is tile_buffer and np.array_equal(tiles, cut_tiles(decode_chip(data)))
    with pytest.raises(ValueError, match="C-contiguous"):
        cut_tiles(chip, out=np.empty((9, 256, 256, 4), np.uint8)[..., :3])


def test_truncated_and_corrupt_jpegs_are_rejected(chip_path, tmp_path):
    data = chip_path.read_bytes()
    assert "corrupt JPEG" in reason_of(data[: len(data) // 2])
    assert "corrupt JPEG" in reason_of(data[:-2])  # only the end-of-image marker missing
    assert "corrupt JPEG header" in reason_of(data[:100])
    zeroed = bytearray(data)
    zeroed[3000:3400] = bytes(400)
    assert "corrupt JPEG" in reason_of(bytes(zeroed))
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(data[:20000])
    assert "corrupt JPEG" in reason_of(truncated)


def test_non_jpeg_files_are_named(chip_path, tmp_path):
    im = Image.open(chip_path)
    png = io.BytesIO()
    im.save(png, "PNG")
    assert reason_of(png.getvalue()) == "not a JPEG (PNG data)"
    assert reason_of(b"") == "empty file"
    assert reason_of(b"image_id,EncodedPixels\n") == "not a JPEG (no JPEG start marker)"
    renamed = tmp_path / "png.jpg"
    renamed.write_bytes(png.getvalue())
    assert reason_of(renamed) == "not a JPEG (PNG data)"


def test_wrong_size_is_rejected(chip_path):
    im = Image.open(chip_path)
    assert reason_of(jpeg_bytes(im.resize((512, 512)))) == "size 512x512, expected 768x768"
    assert reason_of(jpeg_bytes(im.crop((0, 0, 768, 700)))) == "size 768x700, expected 768x768"


def test_greyscale_is_converted_cmyk_is_rejected(chip_path):
    im = Image.open(chip_path)
    grey = jpeg_bytes(im.convert("L"))
    chip = decode_chip(grey, "grey.jpg")
    assert chip.shape == (768, 768, 3)
    assert np.array_equal(chip[..., 0], chip[..., 1]) and np.array_equal(chip[..., 1], chip[..., 2])
    assert np.array_equal(chip[..., 0], np.asarray(Image.open(io.BytesIO(grey))))  # same as Pillow
    assert "CMYK" in reason_of(jpeg_bytes(im.convert("CMYK")))


def test_missing_and_unreadable_files(tmp_path):
    assert reason_of(tmp_path / "gone.jpg") == "missing (listed but not found)"
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    assert reason_of(folder).startswith("unreadable")


def test_damaged_bytes_give_a_reject_or_a_chip_never_a_crash(chip_path):
    data = chip_path.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = set()
    for i in range(60):
        damaged = bytearray(data)
        end = 700 if i % 2 else len(data)  # headers and tables, or anywhere
        for pos in rng.integers(2, end, size=rng.integers(1, 8)):
            damaged[pos] = rng.integers(0, 256)
        try:
            assert decode_chip(bytes(damaged), "x.jpg").shape == (768, 768, 3)
            outcomes.add("decoded")
        except RejectedImage as e:
            outcomes.add(e.reason.split(" (")[0])
    assert {"corrupt JPEG", "corrupt JPEG header"} <= outcomes

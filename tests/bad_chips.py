"""Files a user's chip folder may hold that the tile stage must reject (the issue-11 set)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

# file name -> the kind of reason the tile stage gives (tiledup.tiles.rejects.reason_kind)
BAD_CHIPS = {
    "bad000001.jpg": "corrupt JPEG",  # truncated
    "bad000002.jpg": "not a JPEG",  # PNG data named .jpg
    "bad000003.jpg": "size 512x512, expected 768x768",
    "bad000004.jpg": "empty file",
}


def write_bad_chips(folder: Path, real_chip: Path) -> dict[str, str]:
    """Write the four bad files into `folder`, made from one real chip; returns BAD_CHIPS."""
    data = real_chip.read_bytes()
    im = Image.open(real_chip)
    (folder / "bad000001.jpg").write_bytes(data[: len(data) // 3])
    png = io.BytesIO()
    im.save(png, "PNG")
    (folder / "bad000002.jpg").write_bytes(png.getvalue())
    small = io.BytesIO()
    im.resize((512, 512)).save(small, "JPEG", quality=95)
    (folder / "bad000003.jpg").write_bytes(small.getvalue())
    (folder / "bad000004.jpg").write_bytes(b"")
    return BAD_CHIPS

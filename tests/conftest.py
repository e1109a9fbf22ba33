"""Shared fixtures: the real reference data in tests/data (see tests/data/README.md)."""

import shutil
from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def real_data() -> Path:
    return REAL_DATA


@pytest.fixture(scope="session")
def airbus_chips(real_data) -> list[Path]:
    chips = sorted((real_data / "airbus_samples").glob("*.jpg"))
    assert len(chips) == 24, f"expected the 24 real chips in {real_data / 'airbus_samples'}"
    return chips


def copy_chips(chips, folder: Path) -> Path:
    """A user's folder of chips: `folder` (made if needed) holding copies of `chips`."""
    folder.mkdir(parents=True, exist_ok=True)
    for chip in chips:
        shutil.copy(chip, folder / chip.name)
    return folder

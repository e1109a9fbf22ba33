"""Shared fixtures: the real reference data in tests/data (see tests/data/README.md)."""

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

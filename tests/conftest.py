"""Shared fixtures: the real reference data in ../shared/data (skipped only when absent)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def airbus_chips(shared_data) -> list[Path]:
    return sorted((shared_data / "airbus_samples").glob("*.jpg"))

"""Shared test fixtures.  ``../shared`` (fixtures, research data) sits beside the repository."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOMU_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def dancer_video() -> Path:
    p = SHARED / "fixtures" / "dancer.avi"
    if not p.exists():
        pytest.fail(f"test fixture {p} missing: ../shared/fixtures must sit beside the repository")
    return p

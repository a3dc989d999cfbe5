"""Shared test fixtures.

``../shared`` (fixtures, research data) sits beside the repository; ``MOMU_SHARED`` points elsewhere.
Tests that need it skip (not fail) when it is absent, saying what is missing.  ``momu_cli`` runs the
CLI in-process (tests/_cli.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from _cli import run_momu  # tests/_cli.py (test files import it the same way)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOMU_SHARED", REPO.parent / "shared"))


def need_shared(*parts: str) -> Path:
    """``SHARED/parts...``, or skip the test naming what is missing and how to point at it."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        rel = "/".join(("../shared",) + parts)
        pytest.skip(f"needs {rel} (set MOMU_SHARED to the shared folder; looked for {p})")
    return p


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return need_shared()


@pytest.fixture(scope="session")
def dancer_video() -> Path:
    """The real dance video (shared/fixtures/dancer.avi; see shared/fixtures/README.md)."""
    return need_shared("fixtures", "dancer.avi")


@pytest.fixture(scope="session")
def dwm_shared() -> Path:
    """The shared Dance-with-Melody research data (shared/data/dwm)."""
    need_shared("data", "dwm", "index.csv")
    return SHARED / "data" / "dwm"


@pytest.fixture(scope="session")
def momu_cli():
    """``momu_cli("generate", "joint", ..., cwd=..., setenv={...}) -> CliResult`` (in-process; tests/_cli.py)."""
    return run_momu


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread avoids OpenMP spin-waiting on a loaded 2-core box (module scope)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""Fixtures every test folder shares, and settings that must exist before any test imports torch."""

from __future__ import annotations

import os
from typing import Any

import pytest

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core CI machine, spinning threads made
# torch work 10-30x slower (the CLI and the Slicer worker set the same).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def scene() -> Any:
    """A new headless MRML scene (the slicer-core wheel) with Slicer's module logics, set as
    ``slicer.mrmlScene``; the test is skipped where slicer-core is not installed."""
    slicer_scene = pytest.importorskip("Testing.support.slicer_scene")
    return slicer_scene.headless_scene()

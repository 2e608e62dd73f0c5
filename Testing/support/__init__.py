"""What the tests share besides fixtures (Testing/conftest.py): phantoms, a headless Slicer scene, stand-ins
for Slicer's Qt side, a scripted worker, and where things are."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SUPPORT = Path(__file__).resolve().parent
TESTING = SUPPORT.parent
REPO = TESTING.parent


def fake_worker_command(mode: str = "ok") -> list[str]:
    """The command prefix of the scripted stand-in for the worker (fake_worker.py) in ``mode``: ok,
    error, crash or hang."""
    return [sys.executable, str(SUPPORT / "fake_worker.py"), "--mode", mode]


def slicer_api_by_version() -> dict[str, Any]:
    """What each recorded Slicer version's APIs take (slicer_api_by_version.json), by version."""
    return json.loads((SUPPORT / "slicer_api_by_version.json").read_text(encoding="utf-8"))["versions"]

"""Progress reporting and cancellation shared by training, prediction, the CLI and the Slicer worker.

Long-running functions take ``progress: ProgressCallback | None`` and ``cancel: CancelToken | None``.
They call ``report(progress, ProgressEvent(...))`` now and then and ``cancel.raise_if_cancelled()``
between steps; a cancelled run raises :class:`Cancelled` and writes nothing.

The JSON-lines protocol (``--progress json``) prints one :class:`ProgressEvent` per line on stdout, e.g.::

    {"stage": "training", "fraction": 0.42, "loss": 0.0123, "eta_seconds": 85.2, "message": "step 420"}

Stages, in order: ``loading``, ``training``, ``predicting``, ``writing``, then ``done`` (whose
``summary`` holds the run's closing figures) or ``error`` (whose ``message`` says what went wrong).
Another process (the Slicer module) follows a run by parsing these lines and cancels it by killing it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, TextIO

STAGES = ("loading", "training", "predicting", "writing", "done", "error")


class Cancelled(Exception):
    """Raised inside a run when its :class:`CancelToken` was cancelled."""


class CancelToken:
    """A thread-safe flag a caller sets to stop a run at its next check."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("the run was cancelled")


@dataclass
class ProgressEvent:
    """One progress report; ``fraction`` is the stage's completed share in [0, 1]."""

    stage: str
    fraction: float = 0.0
    message: str = ""
    loss: Optional[float] = None
    eta_seconds: Optional[float] = None
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None and v != {}}
        return json.dumps(data, allow_nan=False, default=_json_default)

    @classmethod
    def from_json(cls, line: str) -> ProgressEvent:
        data = json.loads(line)
        if not isinstance(data, dict) or data.get("stage") not in STAGES:
            raise ValueError(f"not a progress event: {line!r}")
        known = {k: data[k] for k in ("stage", "fraction", "message", "loss", "eta_seconds", "summary") if k in data}
        return cls(**known)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


ProgressCallback = Callable[[ProgressEvent], None]


def report(progress: Optional[ProgressCallback], event: ProgressEvent) -> None:
    """Send ``event`` to ``progress`` if there is a callback."""
    if progress is not None:
        progress(event)


def check_cancelled(cancel: Optional[CancelToken]) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


class JsonLinesReporter:
    """Writes each event as one JSON line and flushes, so a parent process sees it at once."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def __call__(self, event: ProgressEvent) -> None:
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()


class TextProgressBar:
    """A one-line terminal progress bar per stage, redrawn at most ten times a second."""

    def __init__(self, stream: Optional[TextIO] = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._stage: Optional[str] = None
        self._last_draw = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage in ("done", "error"):
            self._finish_line()
            return
        now = time.monotonic()
        new_stage = event.stage != self._stage
        if new_stage:
            self._finish_line()
            self._stage = event.stage
        elif now - self._last_draw < 0.1 and event.fraction < 1.0:
            return
        self._last_draw = now
        fraction = min(max(event.fraction, 0.0), 1.0)
        filled = int(round(fraction * self.width))
        parts = [f"\r{event.stage:<10} [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}%"]
        if event.loss is not None:
            parts.append(f" loss {event.loss:.4g}")
        if event.eta_seconds is not None:
            parts.append(f" eta {event.eta_seconds:5.0f}s")
        if event.message:
            parts.append(f"  {event.message}")
        self.stream.write("".join(parts)[:160].ljust(100))
        self.stream.flush()

    def _finish_line(self) -> None:
        if self._stage is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._stage = None


def warning_sentences(summary: Mapping[str, Any]) -> list[str]:
    """A run's warnings (``summary["warnings"]``: what it chose for the user, or found odd, such as
    the DICOM series read, a device that was not there, negative voxels taken for noise) as
    sentences for a status line."""
    return [f"Warning: {warning[:1].upper()}{warning[1:]}." for warning in summary.get("warnings", [])]

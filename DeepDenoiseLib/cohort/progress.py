"""Progress of a whole cohort: how many scans are done, skipped, failed and cancelled, the time left,
and each scan's start and finish, as events for a bar on the terminal or JSON lines on stdout.

Events (``CohortEvent.to_json()`` is the line ``--progress json`` prints)::

    {"stage": "scan", "event": "start", "scan": "sub-01/anat/sub-01_T1w.nii.gz", "action": "apply"}
    {"stage": "scan", "event": "finish", "scan": "...", "status": "done", "seconds": 41.2, "worker": "0", "message": ""}
    {"stage": "cohort", "done": 3, "skipped": 0, "failed": 1, "cancelled": 0, "total": 16, "eta_seconds": 512.0}
    {"stage": "done", "summary": {"counts": {...}, "report": "out/deepdenoise_report.csv", ...}}

>>> tally = CohortTally(total=16, progress=CohortBar())
>>> tally.started("a.nii.gz", "denoise"); tally.finished(row)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TextIO

from DeepDenoiseLib.cohort.report import STATUSES, ScanRow


@dataclass
class CohortEvent:
    """One cohort progress event: its ``stage`` (``scan``, ``cohort`` or ``done``) and its fields."""

    stage: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"stage": self.stage, **self.fields}, allow_nan=False, default=str)


CohortProgress = Callable[[CohortEvent], None]


class CohortTally:
    """Counts the scans as they finish and tells ``progress``: an event when a scan starts, and when
    it finishes one for the scan and one for the cohort, with the time left estimated from the
    scans finished so far in this run (their count over the time since the first one started)."""

    def __init__(self, total: int, progress: Optional[CohortProgress] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.progress = progress
        self.counts = dict.fromkeys(STATUSES, 0)
        self._clock = clock
        self._first_start: Optional[float] = None
        self._processed = 0

    @property
    def remaining(self) -> int:
        return self.total - sum(self.counts.values())

    def started(self, scan: str, action: str) -> None:
        if self._first_start is None:
            self._first_start = self._clock()
        self._emit(CohortEvent("scan", {"event": "start", "scan": scan, "action": action}))

    def finished(self, row: ScanRow, scan: str) -> None:
        self.counts[row.status] += 1
        if row.status in ("done", "failed"):
            self._processed += 1
        details = {"event": "finish", "scan": scan, "status": row.status, "seconds": round(row.seconds, 2), "worker": row.worker}
        self._emit(CohortEvent("scan", dict(details, message=row.message)))
        self.announce()

    def skipped(self, count: int) -> None:
        """Counts ``count`` scans that an earlier run wrote (``--resume``)."""
        self.counts["skipped"] += count
        self.announce()

    def eta_seconds(self) -> Optional[float]:
        if not self._processed or self._first_start is None:
            return None
        return round(self.remaining * (self._clock() - self._first_start) / self._processed, 1)

    def announce(self) -> None:
        self._emit(CohortEvent("cohort", dict(self.counts, total=self.total, eta_seconds=self.eta_seconds())))

    def _emit(self, event: CohortEvent) -> None:
        if self.progress is not None:
            self.progress(event)


class CohortJsonLines:
    """Prints each event as one JSON line and flushes, for another process to follow."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def __call__(self, event: CohortEvent) -> None:
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()


class CohortBar:
    """A one-line bar of the scans finished, redrawn on each count; a scan that fails gets a line of
    its own above the bar, naming it and saying why."""

    def __init__(self, stream: Optional[TextIO] = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._drawn = False

    def __call__(self, event: CohortEvent) -> None:
        fields = event.fields
        if event.stage == "scan" and fields.get("status") == "failed":
            self._line(f"failed: {fields['scan']}: {fields.get('message', '')}")
        elif event.stage == "cohort":
            finished = sum(fields[status] for status in STATUSES)
            fraction = finished / fields["total"] if fields["total"] else 1.0
            filled = int(round(fraction * self.width))
            eta = "" if fields.get("eta_seconds") is None else f", eta {fields['eta_seconds']:.0f}s"
            counts = f"{finished}/{fields['total']} scans: {fields['done']} done, {fields['failed']} failed, {fields['skipped']} skipped"
            self.stream.write(f"\rcohort [{'#' * filled}{'.' * (self.width - filled)}] {counts}{eta}".ljust(100))
            self.stream.flush()
            self._drawn = True
        elif event.stage == "done" and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _line(self, text: str) -> None:
        prefix = "\r" + " " * 100 + "\r" if self._drawn else ""
        self.stream.write(f"{prefix}{text}\n")
        self.stream.flush()
        self._drawn = False

"""The record of a cohort: one row per scan (its status: done, skipped, failed with the message, or
cancelled; seconds; device and worker; the noise sigma estimated before and after; the model used),
written as ``deepdenoise_report.csv`` and ``deepdenoise_report.json`` in the output folder, all or
none, and read back by ``--resume``.

>>> report = CohortReport(rows, Path("out"), mode="shared", workers="2 workers x 1 thread (CPU)", seconds=812.5)
>>> report.write()       # out/deepdenoise_report.csv and out/deepdenoise_report.json
>>> report.counts, report.exit_code
({'done': 15, 'skipped': 0, 'failed': 1, 'cancelled': 0}, 1)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from DeepDenoiseLib.core.atomic_write import FileWriter, write_files

REPORT_NAME = "deepdenoise_report"
#: What became of a scan: written now, skipped because an earlier run wrote it (``--resume``),
#: failed (the message says why), or cancelled before its outputs were written.
STATUSES = ("done", "skipped", "failed", "cancelled")
#: Exit codes: every scan done or skipped, some failed, the cohort was cancelled.
EXIT_ALL_DONE, EXIT_SOME_FAILED, EXIT_CANCELLED = 0, 1, 130


@dataclass
class ScanRow:
    """One scan's line of the report. ``seconds`` is the whole task (reading, training, predicting,
    writing); ``model`` is the model file applied (a shared or given model), or ``per-scan <method>``."""

    input: str
    output: str
    status: str
    message: str = ""
    seconds: float = 0.0
    training_seconds: Optional[float] = None
    prediction_seconds: Optional[float] = None
    training_steps: Optional[int] = None
    device: str = ""
    worker: str = ""
    noise_sigma_before: Optional[float] = None
    noise_sigma_after: Optional[float] = None
    model: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanRow:
        names = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


#: The report's columns, in order.
COLUMNS = tuple(item.name for item in dataclasses.fields(ScanRow))


@dataclass
class CohortReport:
    """Every scan's row, and how the cohort ran: ``mode`` (``per-scan``, ``shared`` or ``model``),
    the ``workers`` in words, the wall ``seconds``, ``warnings`` (files passed over, ...), and for a
    shared model trained in this run, ``shared_model``: its ``path`` and the ``sample`` of scans it learnt from."""

    rows: list[ScanRow]
    output_dir: Path
    mode: str
    workers: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    shared_model: Optional[dict[str, Any]] = None

    @property
    def counts(self) -> dict[str, int]:
        return {status: sum(row.status == status for row in self.rows) for status in STATUSES}

    @property
    def exit_code(self) -> int:
        """0 when every scan is done or skipped, 130 when the cohort was cancelled, else 1."""
        counts = self.counts
        if counts["cancelled"]:
            return EXIT_CANCELLED
        return EXIT_SOME_FAILED if counts["failed"] else EXIT_ALL_DONE

    @property
    def csv_path(self) -> Path:
        return Path(self.output_dir) / f"{REPORT_NAME}.csv"

    @property
    def json_path(self) -> Path:
        return Path(self.output_dir) / f"{REPORT_NAME}.json"

    def to_dict(self) -> dict[str, Any]:
        from DeepDenoiseLib import __version__

        return {
            "library_version": __version__,
            "mode": self.mode,
            "workers": self.workers,
            "seconds": round(self.seconds, 2),
            "counts": self.counts,
            "warnings": list(self.warnings),
            **({"shared_model": self.shared_model} if self.shared_model else {}),
            "scans": [{key: _finite(value) for key, value in dataclasses.asdict(row).items()} for row in self.rows],
        }

    def to_csv(self) -> str:
        stream = io.StringIO()
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({key: "" if value is None else value for key, value in dataclasses.asdict(row).items()})
        return stream.getvalue()

    def write(self) -> tuple[Path, Path]:
        """Writes the CSV and the JSON report, both or neither (atomic_write.py); their paths."""
        text_csv, text_json = self.to_csv(), json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        written = write_files([(self.csv_path, text_writer(text_csv)), (self.json_path, text_writer(text_json))])
        return written[0], written[1]


def read_report_rows(output_dir: Path) -> dict[str, ScanRow]:
    """The rows of the report an earlier run left in ``output_dir``, by input path; none when there
    is no report or it cannot be read (then ``--resume`` goes by the outputs alone)."""
    path = Path(output_dir) / f"{REPORT_NAME}.json"
    try:
        scans = json.loads(path.read_text(encoding="utf-8"))["scans"]
        rows = [ScanRow.from_dict(data) for data in scans]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {row.input: row for row in rows}


def rows_in_order(rows: Sequence[ScanRow], inputs: Sequence[str]) -> list[ScanRow]:
    """``rows`` in the order of ``inputs`` (each input's row; rows of other inputs after them)."""
    rank = {source: index for index, source in enumerate(inputs)}
    return sorted(rows, key=lambda row: rank.get(row.input, len(rank)))


def _finite(value: Any) -> Any:
    """``value``, but None for a float that is not finite (JSON has no NaN)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def text_writer(text: str) -> FileWriter:
    """A writer of ``text`` (UTF-8) for atomic_write.write_files."""

    def write(target: Path) -> None:
        target.write_text(text, encoding="utf-8")

    return write

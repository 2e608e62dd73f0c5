"""The cohort's record (DeepDenoiseLib.cohort.report) and progress (.progress): both report files
written together with every scan's row, the exit code they imply, and the events a bar or another
process follows, with the time left."""

from __future__ import annotations

import csv
import io
import json
import math

from DeepDenoiseLib.cohort.progress import CohortBar, CohortEvent, CohortJsonLines, CohortTally
from DeepDenoiseLib.cohort.report import COLUMNS, CohortReport, ScanRow, read_report_rows


def rows() -> list[ScanRow]:
    return [
        ScanRow(
            "/in/a.nii", "/out/a.nii", "done", seconds=3.5, device="cpu", worker="0", noise_sigma_before=0.1, noise_sigma_after=math.nan
        ),
        ScanRow("/in/b.nii", "/out/b.nii", "failed", "could not read 'b.nii'", seconds=0.2, worker="1"),
        ScanRow("/in/c.nii", "/out/c.nii", "skipped"),
    ]


def test_the_report_is_written_as_csv_and_json_with_a_row_per_scan(tmp_path) -> None:
    report = CohortReport(
        rows(), tmp_path, "per-scan", "2 workers on the CPU, 1 torch thread each", 12.345, ["'x.nii': not a BIDS file name"]
    )
    csv_path, json_path = report.write()
    assert (csv_path, json_path) == (tmp_path / "deepdenoise_report.csv", tmp_path / "deepdenoise_report.json")
    table = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert tuple(table[0]) == COLUMNS and [row["status"] for row in table] == ["done", "failed", "skipped"]
    assert table[1]["message"] == "could not read 'b.nii'" and table[0]["noise_sigma_before"] == "0.1"
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["counts"] == {"done": 1, "skipped": 1, "failed": 1, "cancelled": 0} and data["mode"] == "per-scan"
    assert data["scans"][0]["noise_sigma_after"] is None and data["warnings"] and data["seconds"] == 12.35
    assert read_report_rows(tmp_path)["/in/b.nii"].message == "could not read 'b.nii'"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_the_exit_code_says_whether_every_scan_succeeded() -> None:
    assert CohortReport(rows(), None, "shared").exit_code == 1  # type: ignore[arg-type]
    assert CohortReport([rows()[0], rows()[2]], None, "shared").exit_code == 0  # type: ignore[arg-type]
    assert CohortReport([ScanRow("a", "b", "cancelled")], None, "shared").exit_code == 130  # type: ignore[arg-type]


def test_the_tally_sends_scan_and_cohort_events_with_the_time_left() -> None:
    events: list[CohortEvent] = []
    now = [100.0]
    tally = CohortTally(4, events.append, clock=lambda: now[0])
    tally.skipped(1)
    tally.started("a.nii", "denoise")
    now[0] = 110.0
    tally.finished(rows()[0], "a.nii")
    assert [event.stage for event in events] == ["cohort", "scan", "scan", "cohort"]
    assert events[1].fields == {"event": "start", "scan": "a.nii", "action": "denoise"}
    assert events[2].fields["event"] == "finish" and events[2].fields["status"] == "done" and events[2].fields["worker"] == "0"
    assert events[3].fields == {"done": 1, "skipped": 1, "failed": 0, "cancelled": 0, "total": 4, "eta_seconds": 20.0}


def test_json_lines_and_the_bar_show_the_events() -> None:
    stream = io.StringIO()
    CohortJsonLines(stream)(CohortEvent("cohort", {"done": 1, "total": 2}))
    assert json.loads(stream.getvalue()) == {"stage": "cohort", "done": 1, "total": 2}
    bar_stream = io.StringIO()
    bar = CohortBar(bar_stream)
    bar(CohortEvent("cohort", {"done": 1, "skipped": 0, "failed": 0, "cancelled": 0, "total": 2, "eta_seconds": 30.0}))
    bar(CohortEvent("scan", {"event": "finish", "scan": "b.nii", "status": "failed", "message": "unreadable"}))
    bar(CohortEvent("done", {"summary": {}}))
    text = bar_stream.getvalue()
    assert "1/2 scans: 1 done, 0 failed, 0 skipped, eta 30s" in text and "failed: b.nii: unreadable\n" in text

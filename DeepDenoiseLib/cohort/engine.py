"""The loop that runs a cohort's scans on a Dask cluster: each scan one task, as many at once as the
cluster has worker threads (a scan waits on the client, not in a worker's queue, so a worker that
dies takes only its own scan with it, and a cancelled cohort has nothing queued to take back).

A task's own failures come back as ``failed`` rows (task.py); a worker that dies running one
(``KilledWorker``: out of memory, killed) and any other error of the cluster make a ``failed`` row
here. Ctrl-C, SIGTERM (``KeyboardInterrupt``) or the caller's ``CancelToken`` cancel the cohort:
the cohort's Dask ``Event`` is set, so every running scan stops at its next check without writing
(a scan already renaming its outputs into place completes); the loop waits for them (a second
interrupt stops waiting), and every scan not started gets a ``cancelled`` row.

>>> outcome = run_jobs(client, jobs, tally, cancel=token, event_name="deepdenoise-cancel-1a2b")
>>> outcome.rows, outcome.interruption
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from DeepDenoiseLib.cohort.cluster import worker_threads
from DeepDenoiseLib.cohort.progress import CohortTally
from DeepDenoiseLib.cohort.report import ScanRow
from DeepDenoiseLib.cohort.task import ScanJob, describe_error, run_scan
from DeepDenoiseLib.core.progress import Cancelled, CancelToken

#: How long a cancelled cohort waits for its running scans to stop before it gives up on them.
STOP_WAIT_SECONDS = 120.0
#: How often the loop looks at its running scans.
POLL_SECONDS = 0.1
#: How often, at most, the loop asks the scheduler how many worker threads there are.
CAPACITY_CHECK_SECONDS = 2.0

TaskFunction = Callable[[ScanJob], ScanRow]


@dataclass
class EngineOutcome:
    """Every job's row (in the order of the jobs), and the interrupt or cancellation that stopped the
    cohort (None when it ran to the end)."""

    rows: list[ScanRow]
    interruption: Optional[BaseException] = None


@dataclass
class _Running:
    futures: dict[Any, int] = field(default_factory=dict)
    rows: dict[int, ScanRow] = field(default_factory=dict)


def new_cancel_event_name() -> str:
    """A name for a cohort's cancel Event, unique on a shared cluster."""
    return f"deepdenoise-cancel-{uuid.uuid4().hex}"


def run_jobs(
    client: Any,
    jobs: Sequence[ScanJob],
    tally: CohortTally,
    cancel: Optional[CancelToken] = None,
    event_name: Optional[str] = None,
    task: TaskFunction = run_scan,
    labels: Optional[Sequence[str]] = None,
) -> EngineOutcome:
    """Runs every job on the cluster of ``client`` and returns their rows; ``labels`` name the scans
    in progress events (default: their sources). ``task`` runs one job on a worker."""
    labels = list(labels) if labels is not None else [job.source for job in jobs]
    pending = deque(range(len(jobs)))
    running = _Running()
    run_token = uuid.uuid4().hex[:8]
    capacity, capacity_checked = 1, float("-inf")
    try:
        while pending or running.futures:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("the cohort was cancelled")
            if pending and time.monotonic() - capacity_checked >= CAPACITY_CHECK_SECONDS:
                capacity, capacity_checked = max(1, worker_threads(client)), time.monotonic()
            while pending and len(running.futures) < capacity:
                index = pending.popleft()
                job = jobs[index]
                key = f"deepdenoise-{job.action}-{index}-{run_token}"
                running.futures[client.submit(task, job, key=key, pure=False)] = index
                tally.started(labels[index], job.action)
            if not _collect(running, jobs, tally, labels):
                time.sleep(POLL_SECONDS)
    except (KeyboardInterrupt, Cancelled) as interruption:
        _stop(client, running, jobs, tally, labels, event_name)
        for index in pending:
            running.rows[index] = ScanRow(jobs[index].source, str(jobs[index].outputs.output), "cancelled", "not started")
            tally.finished(running.rows[index], labels[index])
        return EngineOutcome([running.rows[index] for index in range(len(jobs))], interruption)
    return EngineOutcome([running.rows[index] for index in range(len(jobs))])


def _collect(running: _Running, jobs: Sequence[ScanJob], tally: CohortTally, labels: Sequence[str]) -> bool:
    """Takes the rows of the finished futures; whether there were any."""
    finished = [future for future in running.futures if future.done()]
    for future in finished:
        index = running.futures.pop(future)
        running.rows[index] = row_of(future, jobs[index])
        tally.finished(running.rows[index], labels[index])
    return bool(finished)


def row_of(future: Any, job: ScanJob) -> ScanRow:
    """The row a finished future stands for: the task's own, or a ``failed`` (or ``cancelled``) row
    saying what happened to the task on the cluster."""
    from distributed import KilledWorker

    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        return ScanRow(job.source, str(job.outputs.output), "cancelled", "the cluster cancelled the task")
    error = future.exception()
    if isinstance(error, KilledWorker):
        message = (
            "the worker running it died (out of memory, or killed); it was not written. Give each worker more memory "
            f"(fewer --workers) or run it alone ({error})"
        )
    else:
        message = describe_error(error)
    return ScanRow(job.source, str(job.outputs.output), "failed", message)


def _stop(
    client: Any, running: _Running, jobs: Sequence[ScanJob], tally: CohortTally, labels: Sequence[str], event_name: Optional[str]
) -> None:
    """Asks the running scans to stop and waits for their rows (until a second interrupt or
    ``STOP_WAIT_SECONDS``); scans still running then are cancelled on the cluster."""
    if not running.futures:
        return
    if event_name is not None:
        from distributed import Event

        Event(event_name, client=client).set()
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    try:
        while running.futures and time.monotonic() < deadline:
            if not _collect(running, jobs, tally, labels):
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        pass
    if running.futures:
        client.cancel(list(running.futures))
        for index in list(running.futures.values()):
            running.rows[index] = ScanRow(jobs[index].source, str(jobs[index].outputs.output), "cancelled", "stopped while running")
            tally.finished(running.rows[index], labels[index])
        running.futures.clear()

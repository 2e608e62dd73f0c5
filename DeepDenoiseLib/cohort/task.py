"""One scan as a task on a worker: denoise it with a network of its own, train the shared model on
it (and denoise it), or apply a saved model to it, through the library's file runs (``denoise_file``,
``apply_file``: output checks, all-or-none writes), and return its report row. Every exception
becomes a ``failed`` row with its message, so one bad scan never stops the others; a cancelled
cohort makes a ``cancelled`` row and writes nothing.

The cohort is cancelled through a Dask ``Event`` named in the job: the task checks it at most once
a second from the run's progress reports, and at every one just before a file is written, and then
stops the run as a ``CancelToken`` would (``Cancelled``).

>>> row = run_scan(ScanJob("in.nii.gz", ScanOutputs(Path("out/in.nii.gz")), "denoise", config=config.to_dict()))
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from DeepDenoiseLib.cohort.outputs import ScanOutputs
from DeepDenoiseLib.cohort.report import ScanRow
from DeepDenoiseLib.core.progress import Cancelled, CancelToken, ProgressEvent
from DeepDenoiseLib.core.validation import InputError, ResultError

#: What a task does with its scan: train a network on it alone, train the cohort's shared model on
#: it (writing the model with the scan's outputs), or apply a saved model to it.
ACTIONS = ("denoise", "train", "apply")
#: How often, at most, a running task asks whether the cohort was cancelled (but always before writing).
CANCEL_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class ScanJob:
    """What a worker needs for one scan. ``config`` (a ``DenoiseConfig`` as a mapping) for ``denoise``
    and ``train``; ``model_path``: where ``train`` saves the model, or what ``apply`` applies, with
    ``tta`` and ``device`` overriding its prediction settings; ``companions``: for ``train``, the
    other scans the shared model learns from (one that cannot be read is left out and said in the
    row's message); ``threads``: torch threads; ``cancel_event``: the name of the cohort's Dask ``Event``."""

    source: str
    outputs: ScanOutputs
    action: str
    config: Optional[dict[str, Any]] = None
    model_path: Optional[str] = None
    tta: Optional[bool] = None
    device: Optional[str] = None
    threads: Optional[int] = None
    force: bool = False
    cancel_event: Optional[str] = None
    companions: tuple[str, ...] = ()


def run_scan(job: ScanJob) -> ScanRow:
    """Runs ``job`` and returns its report row (never raises for the scan's own problems)."""
    start = time.perf_counter()
    row = ScanRow(input=job.source, output=str(job.outputs.output), status="failed", worker=worker_name())
    watcher = CohortCancelWatcher(job.cancel_event)
    try:
        watcher.check()
        summary = _run(job, watcher)
    except (Cancelled, KeyboardInterrupt):
        return dataclasses.replace(
            row, status="cancelled", message="cancelled before its outputs were written", seconds=time.perf_counter() - start
        )
    except Exception as error:  # noqa: BLE001 - every failure becomes the scan's row; the others go on
        return dataclasses.replace(row, message=describe_error(error), seconds=time.perf_counter() - start)
    return dataclasses.replace(row, status="done", seconds=time.perf_counter() - start, **summary_fields(summary, job))


def summary_fields(summary: dict[str, Any], job: ScanJob) -> dict[str, Any]:
    """The report's figures from a run's summary."""
    model = summary.get("model") or summary.get("saved_model") or f"per-scan {summary.get('method', '')}".strip()
    return {
        "training_seconds": _number(summary.get("training_seconds")),
        "prediction_seconds": _number(summary.get("prediction_seconds")),
        "training_steps": summary.get("training_steps"),
        "device": str(summary.get("device", "")),
        "noise_sigma_before": _number(summary.get("noise_sigma_before")),
        "noise_sigma_after": _number(summary.get("noise_sigma_after")),
        "model": str(model),
        "message": "; ".join(summary.get("warnings", [])),
    }


def describe_error(error: BaseException) -> str:
    """The message of a scan's failure: a refusal's own words, else the exception's type and words."""
    if isinstance(error, (InputError, ResultError, FileNotFoundError)):
        return str(error)
    if isinstance(error, MemoryError):
        return f"out of memory: {error}" if str(error) else "out of memory"
    return f"{type(error).__name__}: {error}"


def worker_name() -> str:
    """The name of the Dask worker running this task ("local" outside one)."""
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def library_location() -> str:
    """Where this process imports DeepDenoiseLib from, and its version (run on each worker)."""
    import DeepDenoiseLib

    return f"{DeepDenoiseLib.__file__} ({DeepDenoiseLib.__version__})"


class CohortCancelWatcher:
    """A run's progress callback that stops the run when the cohort's Dask ``Event`` is set: it asks
    at most every ``CANCEL_CHECK_SECONDS``, and always before a file is written; ``token`` is the
    run's ``CancelToken``, cancelled then too. ``is_set`` replaces the Event (tests)."""

    def __init__(self, event_name: Optional[str], is_set: Optional[Callable[[], bool]] = None) -> None:
        self.token = CancelToken()
        self._event_name = event_name
        self._is_set = is_set
        self._checked = time.monotonic()

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage == "writing" or time.monotonic() - self._checked >= CANCEL_CHECK_SECONDS:
            self.check()

    def check(self) -> None:
        self._checked = time.monotonic()
        if self.token.cancelled or self._cohort_cancelled():
            self.token.cancel()
            raise Cancelled("the cohort was cancelled")

    def _cohort_cancelled(self) -> bool:
        if self._is_set is not None:
            return self._is_set()
        if self._event_name is None:
            return False
        try:
            from distributed import Event

            return bool(Event(self._event_name).is_set())
        except Exception:  # noqa: BLE001 - no scheduler to ask (it is closing): the cluster ends the task anyway
            return False


def _run(job: ScanJob, watcher: CohortCancelWatcher) -> dict[str, Any]:
    from DeepDenoiseLib.core.device import configure_threads
    from DeepDenoiseLib.denoise.config import DenoiseConfig
    from DeepDenoiseLib.denoise.files import apply_file, denoise_file

    configure_threads(job.threads)
    outputs = job.outputs
    if job.action == "apply":
        if job.model_path is None:
            raise ValueError("an apply job needs a model")
        return apply_file(
            job.model_path, job.source, outputs.output, outputs.residual, outputs.uncertainty, tta=job.tta, device=job.device,
            progress=watcher, cancel=watcher.token, force=job.force,
        )  # fmt: skip
    if job.action not in ("denoise", "train") or job.config is None:
        raise ValueError(f"a {job.action} job needs a configuration; actions: {', '.join(ACTIONS)}")
    save_model = job.model_path if job.action == "train" else None
    companions, left_out = _read_companions(job.companions if job.action == "train" else (), watcher)
    summary = denoise_file(
        job.source, outputs.output, DenoiseConfig.from_dict(job.config), outputs.residual, outputs.uncertainty,
        progress=watcher, cancel=watcher.token, save_model_path=save_model, force=job.force, companions=companions,
    )  # fmt: skip
    summary["warnings"] = list(summary.get("warnings", [])) + left_out
    return summary


def _read_companions(sources: tuple[str, ...], watcher: CohortCancelWatcher) -> tuple[list[Any], list[str]]:
    """The companion scans read, and a message for each one that could not be (left out)."""
    from DeepDenoiseLib.core.run_files import load_volume

    volumes, left_out = [], []
    for source in sources:
        watcher.check()
        try:
            volumes.append(load_volume(source, None))
        except Exception as error:  # noqa: BLE001 - an unreadable companion only narrows the training
            left_out.append(f"left out of the shared model's training: {describe_error(error)}")
    return volumes, left_out


def _number(value: Any) -> Optional[float]:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None

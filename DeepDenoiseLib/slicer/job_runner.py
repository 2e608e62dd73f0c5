"""Following one background job at a time until it ends (:class:`JobRunner`): blocking, or from a
timer that the module provides (a ``QTimer`` in Slicer, a stand-in in tests), with the result or the
error handed to a callback.

>>> runner = JobRunner(timer)            # timer: start() and stop(); its timeout calls runner.poll()
>>> runner.follow(job, wait=False, completed=lambda result, error: print(result, error))
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Protocol

from DeepDenoiseLib.core.progress import Cancelled, ProgressEvent
from DeepDenoiseLib.slicer.worker_job import JobResult, WorkerJob

ProgressCallback = Callable[[ProgressEvent], None]
CompletedCallback = Callable[[Optional[JobResult], Optional[BaseException]], None]
ResultCallback = Callable[[WorkerJob, JobResult], None]

logger = logging.getLogger("DeepDenoise")


class Timer(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class JobRunner:
    """Follows one started job at a time until it ends: :meth:`follow` either waits for it (and
    returns its output node) or leaves it to ``timer``, whose timeout calls :meth:`poll`; the result
    or the error then goes to the ``completed`` callback."""

    def __init__(self, timer: Timer) -> None:
        self.timer = timer
        self.job: Optional[WorkerJob] = None
        self.last_result: Optional[JobResult] = None
        self._progress: Optional[ProgressCallback] = None
        self._completed: Optional[CompletedCallback] = None
        self._on_result: Optional[ResultCallback] = None

    @property
    def is_running(self) -> bool:
        return self.job is not None

    def follow(
        self,
        job: WorkerJob,
        wait: bool,
        progress: Optional[ProgressCallback] = None,
        completed: Optional[CompletedCallback] = None,
        on_result: Optional[ResultCallback] = None,
    ) -> Any:
        """Follows the started ``job``: with ``wait``, until it ends, returning its output node (and
        raising its error, the job cancelled); else from the timer, returning None. ``on_result(job,
        result)`` is called once the result is in the scene (the module shows it in the slice views)."""
        if wait:
            try:
                job.wait(on_event=progress)
            except BaseException:
                job.cancel()
                raise
            result = job.finish()
            self._finished(job, result, on_result)
            return result.output_node
        self.job, self._progress, self._completed, self._on_result = job, progress, completed, on_result
        self.timer.start()
        return None

    def cancel(self) -> None:
        """Stops the job followed from the timer: the worker and its children are killed, the scene
        is untouched, and ``completed`` gets :class:`Cancelled`."""
        job = self.job
        if job is None:
            return
        self.timer.stop()
        try:
            job.cancel()
        finally:
            self._complete(None, Cancelled("the run was cancelled"))

    def poll(self) -> None:
        """The timer's work: hands on the job's new progress events, and once it ended, its result."""
        job = self.job
        if job is None:
            return
        for event in job.poll():
            if self._progress:
                self._progress(event)
        if not job.finished:
            return
        self.timer.stop()
        try:
            result = job.finish()
        except Exception as error:  # WorkerError, Cancelled, InputError, OSError: all go to the user
            logger.error(f"DeepDenoise: {error}")
            self._complete(None, error)
            return
        self._finished(job, result, self._on_result)
        self._complete(result, None)

    def _finished(self, job: WorkerJob, result: JobResult, on_result: Optional[ResultCallback]) -> None:
        self.last_result = result
        if on_result is not None:
            on_result(job, result)

    def _complete(self, result: Optional[JobResult], error: Optional[BaseException]) -> None:
        callback = self._completed
        self.job, self._progress, self._completed, self._on_result = None, None, None, None
        if callback:
            callback(result, error)

"""What every job on Slicer nodes shares (:class:`WorkerJob`): a worker process that the job starts on
files it wrote from the scene, followed from a timer or by waiting, and the results put into the
scene only if the worker succeeded and the input is still there; the temporary folder is removed
whatever happens. The denoising jobs (denoise_job.py, sequences.py) and the super-resolution job
(superres_job.py) say what to write, which results to read and how to store them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from DeepDenoiseLib.core.progress import Cancelled, ProgressEvent
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.slicer.background import CANCELLED, FAILED, BackgroundRun, remove_work_folder
from DeepDenoiseLib.slicer.nodes import array_on_grid, create_volume_node, fill_node, place_next_to, read_file_node


class WorkerError(RuntimeError):
    """The worker process failed; the message is its own error text, :attr:`details` its other output."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass
class JobResult:
    """What a finished job put in the scene, and the worker's closing figures."""

    output_node: Any
    residual_node: Optional[Any] = None
    uncertainty_node: Optional[Any] = None
    summary: dict[str, Any] = field(default_factory=dict)
    #: For a sequence input: the browser of the new sequences (its proxy nodes show the frames).
    browser_node: Optional[Any] = None


class WorkerJob:
    """What every job on nodes shares: a worker process started by the subclass's ``start`` (which sets
    ``folder`` and ``run``), followed by :meth:`poll` or :meth:`wait`, then :meth:`finish`, which puts
    the results into the scene only if the worker succeeded and the input is still there, or
    :meth:`cancel`. The temporary folder is removed whatever happens. Subclasses say which results to
    read and how to store them (``_read_results``, ``_store_results``)."""

    #: The file type the input and the results travel in between the scene and the worker.
    FILE_EXTENSION = ".nrrd"

    input_node: Any
    folder: Optional[Path] = None
    run: Optional[BackgroundRun] = None
    _shape: tuple[int, ...] = ()

    @property
    def finished(self) -> bool:
        return self.run is not None and self.run.finished

    def poll(self) -> list[ProgressEvent]:
        """New progress events, without waiting."""
        return self._started().poll()

    def wait(self, on_event: Optional[Callable[[ProgressEvent], None]] = None) -> str:
        """Block until the worker ends, handing each progress event to ``on_event``; returns its state."""
        return self._started().wait(on_event=on_event)

    def cancel(self) -> None:
        """Kill the worker and its children and remove the temporary folder; the scene is untouched."""
        if self.run is not None:
            self.run.cancel()
        self._remove_folder()

    def finish(self) -> JobResult:
        """After the worker ended: put its results into the scene, or raise with the scene unchanged."""
        run = self._started()
        if not run.finished:
            raise RuntimeError("the worker is still running; wait for it or cancel it first")
        try:
            if run.state == CANCELLED:
                raise Cancelled("the run was cancelled")
            if run.state == FAILED:
                raise WorkerError(run.error_message, run.details)
            arrays = self._read_results(run)
            if self.input_node.GetScene() is None:
                raise InputError("the input volume was removed from the scene while the worker ran")
            return self._store_results(arrays, dict(run.summary))
        finally:
            self._remove_folder()

    def _read_results(self, run: BackgroundRun) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _store_results(self, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> JobResult:
        raise NotImplementedError

    def _read_on_grid(self, run: BackgroundRun, names: list[str], ijk_to_ras: np.ndarray, expected: str) -> dict[str, np.ndarray]:
        """The worker's result files ``names``, each mapped onto the grid of ``ijk_to_ras`` voxel by voxel
        (nodes.array_on_grid); WorkerError if one is unreadable, off the grid, or not the ``_shape``
        the job expects (``expected`` says what that is)."""
        arrays = {}
        try:
            for name in names:
                arrays[name] = array_on_grid(read_file_node(self._result_path(name)), ijk_to_ras)
        except (OSError, ValueError) as error:
            raise WorkerError(f"the worker finished but its result is unusable: {error}", run.details) from error
        for name, array in arrays.items():
            if array.shape != self._shape:
                raise WorkerError(f"the worker's {name} has {array.shape} voxels where {expected}", run.details)
        return arrays

    def _result_path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{name}{self.FILE_EXTENSION}"

    def _store(self, node: Optional[Any], array: np.ndarray, suffix: str, geometry: Any, display_like: Optional[Any] = None) -> Any:
        """``array`` into ``node`` on the grid of the node ``geometry``, or into a new node named after
        the input and ``suffix``, under the input's transform, next to it in the Data module."""
        scene = self.input_node.GetScene()
        if node is None or node.GetScene() is None:
            node = create_volume_node(scene, f"{self.input_node.GetName()} {suffix}")
            node.SetAndObserveTransformNodeID(self.input_node.GetTransformNodeID())
        fill_node(node, array, geometry, display_like=display_like)
        place_next_to(node, self.input_node)
        return node

    def _started(self) -> BackgroundRun:
        if self.run is None:
            raise RuntimeError("the job has not been started")
        return self.run

    def _remove_folder(self) -> None:
        if self.folder is not None:
            remove_work_folder(self.folder)
            self.folder = None

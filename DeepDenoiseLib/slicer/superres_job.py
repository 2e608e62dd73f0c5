"""Super-resolution on Slicer volume nodes: the finer grid as an IJK-to-RAS matrix, and a job that runs
``deepdenoise superres`` in a background process and puts its result on that grid.

Like the denoising jobs it uses only Slicer's MRML API, inside functions, so it imports anywhere. The
output grid keeps the input's orientation and field of view: the refined axis's column of IJK-to-RAS
is divided by the factor and the origin moves half a fine voxel less than half a coarse one towards
the edge (superres/grid.py). The worker's result is read back through its own
IJK-to-RAS and mapped onto that grid voxel by voxel, so Slicer's K flip of left-handed files is
harmless.

>>> settings = SuperResSettings(mode="Self-supervised", factor=4, axis="auto", budget_minutes=5)
>>> job = NodeSuperResJob(input_node, settings.to_config(), compute_uncertainty=True)
>>> job.start(); job.wait(on_event=print)
>>> result = job.finish()           # the scene changes here, and only if the worker succeeded
>>> result.output_node.GetName()
'thick super-resolved'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.slicer.background import BackgroundRun, make_work_folder
from DeepDenoiseLib.slicer.nodes import check_scalar_volume, grid_node, ijk_to_ras, write_node
from DeepDenoiseLib.slicer.worker_commands import PathLike, superres_command, worker_environment
from DeepDenoiseLib.slicer.worker_job import JobResult, WorkerJob
from DeepDenoiseLib.superres.config import SuperResConfig, check_uncertainty_request
from DeepDenoiseLib.superres.grid import AXIS_IJK, coarsest_axis


def fine_grid_ijk_to_ras(ijk_to_ras_matrix: np.ndarray, factor: int, axis: str) -> np.ndarray:
    """The IJK-to-RAS matrix of the grid ``factor`` times finer along the voxel ``axis`` (x, y or z),
    with the same orientation and field of view."""
    if axis not in AXIS_IJK:
        raise ValueError(f"the axis must be x, y or z; got {axis!r}")
    index = AXIS_IJK[axis]
    matrix = np.array(ijk_to_ras_matrix, dtype=np.float64)
    column = matrix[:3, index].copy()
    matrix[:3, index] = column / factor
    matrix[:3, 3] += column * (1.0 / factor - 1.0) / 2.0
    return matrix


def resolve_axis(node: Any, axis: str) -> str:
    """``axis``, or for ``auto`` the voxel axis with the largest spacing (z when they tie), as the
    library resolves it."""
    return coarsest_axis(tuple(node.GetSpacing())) if axis == "auto" else axis


class NodeSuperResJob(WorkerJob):
    """Super-resolves one volume node in a worker process; the scene changes only if it succeeded.

    :meth:`start` writes the input (and, supervised, the ``training_nodes``) with the configuration to
    a temporary folder and starts the worker; :meth:`poll` or :meth:`wait` follow it; :meth:`finish`
    puts the result on the fine grid into ``output_node`` (a new node next to the input unless given)
    and the optional uncertainty node, or raises :class:`WorkerError` /
    :class:`~DeepDenoiseLib.core.progress.Cancelled` with the scene untouched. The temporary folder is
    always removed.
    """

    def __init__(
        self,
        input_node: Any,
        config: SuperResConfig,
        training_nodes: Sequence[Any] = (),
        output_node: Optional[Any] = None,
        uncertainty_node: Optional[Any] = None,
        compute_uncertainty: bool = False,
        python: Optional[str] = None,
        worker: Optional[Sequence[str]] = None,
        library_parent: Optional[PathLike] = None,
        temp_parent: Optional[PathLike] = None,
    ) -> None:
        self.input_node = input_node
        self.config = config
        self.training_nodes = list(training_nodes)
        self.output_node = output_node
        self.uncertainty_node = uncertainty_node
        self.compute_uncertainty = compute_uncertainty or uncertainty_node is not None
        self.python = python
        self.worker = worker
        self.library_parent = library_parent if library_parent is not None else Path(__file__).resolve().parents[2]
        self.temp_parent = temp_parent
        self.folder: Optional[Path] = None
        self.run: Optional[BackgroundRun] = None
        self.axis = ""
        self._fine_grid: Optional[np.ndarray] = None
        self._shape: tuple[int, ...] = ()

    @property
    def fine_grid(self) -> np.ndarray:
        """The output grid's IJK-to-RAS matrix (known once started)."""
        if self._fine_grid is None:
            raise RuntimeError("the job has not been started")
        return self._fine_grid

    def start(self) -> None:
        """Check the nodes and settings, write the inputs and configuration, and start the worker."""
        check_scalar_volume(self.input_node)
        if self.input_node.GetScene() is None:
            raise InputError(f"'{self.input_node.GetName()}' is not in a scene")
        for role, node in (("output volume", self.output_node), ("uncertainty volume", self.uncertainty_node)):
            if node is None:
                continue
            if node is self.input_node:
                raise InputError(f"the {role} must differ from the input volume; choose or create another one")
            if node.IsA("vtkMRMLLabelMapVolumeNode") or not node.IsA("vtkMRMLScalarVolumeNode"):
                raise InputError(f"the {role} '{node.GetName()}' must be a scalar volume")
        if self.output_node is not None and self.output_node is self.uncertainty_node:
            raise InputError("the output volume and the uncertainty volume must be different nodes")
        check_uncertainty_request(self.compute_uncertainty, self.config.method, "choose the DDPM method")
        if self.config.mode == "supervised" and not self.training_nodes:
            raise InputError("supervised super-resolution needs at least one high-resolution training volume")
        if self.config.mode == "self-supervised" and self.training_nodes:
            raise InputError("the self-supervised mode learns from the input alone; leave out the training volumes")
        for node in self.training_nodes:
            check_scalar_volume(node, "training volume")
        self._check_content()
        self.axis = resolve_axis(self.input_node, self.config.axis)
        self._fine_grid = fine_grid_ijk_to_ras(ijk_to_ras(self.input_node), self.config.factor, self.axis)
        dimensions = list(self.input_node.GetImageData().GetDimensions())
        dimensions[AXIS_IJK[self.axis]] *= self.config.factor
        self._shape = tuple(dimensions[::-1])
        self.folder = make_work_folder(self.temp_parent)
        try:
            write_node(self.input_node, self.folder / "input.nrrd")
            training_paths = []
            for index, node in enumerate(self.training_nodes):
                path = self.folder / f"training{index}.nrrd"
                write_node(node, path)
                training_paths.append(path)
            self.config.save(self.folder / "config.json")
            command = superres_command(
                self.folder / "input.nrrd",
                self._result_path("output"),
                self.folder / "config.json",
                training_paths,
                self._result_path("uncertainty") if self.compute_uncertainty else None,
                python=self.python,
                worker=self.worker,
            )
            self.run = BackgroundRun(command, environment=worker_environment(self.library_parent), cwd=self.folder)
        except BaseException:
            self._remove_folder()
            raise

    def _check_content(self) -> None:
        """The worker's refusals of the voxels, before it starts: the input's and the result's size,
        NaN or infinite values, label maps (which super-resolution would blur)."""
        import slicer

        from DeepDenoiseLib.core.validation import SUPERRES_LABEL_MAP_ADVICE, check_superres_output_size, check_volume

        for node in [self.input_node, *self.training_nodes]:
            try:
                check_volume(slicer.util.arrayFromVolume(node), label_map_advice=SUPERRES_LABEL_MAP_ADVICE)
            except InputError as error:
                raise InputError(f"'{node.GetName()}': {error}") from error
        check_superres_output_size(slicer.util.arrayFromVolume(self.input_node).shape, self.config.factor)

    def _read_results(self, run: BackgroundRun) -> dict[str, np.ndarray]:
        """The worker's results on the fine grid, by name; WorkerError if any is unusable."""
        names = ["output"] + (["uncertainty"] if self.compute_uncertainty else [])
        return self._read_on_grid(run, names, self.fine_grid, f"{self._shape} were expected")

    def _store_results(self, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> JobResult:
        geometry = grid_node(self.fine_grid)
        result = JobResult(
            self._store(self.output_node, arrays["output"], "super-resolved", geometry, display_like=self.input_node),
            summary=summary,
        )
        if "uncertainty" in arrays:
            result.uncertainty_node = self._store(self.uncertainty_node, arrays["uncertainty"], "super-resolution uncertainty", geometry)
        return result

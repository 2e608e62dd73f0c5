"""Slicer sequences (4D: fMRI, dynamic scans) to 4D volumes and back, and a denoising job on a sequence.

A ``vtkMRMLSequenceNode`` holds one scalar volume node per index value (time points, usually); a
``vtkMRMLSequenceBrowserNode`` shows one frame at a time through its proxy node. A sequence becomes
one :class:`Volume` ``[t, k, j, i]`` whose geometry is the first frame's IJK-to-RAS (frames on other
grids are refused), the worker denoises it as a 4D NIfTI series with one model for all frames, and
the result becomes NEW sequences with the input's index name, unit, type and values and its
geometry, browsed by a new browser node.

Like nodes.py, this module imports Slicer only inside functions.

>>> job = SequenceDenoiseJob(getNode("fMRI"), config, compute_residual=True)
>>> job.start(); job.wait(on_event=print)
>>> result = job.finish()      # result.output_node: the denoised sequence; result.browser_node its browser
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.slicer.background import BackgroundRun
from DeepDenoiseLib.slicer.denoise_job import NodeDenoiseJob
from DeepDenoiseLib.slicer.nodes import check_volume_content, ijk_to_ras, lps_geometry, place_next_to
from DeepDenoiseLib.slicer.worker_job import JobResult, WorkerError

#: Frames whose IJK-to-RAS matrices differ by more than this (mm, or per unit for directions) are on
#: different grids.
GRID_TOLERANCE = 1e-5


def frames_of(sequence: Any) -> list[Any]:
    """The sequence's data nodes, in index order."""
    return [sequence.GetNthDataNode(index) for index in range(sequence.GetNumberOfDataNodes())]


def check_volume_sequence(sequence: Any) -> None:
    """Raise :class:`InputError` unless ``sequence`` is a sequence of scalar volumes with voxels,
    all on one grid (same dimensions and IJK-to-RAS), with a message saying what to do instead."""
    if sequence is None:
        raise InputError("no input sequence selected")
    name = sequence.GetName()
    if not sequence.IsA("vtkMRMLSequenceNode"):
        raise InputError(f"'{name}' is a {sequence.GetClassName()}, not a sequence")
    frames = frames_of(sequence)
    if not frames:
        raise InputError(f"the sequence '{name}' holds no frames")
    first_matrix = None
    first_dimensions = None
    for index, frame in enumerate(frames):
        where = f"frame {index} (index value {sequence.GetNthIndexValue(index)}) of '{name}'"
        if frame is None or not frame.IsA("vtkMRMLScalarVolumeNode") or frame.IsA("vtkMRMLLabelMapVolumeNode"):
            kind = "nothing" if frame is None else frame.GetClassName()
            raise InputError(f"{where} is {kind}, not a scalar volume; DeepDenoise denoises sequences of scalar volumes")
        image = frame.GetImageData()
        if image is None or image.GetNumberOfPoints() == 0:
            raise InputError(f"{where} has no voxels")
        if image.GetNumberOfScalarComponents() != 1:
            components = image.GetNumberOfScalarComponents()
            raise InputError(f"{where} has {components} components per voxel; DeepDenoise denoises scalar volumes")
        dimensions = tuple(image.GetDimensions())
        matrix = ijk_to_ras(frame)
        if first_matrix is None:
            first_matrix, first_dimensions = matrix, dimensions
            continue
        if dimensions != first_dimensions or not np.allclose(matrix, first_matrix, rtol=0.0, atol=GRID_TOLERANCE):
            raise InputError(
                f"{where} lies on another grid than frame 0 ({'x'.join(map(str, dimensions))} voxels, IJK-to-RAS "
                f"{_matrix_text(matrix)} against {'x'.join(map(str, first_dimensions or ()))}, {_matrix_text(first_matrix)}); "
                "one model denoises a sequence whose frames share one grid: resample the frames onto one grid first"
            )


def volume_from_sequence(sequence: Any) -> Volume:
    """A 4D :class:`Volume` ``[t, k, j, i]`` holding a copy of every frame, with the first frame's
    geometry in LPS. ``metadata`` keeps the sequence's name and index (``index_name``, ``index_unit``,
    ``index_type``, ``index_values`` as text), and for a numeric index with even steps
    ``time_spacing`` and ``time_origin``, which a 4D NIfTI stores."""
    import slicer

    check_volume_sequence(sequence)
    frames = frames_of(sequence)
    array = np.stack([np.array(slicer.util.arrayFromVolume(frame), copy=True) for frame in frames])
    values = [sequence.GetNthIndexValue(index) for index in range(len(frames))]
    metadata: dict[str, Any] = {
        "node_name": sequence.GetName(),
        "index_name": sequence.GetIndexName(),
        "index_unit": sequence.GetIndexUnit(),
        "index_type": sequence.GetIndexTypeAsString(),
        "index_values": values,
    }
    metadata.update(_time_axis(sequence, values))
    return Volume(array, *lps_geometry(frames[0]), metadata=metadata)


def add_sequence_from_array(scene: Any, name: str, array: np.ndarray, like: Any, grid: Optional[Any] = None) -> Any:
    """A new sequence node in ``scene`` holding the frames of ``array`` ``[t, k, j, i]``, with the
    index name, unit, type and values of the sequence ``like`` and, for every frame, the IJK-to-RAS
    of ``grid`` (a volume node; default: the first frame of ``like``)."""
    import slicer

    values = [like.GetNthIndexValue(index) for index in range(like.GetNumberOfDataNodes())]
    if array.ndim != 4 or array.shape[0] != len(values):
        raise ValueError(f"got an array of shape {array.shape} for a sequence of {len(values)} frames")
    grid = grid if grid is not None else like.GetNthDataNode(0)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name))
    sequence.SetIndexName(like.GetIndexName())
    sequence.SetIndexUnit(like.GetIndexUnit())
    sequence.SetIndexType(like.GetIndexType())
    for frame_array, value in zip(array, values):
        frame = slicer.vtkMRMLScalarVolumeNode()
        slicer.util.updateVolumeFromArray(frame, np.ascontiguousarray(frame_array))
        frame.CopyOrientation(grid)
        sequence.SetDataNodeAtValue(frame, value)  # the sequence keeps a deep copy
    return sequence


def add_browser(scene: Any, sequences: list[Any], name: str, display_like: Optional[Any] = None) -> Any:
    """A new browser node for ``sequences`` (the first is the master, the others follow it); its proxy
    nodes (made by the Sequences module) get the window/level of ``display_like``'s display node."""
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(name))
    browser.SetAndObserveMasterSequenceNodeID(sequences[0].GetID())
    for sequence in sequences[1:]:
        browser.AddSynchronizedSequenceNodeID(sequence.GetID())
    browser.SetSelectedItemNumber(0)
    for index, sequence in enumerate(sequences):
        proxy = browser.GetProxyNode(sequence)
        if proxy is None:
            continue
        if proxy.GetDisplayNode() is None:
            proxy.CreateDefaultDisplayNodes()
        source = display_like.GetDisplayNode() if display_like is not None and index == 0 else None
        if source is not None and proxy.GetDisplayNode() is not None:
            target = proxy.GetDisplayNode()
            target.SetAndObserveColorNodeID(source.GetColorNodeID())
            target.SetAutoWindowLevel(False)
            target.SetWindowLevel(source.GetWindow(), source.GetLevel())
    return browser


def browser_of(sequence: Any) -> Optional[Any]:
    """The browser node whose master sequence is ``sequence``, if any."""
    scene = sequence.GetScene()
    if scene is None:
        return None
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if browser.GetMasterSequenceNode() is sequence:
            return browser
    return None


def sequence_of_proxy(volume_node: Any) -> Optional[Any]:
    """The sequence whose current frame ``volume_node`` shows (it is a browser's proxy node), or None.

    The panel offers to denoise that whole sequence when the user picks the frame in view."""
    if volume_node is None or volume_node.GetScene() is None:
        return None
    scene = volume_node.GetScene()
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if browser.IsProxyNodeID(volume_node.GetID()):
            sequence = browser.GetSequenceNode(volume_node)
            if sequence is not None:
                return sequence
    return None


def make_job(input_node: Any, config: Optional[DenoiseConfig], **options: Any) -> NodeDenoiseJob:
    """The job for ``input_node``: a :class:`SequenceDenoiseJob` for a sequence, else a
    :class:`~DeepDenoiseLib.slicer.denoise_job.NodeDenoiseJob`; ``options`` are the jobs' keyword arguments."""
    if input_node is not None and input_node.IsA("vtkMRMLSequenceNode"):
        return SequenceDenoiseJob(input_node, config, **options)
    return NodeDenoiseJob(input_node, config, **options)


def shown_node(node: Any) -> Any:
    """The volume node that shows ``node`` in the views: for a sequence, the proxy node of the browser
    whose master it is (the current frame); any other node is itself."""
    if node is None or not node.IsA("vtkMRMLSequenceNode"):
        return node
    browser = browser_of(node)
    return browser.GetProxyNode(node) if browser is not None else None


class SequenceDenoiseJob(NodeDenoiseJob):
    """:class:`~DeepDenoiseLib.slicer.denoise_job.NodeDenoiseJob` for a sequence of scalar volumes (4D).

    The worker gets the series as a 4D NIfTI file and trains ONE model on all its frames (or applies
    the saved model at ``model_path`` to each frame). With method ``noise2noise`` the pairs are
    neighbouring frames (no second acquisition); with ``supervised`` the network trained on the
    training pair denoises every frame. :meth:`finish` adds new sequences (denoised,
    and the residual and uncertainty if asked for) with the input's frame count, index values, index
    name/unit/type and geometry, and one browser node for them all (``JobResult.browser_node``).
    Results always go to new nodes: ``output_node``, ``residual_node`` and ``uncertainty_node`` must
    be None.
    """

    FILE_EXTENSION = ".nii"
    NOISE2NOISE_ON_INPUT_ALONE = True

    def _check_input(self) -> None:
        check_volume_sequence(self.input_node)

    def _check_content(self) -> None:
        """The voxels of every frame (one series, as the worker checks it), and of a training pair."""
        import slicer

        config = None if self.model_path is not None else self.config
        check_volume_content(volume_from_sequence(self.input_node).array, config, self.input_node.GetName())
        for node in self._pair_inputs().values():
            check_volume_content(slicer.util.arrayFromVolume(node), config, node.GetName())

    def _check_pairing(self) -> None:
        if self.second_input_node is not None:
            raise ValueError("Noise2Noise on a sequence pairs its neighbouring frames: give no second acquisition")
        super()._check_pairing()

    def _check_outputs(self) -> None:
        chosen = [node for node in (self.output_node, self.residual_node, self.uncertainty_node) if node is not None]
        if chosen:
            raise InputError(f"the results of a sequence go to new sequences; leave the output nodes unset (got '{chosen[0].GetName()}')")

    def _remember_grid(self) -> None:
        import slicer

        first = self.input_node.GetNthDataNode(0)
        self._grid = slicer.vtkMRMLScalarVolumeNode()
        self._grid.CopyOrientation(first)
        self._lps_grid = lps_geometry(first)
        frame_count = self.input_node.GetNumberOfDataNodes()
        self._shape = (frame_count, *first.GetImageData().GetDimensions()[::-1])
        self._index_values = [self.input_node.GetNthIndexValue(index) for index in range(frame_count)]

    def _write_input(self, path: Path) -> None:
        # volume_io imports SimpleITK: imported when a run starts, never when Slicer starts.
        from DeepDenoiseLib.core.volume_io import write_volume

        write_volume(volume_from_sequence(self.input_node), path)

    def _read_results(self, run: BackgroundRun) -> dict[str, np.ndarray]:
        from DeepDenoiseLib.core.volume_io import read_volume

        arrays = {}
        for name in self._result_names():
            try:
                result = read_volume(self._result_path(name), allow_4d=True)
            except (OSError, InputError) as error:
                raise WorkerError(f"the worker finished but its {name} is unusable: {error}", run.details) from error
            array = result.array if result.is_4d else result.array[np.newaxis]
            if array.shape != self._shape:
                raise WorkerError(f"the worker's {name} has shape {array.shape} where the input series has {self._shape}", run.details)
            if not _same_grid(result, *self._lps_grid):
                raise WorkerError(f"the worker's {name} does not lie on the input's voxel grid", run.details)
            arrays[name] = array
        return arrays

    def _store_results(self, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> JobResult:
        scene = self.input_node.GetScene()
        values = [self.input_node.GetNthIndexValue(index) for index in range(self.input_node.GetNumberOfDataNodes())]
        if values != self._index_values:
            raise InputError(f"the sequence '{self.input_node.GetName()}' changed while it was being denoised")
        base = self.input_node.GetName()
        suffixes = {"output": "denoised", "residual": "residual", "uncertainty": "uncertainty"}
        sequences = {
            name: add_sequence_from_array(scene, f"{base} {suffixes[name]}", array, self.input_node, self._grid)
            for name, array in arrays.items()
        }
        input_browser = browser_of(self.input_node)
        display_like = input_browser.GetProxyNode(self.input_node) if input_browser is not None else None
        browser = add_browser(scene, list(sequences.values()), f"{base} denoised browser", display_like)
        for sequence in sequences.values():
            place_next_to(sequence, self.input_node)
            proxy = browser.GetProxyNode(sequence)
            if proxy is not None:
                proxy.SetAndObserveTransformNodeID(display_like.GetTransformNodeID() if display_like is not None else None)
                place_next_to(proxy, self.input_node)
        return JobResult(
            output_node=sequences["output"],
            residual_node=sequences.get("residual"),
            uncertainty_node=sequences.get("uncertainty"),
            summary=summary,
            browser_node=browser,
        )


def _same_grid(result: Volume, spacing: tuple[float, ...], origin: tuple[float, ...], direction: np.ndarray) -> bool:
    """True when the worker's result lies on the input's grid (LPS), within the float32 precision of
    a NIfTI header."""
    scale = max(1.0, float(np.max(np.abs(origin))))
    return (
        np.allclose(result.spacing, spacing, rtol=1e-5)
        and np.allclose(result.origin, origin, rtol=0.0, atol=1e-5 * scale)
        and np.allclose(result.direction, direction, rtol=0.0, atol=1e-5)
    )


def _time_axis(sequence: Any, values: list[str]) -> dict[str, float]:
    """``time_origin`` and ``time_spacing`` for a numeric index with (near) even steps, else nothing."""
    if sequence.GetIndexTypeAsString() != "numeric" or len(values) < 1:
        return {}
    try:
        numbers = np.array([float(value) for value in values])
    except ValueError:
        return {}
    if len(numbers) == 1:
        return {"time_origin": float(numbers[0])}
    steps = np.diff(numbers)
    if np.any(steps <= 0) or not np.allclose(steps, steps[0], rtol=1e-6, atol=0.0):
        return {"time_origin": float(numbers[0])}
    return {"time_origin": float(numbers[0]), "time_spacing": float(steps[0])}


def _matrix_text(matrix: np.ndarray) -> str:
    return "[" + "; ".join(" ".join(f"{value:.4g}" for value in row) for row in matrix[:3]) + "]"

"""The bridge between a Slicer scene and the library: volume nodes to arrays and files and back, the
module panel's settings, and a denoising job that runs on a node in a background process.

Only Slicer's MRML API is used (never Qt), and only inside functions, so this module imports anywhere;
its functions need ``slicer`` (the full application or the ``slicer-core`` wheel).

Geometry always goes through the node's IJK-to-RAS matrix: array order is never assumed to match a
file's. Slicer flips the K axis when it reads a file whose direction matrix is left-handed, so a result
read back from the worker is mapped onto the input's grid voxel by voxel (:func:`array_on_grid`), and
output nodes take the input's spacing, origin and directions with ``CopyOrientation``, which keeps the
IJK-to-RAS matrix bit-identical.

>>> settings = PanelSettings(method="N2V2", modality="CT", budget_minutes=2, test_time_augmentation=True)
>>> job = NodeDenoiseJob(input_node, settings.to_config(), compute_uncertainty=True)
>>> job.start()
>>> job.wait(on_event=print)
>>> result = job.finish()          # the scene changes here, and only if the worker succeeded
>>> result.output_node.GetName()
'MRHead denoised'
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from DeepDenoiseLib.core.progress import Cancelled, ProgressEvent
from DeepDenoiseLib.core.settings import check_field_types
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import (
    PAIRED_METHODS,
    DenoiseConfig,
    MaskingConfig,
    ModelConfig,
    NoiseConfig,
    PredictionConfig,
    TrainingConfig,
)
from DeepDenoiseLib.slicer.background import (
    CANCELLED,
    FAILED,
    BackgroundRun,
    PathLike,
    apply_command,
    denoise_command,
    make_work_folder,
    noise2noise_command,
    remove_work_folder,
    supervised_command,
    worker_environment,
)

# RAS (Slicer) and LPS (ITK, files, Volume) differ by the sign of the first two axes.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

#: The modality presets of the panel and the noise model (``noise.model``) each one sets. Reconstructed
#: CT noise is close to Gaussian; PET counts are Poisson-like; ultrasound has multiplicative speckle.
MODALITY_NOISE_MODELS = {
    "MRI": "rician",
    "CT": "gaussian",
    "PET": "poisson",
    "ultrasound": "speckle",
    "generic": "gaussian",
}
#: The panel's method names and the configuration's; the library's default method first, then the
#: other single-volume methods, then those that learn from pairs of volumes.
METHOD_NAMES = {
    "Blind-spot N2V": "blindspot",
    "N2V": "n2v",
    "N2V2": "n2v2",
    "structN2V": "structn2v",
    "Noise2Noise": "noise2noise",
    "Supervised": "supervised",
}
#: Panel methods whose network is 2D only (3D context comes from neighbouring slices).
METHODS_2D_ONLY = tuple(name for name, method in METHOD_NAMES.items() if method == "blindspot")
#: Panel methods that hide voxels by masking (the blind-spot network and the paired methods mask
#: nothing): the masked fraction applies to these only.
MASKING_METHODS = tuple(name for name, method in METHOD_NAMES.items() if method not in ("blindspot", *PAIRED_METHODS))
#: Panel methods that learn from pairs of volumes: a second acquisition (Noise2Noise) or a
#: (noisy, clean) training pair (Supervised). The architecture applies to these only.
PAIRED_METHOD_NAMES = tuple(name for name, method in METHOD_NAMES.items() if method in PAIRED_METHODS)
#: The panel method whose training adds the adversarial loss (it needs clean targets).
ADVERSARIAL_METHODS = tuple(name for name, method in METHOD_NAMES.items() if method == "supervised")
#: The paired methods' networks: a UNet, or a denoising autoencoder (the UNet without skips).
ARCHITECTURE_NAMES = {"UNet": "unet", "DAE": "dae"}
#: The panel's dimension names and the configuration's.
DIMENSION_NAMES = {"2D": "2d", "3D": "3d"}
#: The panel's devices; "GPU" is CUDA, or Metal (MPS) on a Mac.
DEVICE_NAMES = {"auto": "auto", "GPU": "mps" if sys.platform == "darwin" else "cuda", "CPU": "cpu"}


def _panel_name(names: Mapping[str, str], value: str) -> str:
    """The first panel name standing for the configuration's ``value``."""
    return next(name for name, config_value in names.items() if config_value == value)


class WorkerError(RuntimeError):
    """The worker process failed; the message is its own error text, :attr:`details` its other output."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


# --- Settings -------------------------------------------------------------------------------------


@dataclass
class PanelSettings:
    """The module panel's choices, in the words and units a user sees (N2V2, 3D, minutes, GPU).

    Defaults are the library's (the modality is the one whose noise model is the library's default).
    ``modality`` sets the configuration's noise model (:attr:`noise_model`), which Blind-spot N2V's
    fusion step assumes. A 2D-only method with 3D dimensions is refused with a ValueError. Settings
    that a method does not use are left out of its configuration: the masked fraction for methods
    that mask nothing, the architecture for the single-volume methods, the adversarial weight for
    all but Supervised.
    """

    method: str = _panel_name(METHOD_NAMES, DenoiseConfig.method)
    dimensions: str = _panel_name(DIMENSION_NAMES, ModelConfig.dimensions)
    modality: str = _panel_name(MODALITY_NOISE_MODELS, NoiseConfig.model)
    budget_minutes: float = TrainingConfig.budget_seconds / 60.0
    device: str = _panel_name(DEVICE_NAMES, TrainingConfig.device)
    patch_size: int = TrainingConfig.patch_size
    batch_size: int = TrainingConfig.batch_size
    learning_rate: float = TrainingConfig.learning_rate
    masked_fraction: float = MaskingConfig.masked_fraction
    test_time_augmentation: bool = PredictionConfig.tta
    seed: int = TrainingConfig.seed
    architecture: str = _panel_name(ARCHITECTURE_NAMES, ModelConfig.architecture)
    adversarial_weight: float = TrainingConfig.adversarial_weight

    def __post_init__(self) -> None:
        check_field_types(self, display=_camel_case)  # "false" for a boolean would read as True
        for name, allowed in (
            ("method", METHOD_NAMES),
            ("dimensions", DIMENSION_NAMES),
            ("modality", MODALITY_NOISE_MODELS),
            ("device", DEVICE_NAMES),
            ("architecture", ARCHITECTURE_NAMES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.method in METHODS_2D_ONLY and DIMENSION_NAMES[self.dimensions] != "2d":
            methods_3d = ", ".join(name for name in METHOD_NAMES if name not in METHODS_2D_ONLY)
            raise ValueError(
                f"{self.method} is a 2D method (it takes 3D context from neighbouring slices); "
                f"choose 2D dimensions, or one of {methods_3d} for a 3D network"
            )

    @property
    def noise_model(self) -> str:
        return MODALITY_NOISE_MODELS[self.modality]

    def to_config(self) -> DenoiseConfig:
        """The run configuration these choices stand for (validated: a bad value raises ValueError)."""
        model: dict[str, Any] = {"dimensions": DIMENSION_NAMES[self.dimensions]}
        training: dict[str, Any] = {
            "budget_seconds": float(self.budget_minutes) * 60.0,
            "device": DEVICE_NAMES[self.device],
            "patch_size": int(self.patch_size),
            "batch_size": int(self.batch_size),
            "learning_rate": float(self.learning_rate),
            "seed": int(self.seed),
        }
        sections: dict[str, Any] = {}
        if self.method in PAIRED_METHOD_NAMES:
            model["architecture"] = ARCHITECTURE_NAMES[self.architecture]
        else:
            sections["masking"] = {"masked_fraction": float(self.masked_fraction)}
        if self.method in ADVERSARIAL_METHODS:
            training["adversarial_weight"] = float(self.adversarial_weight)
        return DenoiseConfig.for_method(
            METHOD_NAMES[self.method],
            model=model,
            training=training,
            prediction={"tta": bool(self.test_time_augmentation)},
            noise={"model": self.noise_model},
            **sections,
        )

    @classmethod
    def parameter_names(cls) -> list[str]:
        """The names of these settings in the Slicer parameter node (camelCase)."""
        return [_camel_case(f.name) for f in fields(cls)]

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any]) -> PanelSettings:
        """Settings from parameter-node names (``budgetMinutes``...); missing ones keep their default."""
        by_name = {_camel_case(f.name): f.name for f in fields(cls)}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
        return cls(**{by_name[name]: value for name, value in values.items()})


def _camel_case(snake: str) -> str:
    return re.sub(r"_([a-z])", lambda match: match.group(1).upper(), snake)


# --- Nodes, arrays and geometry ---------------------------------------------------------------------


def check_scalar_volume(node: Any, role: str = "input volume") -> None:
    """Raise :class:`InputError` unless ``node`` is a 3D single-component scalar volume with voxels.

    Label maps, vector/RGB, tensor and diffusion-weighted volumes, sequences and the frames a
    sequence browser shows (4D) are refused with a message that says what to do instead.
    """
    if node is None:
        raise InputError(f"no {role} selected")
    name = node.GetName()
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(
            f"'{name}' is a label map (a segmentation), which has no noise to remove; choose an image. "
            "If it really is an image, convert it to a scalar volume in the Volumes module first."
        )
    if node.IsA("vtkMRMLTensorVolumeNode") or node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        raise InputError(
            f"'{name}' is a vector, RGB, tensor or diffusion-weighted volume ({node.GetClassName()}); "
            "DeepDenoise denoises single-component scalar volumes. Extract one component first "
            "(e.g. with the Vector to Scalar Volume module)."
        )
    if node.IsA("vtkMRMLSequenceNode"):
        raise InputError(
            f"'{name}' is a sequence (4D data), not a scalar volume; sequences of scalar volumes are denoised "
            "as a whole, with one model for all frames (sequence_bridge.SequenceDenoiseJob)"
        )
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError(f"'{name}' is a {node.GetClassName()}, not a scalar volume")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"'{name}' has no voxels; load or compute the image first")
    components = image.GetNumberOfScalarComponents()
    if components != 1:
        raise InputError(
            f"'{name}' has {components} components per voxel (a vector or 4D multi-volume); "
            "DeepDenoise denoises single-component scalar volumes"
        )
    scene = node.GetScene()
    if scene is not None:
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
            browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
            if browser.IsProxyNodeID(node.GetID()):
                raise InputError(
                    f"'{name}' is the current frame of the sequence browsed by '{browser.GetName()}' (4D "
                    "data); choose the sequence itself to denoise all its frames with one model, or clone "
                    "the frame (Volumes module, or right-click > Clone in the Data module) to denoise it alone"
                )


def check_volume_content(array: np.ndarray, config: Optional[DenoiseConfig], name: str) -> list[str]:
    """The worker's refusals of a volume's voxels, made before a job starts it, so that a refused
    volume leaves the scene as it was and no process is started: too many voxels, NaN or infinite
    values, an integer volume that looks like a label map (unless ``config.allow_label_map``), and
    intensities the run's noise model cannot represent (negative ones under rician, poisson or
    speckle, where the method uses the model). ``array`` is ``[k, j, i]``, or ``[t, k, j, i]`` for a
    sequence. Raises :class:`InputError` naming ``name``; returns the warnings the worker will give."""
    from DeepDenoiseLib.core.validation import NON_NEGATIVE_NOISE_MODELS, check_volume, check_voxel_count

    array = np.asarray(array)
    try:
        check_voxel_count(array.shape)
        stacked = array.reshape(-1, *array.shape[-2:]) if array.ndim == 4 else array
        check = check_volume(stacked, allow_label_map=config is not None and config.allow_label_map, max_voxels=max(stacked.size, 1))
        if config is None or check.is_constant or config.noise.model not in NON_NEGATIVE_NOISE_MODELS:
            return check.warnings
        uses_noise_model = config.method not in PAIRED_METHODS or (config.method == "noise2noise" and config.noise.model == "rician")
        if uses_noise_model and np.any(array < 0):
            from DeepDenoiseLib.denoise.noise_models import fit_noise_model

            return check.warnings + fit_noise_model(np.asarray(array, dtype=np.float32), config.noise).warnings
        return check.warnings
    except InputError as error:
        raise InputError(f"'{name}': {error}") from error


def ijk_to_ras(node: Any) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix as a float64 array."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def volume_from_node(node: Any) -> Volume:
    """A :class:`Volume` holding a copy of the node's voxels ``[k, j, i]`` and its geometry in LPS."""
    import slicer

    check_scalar_volume(node)
    return Volume(
        np.array(slicer.util.arrayFromVolume(node), copy=True),
        *lps_geometry(node),
        metadata={"node_name": node.GetName()},
    )


def lps_geometry(node: Any) -> tuple[tuple[float, ...], tuple[float, ...], np.ndarray]:
    """The node's spacing, origin and direction (columns: i, j, k axes) in LPS, as :class:`Volume` keeps them."""
    matrix = ijk_to_ras(node)
    spacing = np.array(node.GetSpacing(), dtype=np.float64)
    direction_ras = matrix[:3, :3] / spacing
    return tuple(spacing), tuple(_RAS_TO_LPS @ matrix[:3, 3]), _RAS_TO_LPS @ direction_ras


def update_node_from_volume(node: Any, volume: Volume) -> None:
    """Put ``volume``'s voxels and geometry (converted from LPS to RAS) into the scalar volume ``node``."""
    import slicer
    import vtk

    if volume.is_4d:
        raise InputError("a 4D volume cannot go into one volume node")
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    directions = vtk.vtkMatrix4x4()
    direction_ras = _RAS_TO_LPS @ volume.direction
    for row in range(3):
        for column in range(3):
            directions.SetElement(row, column, direction_ras[row, column])
    node.SetIJKToRASDirectionMatrix(directions)
    node.SetSpacing(*volume.spacing)
    node.SetOrigin(*(_RAS_TO_LPS @ np.asarray(volume.origin)))


def write_node(node: Any, path: PathLike) -> None:
    """Write the volume node to ``path`` (.nrrd, .nii.gz, .mha...) uncompressed, as Slicer would save it."""
    import slicer

    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)
    if not storage.WriteData(node):
        raise OSError(f"could not write '{node.GetName()}' to {path}")


def read_file_node(path: PathLike) -> Any:
    """A scalar volume node, not added to any scene, holding the file read by Slicer's storage node."""
    import slicer

    node = slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not Path(path).is_file() or not storage.ReadData(node):
        raise OSError(f"could not read a volume from {path}")
    return node


def array_on_grid(node: Any, target_ijk_to_ras: np.ndarray, atol_mm: float = 1e-3) -> np.ndarray:
    """The voxels of ``node`` re-indexed onto the grid of ``target_ijk_to_ras`` (same voxel centres).

    Two descriptions of one grid differ only by axis flips and permutations (Slicer flips K when it
    reads a left-handed file); anything else means the grids differ, and raises ``ValueError``.
    """
    import slicer

    array = slicer.util.arrayFromVolume(node)
    source = ijk_to_ras(node)
    shape_ijk = np.array(array.shape[::-1])
    # target IJK -> source IJK; on one grid this is a signed permutation plus an integer shift.
    mapping = np.linalg.solve(source, target_ijk_to_ras)
    linear = np.rint(mapping[:3, :3])
    shift = np.rint(mapping[:3, 3])
    mismatch_mm = np.abs(source[:3, :3] @ (mapping[:3, :3] - linear)).max() + np.abs(source[:3, :3] @ (mapping[:3, 3] - shift)).max()
    is_signed_permutation = (np.abs(linear).sum(axis=0) == 1).all() and (np.abs(linear).sum(axis=1) == 1).all()
    if mismatch_mm > atol_mm or not is_signed_permutation:
        raise ValueError("the result does not lie on the input's voxel grid")
    axes_ijk = [int(np.flatnonzero(linear[:, target_axis])[0]) for target_axis in range(3)]
    flips = [linear[axes_ijk[target_axis], target_axis] < 0 for target_axis in range(3)]
    target_shape = shape_ijk[axes_ijk]
    for target_axis, source_axis in enumerate(axes_ijk):
        start = shift[source_axis]
        end = start - (target_shape[target_axis] - 1) if flips[target_axis] else start + target_shape[target_axis] - 1
        if min(start, end) != 0 or max(start, end) != shape_ijk[source_axis] - 1:
            raise ValueError("the result does not cover the input's voxel grid")
    # Arrays are [k, j, i]: array axis a holds IJK axis 2 - a.
    reordered = np.transpose(array, [2 - axes_ijk[2 - axis] for axis in range(3)])
    flip_axes = [2 - target_axis for target_axis in range(3) if flips[target_axis]]
    return np.ascontiguousarray(np.flip(reordered, axis=flip_axes) if flip_axes else reordered)


def create_volume_node(scene: Any, name: str) -> Any:
    """A new scalar volume node in ``scene`` with a unique name based on ``name``."""
    return scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))


def fill_node(node: Any, array: np.ndarray, geometry: Any, display_like: Optional[Any] = None) -> None:
    """Put ``array`` into ``node`` with the spacing, origin and directions of ``geometry`` (a volume
    node), creating display nodes; with ``display_like``, copy its colour map and window/level."""
    import slicer

    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.CopyOrientation(geometry)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if display_like is not None and display_like.GetDisplayNode() is not None and node.GetDisplayNode() is not None:
        source, target = display_like.GetDisplayNode(), node.GetDisplayNode()
        target.SetAndObserveColorNodeID(source.GetColorNodeID())
        target.SetAutoWindowLevel(False)
        target.SetWindowLevel(source.GetWindow(), source.GetLevel())


def place_next_to(node: Any, reference: Any) -> None:
    """Put ``node`` beside ``reference`` in the subject hierarchy (same parent: patient, study or
    folder), unless ``node`` already sits somewhere below the top level."""
    scene = reference.GetScene()
    hierarchy = scene.GetSubjectHierarchyNode()
    reference_item = hierarchy.GetItemByDataNode(reference)
    parent = hierarchy.GetItemParent(reference_item) if reference_item else hierarchy.GetSceneItemID()
    item = hierarchy.GetItemByDataNode(node)
    if not item:
        hierarchy.CreateItem(parent, node)
    elif hierarchy.GetItemParent(item) == hierarchy.GetSceneItemID():
        hierarchy.SetItemParent(item, parent)


# --- A denoising job on a node ----------------------------------------------------------------------


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


class NodeDenoiseJob(WorkerJob):
    """Denoises one volume node in a worker process; the scene changes only when the worker succeeded.

    :meth:`start` writes the input and the configuration to a temporary folder and starts the worker;
    :meth:`poll` (from a timer) or :meth:`wait` (from a script) follow it; :meth:`finish` reads the
    result into the output node (a new one next to the input unless ``output_node`` is given) and the
    optional residual and uncertainty nodes, or raises :class:`WorkerError` /
    :class:`~DeepDenoiseLib.core.progress.Cancelled` with the scene untouched. The temporary folder is
    removed whatever happens, by :meth:`finish` or :meth:`cancel`.

    The uncertainty is the per-voxel spread across test-time augmentations (and slice orientations),
    so it needs ``config.prediction.tta``. ``worker`` replaces the ``python -m DeepDenoiseLib``
    command prefix; ``python`` is the interpreter for it (``PythonSlicer`` inside Slicer).

    With ``model_path`` the worker applies that saved model (``deepdenoise apply``) instead of
    training one; ``config`` may then be None, and otherwise only its test-time augmentation and
    device are used. ``save_model_path`` saves the model a training run makes (model_file.py).
    Both take a path ending in ``.safetensors`` or a name in the per-user model folder, as the
    command line does.
    Sequence nodes (4D) go through :class:`~DeepDenoiseLib.slicer.sequences.SequenceDenoiseJob`.
    With ``second_input_node``, a second acquisition of the same anatomy on the same grid, the job
    runs Noise2Noise on the two (``config.method`` must be ``noise2noise``); the residual is then
    the two acquisitions' mean minus the result. With ``training_noisy_node`` and
    ``training_clean_node``, a (noisy, clean) pair on one grid (any grid: the input's may differ),
    it trains a network on that pair and denoises the input with it (``config.method`` must be
    ``supervised``). The paired methods keep no model (``save_model_path`` is refused).
    """

    #: Whether Noise2Noise may run on the input alone (a 4D series pairs its neighbouring frames).
    NOISE2NOISE_ON_INPUT_ALONE = False

    def __init__(
        self,
        input_node: Any,
        config: Optional[DenoiseConfig],
        output_node: Optional[Any] = None,
        residual_node: Optional[Any] = None,
        compute_residual: bool = False,
        uncertainty_node: Optional[Any] = None,
        compute_uncertainty: bool = False,
        python: Optional[str] = None,
        worker: Optional[Sequence[str]] = None,
        library_parent: Optional[PathLike] = None,
        temp_parent: Optional[PathLike] = None,
        model_path: Optional[PathLike] = None,
        save_model_path: Optional[PathLike] = None,
        second_input_node: Optional[Any] = None,
        training_noisy_node: Optional[Any] = None,
        training_clean_node: Optional[Any] = None,
    ) -> None:
        self.input_node = input_node
        self.second_input_node = second_input_node
        self.training_noisy_node = training_noisy_node
        self.training_clean_node = training_clean_node
        self.config = config
        self.output_node = output_node
        self.residual_node = residual_node
        self.compute_residual = compute_residual or residual_node is not None
        self.uncertainty_node = uncertainty_node
        self.compute_uncertainty = compute_uncertainty or uncertainty_node is not None
        self.python = python
        self.worker = worker
        self.library_parent = library_parent if library_parent is not None else Path(__file__).resolve().parents[2]
        self.temp_parent = temp_parent
        self.model_path = model_path
        self.save_model_path = save_model_path
        self.folder: Optional[Path] = None
        self.run: Optional[BackgroundRun] = None
        self._grid: Any = None
        self._shape: tuple[int, ...] = ()

    @property
    def tta(self) -> bool:
        return self.config is not None and self.config.prediction.tta

    def start(self) -> None:
        """Check the nodes and settings, write the input and configuration, and start the worker."""
        self._check_input()
        if self.input_node.GetScene() is None:
            raise InputError(f"'{self.input_node.GetName()}' is not in a scene")
        self._check_outputs()
        self._check_settings()
        self._check_pairing()
        self._check_content()
        self._remember_grid()
        self.folder = make_work_folder(self.temp_parent)
        try:
            input_path = self.folder / f"input{self.FILE_EXTENSION}"
            self._write_input(input_path)
            for name, node in self._pair_inputs().items():
                write_node(node, self._input_path(name))
            self.run = BackgroundRun(self._command(input_path), environment=worker_environment(self.library_parent), cwd=self.folder)
        except BaseException:
            self._remove_folder()
            raise

    def _pair_inputs(self) -> dict[str, Any]:
        """The volumes besides the input that the worker gets, by file name: the second acquisition,
        the training pair."""
        nodes = {
            "second": self.second_input_node,
            "training_noisy": self.training_noisy_node,
            "training_clean": self.training_clean_node,
        }
        return {name: node for name, node in nodes.items() if node is not None}

    def _input_path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{name}{self.FILE_EXTENSION}"

    def _check_pairing(self) -> None:
        """A second acquisition goes with Noise2Noise only, and must lie on the input's grid; a
        training pair goes with Supervised only, and its two volumes must lie on one grid."""
        second = self.second_input_node
        pair = (self.training_noisy_node, self.training_clean_node)
        if self.config is None or self.model_path is not None:
            if self._pair_inputs():
                raise ValueError("a saved model denoises one volume; a second acquisition or a training pair is for training")
            return
        method = self.config.method
        if method in PAIRED_METHODS and self.save_model_path is not None:
            raise ValueError(f"method '{method}' keeps no model: saving is for the single-volume methods")
        if second is not None and method != "noise2noise":
            raise ValueError(f"a second acquisition is for method noise2noise; method '{method}' denoises one volume")
        if any(node is not None for node in pair) and method != "supervised":
            raise ValueError(f"a training pair is for method supervised; method '{method}' does not learn from clean volumes")
        if method == "noise2noise" and second is None and not self.NOISE2NOISE_ON_INPUT_ALONE:
            raise ValueError(
                "method 'noise2noise' learns from pairs of volumes: give the second acquisition "
                "(another scan of the same anatomy on the same grid)"
            )
        if method == "supervised" and None in pair:
            raise ValueError("method 'supervised' learns from pairs of volumes: give the training noisy volume and its clean partner")
        if second is not None:
            check_scalar_volume(second, "second acquisition")
            if second is self.input_node:
                raise InputError("the second acquisition must be another volume than the first")
            _check_same_grid(second, self.input_node)
        if method == "supervised":
            noisy, clean = pair
            check_scalar_volume(noisy, "training noisy volume")
            check_scalar_volume(clean, "training clean volume")
            if noisy is clean:
                raise InputError("the training noisy and clean volumes must be two different volumes")
            _check_same_grid(clean, noisy)

    # --- Steps a sequence job does its own way ---

    def _check_input(self) -> None:
        check_scalar_volume(self.input_node)

    def _check_content(self) -> None:
        """The voxels of every input, as the worker would check them (:func:`check_volume_content`)."""
        import slicer

        config = None if self.model_path is not None else self.config
        for node in [self.input_node, *self._pair_inputs().values()]:
            check_volume_content(slicer.util.arrayFromVolume(node), config, node.GetName())

    def _check_outputs(self) -> None:
        outputs = {
            "output volume": self.output_node,
            "residual volume": self.residual_node,
            "uncertainty volume": self.uncertainty_node,
        }
        for role, node in outputs.items():
            if node is None:
                continue
            if node is self.input_node or any(node is other for other in self._pair_inputs().values()):
                raise InputError(f"the {role} must differ from the input volumes; choose or create another one")
            if node.IsA("vtkMRMLLabelMapVolumeNode") or not node.IsA("vtkMRMLScalarVolumeNode"):
                raise InputError(f"the {role} '{node.GetName()}' must be a scalar volume")
        chosen = [(role, node) for role, node in outputs.items() if node is not None]
        for index, (role, node) in enumerate(chosen):
            for other_role, other in chosen[index + 1 :]:
                if node is other:
                    raise InputError(f"the {role} and the {other_role} must be different nodes")

    def _remember_grid(self) -> None:
        """The grid as the worker sees it, kept apart from the input node in case that changes meanwhile."""
        import slicer

        self._grid = slicer.vtkMRMLScalarVolumeNode()
        self._grid.CopyOrientation(self.input_node)
        self._shape = tuple(self.input_node.GetImageData().GetDimensions()[::-1])

    def _write_input(self, path: Path) -> None:
        write_node(self.input_node, path)

    def _read_results(self, run: BackgroundRun) -> dict[str, np.ndarray]:
        """The worker's result arrays on the input's grid, by name; WorkerError if any is unusable."""
        target = ijk_to_ras(self._grid)
        arrays = {}
        try:
            for name in self._result_names():
                arrays[name] = array_on_grid(read_file_node(self._result_path(name)), target)
        except (OSError, ValueError) as error:
            raise WorkerError(f"the worker finished but its result is unusable: {error}", run.details) from error
        for name, array in arrays.items():
            if array.shape != self._shape:
                raise WorkerError(f"the worker's {name} has {array.shape} voxels where the input has {self._shape}", run.details)
        return arrays

    def _store_results(self, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> JobResult:
        grid = self._grid
        result = JobResult(self._store(self.output_node, arrays["output"], "denoised", grid, display_like=self.input_node), summary=summary)
        if "residual" in arrays:
            result.residual_node = self._store(self.residual_node, arrays["residual"], "residual", grid)
        if "uncertainty" in arrays:
            result.uncertainty_node = self._store(self.uncertainty_node, arrays["uncertainty"], "uncertainty", grid)
        return result

    # --- Shared steps ---

    def _check_settings(self) -> None:
        if self.model_path is None and self.config is None:
            raise ValueError("a denoising job needs a configuration, or a saved model to apply (model_path)")
        if self.model_path is not None and self.save_model_path is not None:
            raise ValueError("a job that applies a saved model trains none, so it has no model to save")
        if self.compute_uncertainty and not self.tta:
            raise ValueError(
                "the uncertainty volume is the spread across test-time augmentations: "
                "turn test-time augmentation on (prediction.tta), or leave the uncertainty volume out"
            )

    def _command(self, input_path: Path) -> list[str]:
        assert self.folder is not None
        residual = self._result_path("residual") if self.compute_residual else None
        uncertainty = self._result_path("uncertainty") if self.compute_uncertainty else None
        if self.model_path is not None:
            device = None if self.config is None else self.config.training.device
            return apply_command(
                _for_worker(self.model_path), input_path, self._result_path("output"), residual, uncertainty,
                tta=self.tta, device=device, python=self.python, worker=self.worker,
            )  # fmt: skip
        assert self.config is not None
        config_path = self.folder / "config.json"
        self.config.save(config_path)
        output = self._result_path("output")
        if self.config.method == "noise2noise":
            inputs = [input_path] + ([self._input_path("second")] if self.second_input_node is not None else [])
            return noise2noise_command(inputs, output, config_path, residual, uncertainty, python=self.python, worker=self.worker)
        if self.config.method == "supervised":
            return supervised_command(
                self._input_path("training_noisy"), self._input_path("training_clean"), input_path, output, config_path,
                residual, uncertainty, python=self.python, worker=self.worker,
            )  # fmt: skip
        return denoise_command(
            input_path, output, config_path, residual, uncertainty, python=self.python, worker=self.worker,
            save_model_path=None if self.save_model_path is None else _for_worker(self.save_model_path),
        )  # fmt: skip

    def _result_names(self) -> list[str]:
        """The worker's result files by name: ``output``, then ``residual`` and ``uncertainty`` if asked for."""
        optional = (("residual", self.compute_residual), ("uncertainty", self.compute_uncertainty))
        return ["output"] + [name for name, wanted in optional if wanted]


def _check_same_grid(node: Any, reference: Any) -> None:
    """Raise :class:`InputError` unless ``node`` lies on ``reference``'s voxel grid, under the same transform."""
    same_shape = node.GetImageData().GetDimensions() == reference.GetImageData().GetDimensions()
    if not same_shape or not np.allclose(ijk_to_ras(node), ijk_to_ras(reference), rtol=0.0, atol=1e-6):
        raise InputError(
            f"'{node.GetName()}' and '{reference.GetName()}' must lie on the same voxel grid (dimensions, "
            "spacing, origin and directions); resample one onto the other first (Resample Scalar/Vector/DWI Volume)"
        )
    if node.GetParentTransformNode() is not reference.GetParentTransformNode():
        raise InputError(
            f"'{node.GetName()}' and '{reference.GetName()}' sit under different transforms; "
            "harden the transforms or put both under the same one"
        )


def _for_worker(model: PathLike) -> str:
    """A model argument for the worker, which runs in its temporary folder: a relative path is made
    absolute (else the model would land in the folder that is removed); a model name stays a name."""
    from DeepDenoiseLib.denoise.model_folder import is_model_name

    return str(model) if is_model_name(model) else str(Path(model).expanduser().resolve())

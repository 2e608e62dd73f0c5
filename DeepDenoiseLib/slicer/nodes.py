"""Slicer volume nodes to arrays and files and back, and their geometry.

Only Slicer's MRML API is used (never Qt), and only inside functions, so this module imports anywhere;
its functions need ``slicer`` (the full application or the ``slicer-core`` wheel).

Geometry always goes through the node's IJK-to-RAS matrix: array order is never assumed to match a
file's. Slicer flips the K axis when it reads a file whose direction matrix is left-handed, so a result
read back from the worker is mapped onto the input's grid voxel by voxel (:func:`array_on_grid`), and
output nodes take the input's spacing, origin and directions with ``CopyOrientation``, which keeps the
IJK-to-RAS matrix bit-identical.

>>> volume = volume_from_node(getNode("MRHead"))      # a copy of the voxels, geometry in LPS
>>> write_node(getNode("MRHead"), "/tmp/input.nrrd")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.method_rules import PAIRED_METHODS
from DeepDenoiseLib.slicer.worker_commands import PathLike

# RAS (Slicer) and LPS (ITK, files, Volume) differ by the sign of the first two axes.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


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
            "as a whole, with one model for all frames (sequences.SequenceDenoiseJob)"
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


def lps_geometry(node: Any) -> tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray]:
    """The node's spacing, origin and direction (columns: i, j, k axes) in LPS, as :class:`Volume` keeps them."""
    matrix = ijk_to_ras(node)
    spacing = np.array(node.GetSpacing(), dtype=np.float64)
    direction_ras = matrix[:3, :3] / spacing
    origin = _RAS_TO_LPS @ matrix[:3, 3]
    return (spacing[0], spacing[1], spacing[2]), (origin[0], origin[1], origin[2]), _RAS_TO_LPS @ direction_ras


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
    flip_axes = tuple(2 - target_axis for target_axis in range(3) if flips[target_axis])
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


def check_same_grid(node: Any, reference: Any) -> None:
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


def grid_node(ijk_to_ras_matrix: np.ndarray) -> Any:
    """A scalar volume node outside any scene that only carries a grid (for :func:`fill_node`)."""
    import slicer

    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix))
    return node

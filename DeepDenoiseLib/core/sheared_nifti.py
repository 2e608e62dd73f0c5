"""NIfTI files whose grid is sheared: an sform whose axis directions are not orthogonal.

ITK reads a volume's geometry as spacing, origin and an orthonormal direction matrix, so it refuses
such a header when reading ("ITK only supports orthonormal direction cosines"), and when writing it
silently makes the direction orthogonal, which moves every voxel. Registration tools and some
diffusion pipelines write such files (dipy ships one, ``S0_10slices.nii.gz``); nibabel reads them as
they are. Here they are read and written with nibabel, keeping the sform exactly: the volume's
``direction`` then holds unit but non-orthogonal columns (LPS, as everywhere in the library), and
such a volume can only be written back as NIfTI.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from DeepDenoiseLib.core.file_checks import EXTENSION_FORMATS, check_nifti_data
from DeepDenoiseLib.core.validation import InputError, check_voxel_count
from DeepDenoiseLib.core.volume import Volume

#: Columns of a direction matrix this far from orthonormal (largest entry of ``D^T D - I``) are sheared.
ORTHONORMAL_TOLERANCE = 1e-4
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
NIFTI_EXTENSIONS = tuple(extension for extension, name in EXTENSION_FORMATS.items() if name == "NIfTI")


def _nibabel() -> Any:
    """nibabel, which the library installs with it but Slicer does not ship (Slicer cannot load these files)."""
    try:
        import nibabel
    except ImportError as error:
        raise InputError("reading or writing a NIfTI file with a sheared grid needs nibabel: pip install nibabel") from error
    return nibabel


def is_orthonormal(direction: np.ndarray) -> bool:
    """Whether ``direction``'s columns are orthonormal, as ITK needs them to be."""
    matrix = np.asarray(direction, dtype=np.float64)
    return bool(np.max(np.abs(matrix.T @ matrix - np.eye(len(matrix)))) <= ORTHONORMAL_TOLERANCE)


def check_grid_writable(volume: Volume, paths: Sequence[Optional[Union[str, os.PathLike[str]]]]) -> None:
    """Refuses output ``paths`` that cannot keep ``volume``'s grid: a sheared one only NIfTI keeps.
    Runs call it once the input is read, before any work; the writer (volume_io) calls it too."""
    if is_orthonormal(volume.direction):
        return
    for path in paths:
        if path is not None and not str(path).lower().endswith(NIFTI_EXTENSIONS):
            raise InputError(
                f"cannot write '{Path(path).name}': the input's grid is sheared (its axes are not at right angles), "
                "which only NIfTI keeps; write .nii or .nii.gz"
            )


def sheared_nifti_shape(path: Path) -> tuple[int, ...]:
    """The array shape ``[k, j, i]`` (``[t, k, j, i]`` for a series of more than one frame) from the header."""
    return tuple(reversed(_stored_shape(_nibabel().load(str(path)))))


def _stored_shape(image: Any) -> tuple[int, ...]:
    """nibabel's shape (x, y, z[, t]), without a time axis of one frame."""
    shape = tuple(int(n) for n in image.shape)
    return shape[:3] if len(shape) == 4 and shape[3] == 1 else shape


def read_sheared_nifti(path: Path, allow_4d: bool, metadata: dict[str, Any]) -> Volume:
    """The volume of a NIfTI file with a sheared sform, read with nibabel (``[k, j, i]``, or ``[t, k,
    j, i]`` with ``allow_4d``) after the checks every NIfTI file gets (core/file_checks.py); the
    geometry is the sform's, converted to LPS."""
    image: Any = _nibabel().load(str(path))
    shape = _stored_shape(image)
    check_voxel_count(tuple(reversed(shape)), what=f"'{path.name}'")
    metadata["warnings"] = check_nifti_data(path)  # truncated data, NaN or infinite voxels
    if len(shape) == 4 and not allow_4d:
        raise InputError(
            f"'{path.name}' is a 4D series of {shape[3]} volumes where one 3D volume was expected; read it with "
            "allow_4d=True and denoise it with denoise_series (the command line does both)"
        )
    if len(shape) not in (3, 4):
        raise InputError(f"'{path.name}' has {len(shape)} dimensions; DeepDenoise reads 3D volumes and 4D series")
    data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape)
    array = np.ascontiguousarray(data.transpose(3, 2, 1, 0) if len(shape) == 4 else data.transpose(2, 1, 0))
    affine = _RAS_TO_LPS @ np.asarray(image.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.all(spacing > 0):
        raise InputError(f"'{path.name}' has an sform with a zero-length axis; its grid cannot be used")
    metadata.update(pixel_type=str(image.get_data_dtype()), components=1)
    if len(shape) == 4:
        zooms = image.header.get_zooms()
        metadata["time_spacing"] = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else 1.0
        metadata["time_origin"] = 0.0
    metadata["warnings"].append(
        f"'{path.name}' has a sheared grid (its axes are not at right angles): read with nibabel, and its outputs "
        "can be written as NIfTI only, which keeps that grid exactly"
    )
    return Volume(array, tuple(spacing), tuple(affine[:3, 3]), affine[:3, :3] / spacing, metadata)


def write_sheared_nifti(volume: Volume, target: Path, array: np.ndarray, compress: bool) -> None:
    """Writes ``array`` (``volume``'s voxels, already cast) to ``target`` as NIfTI with ``volume``'s
    sheared grid as the sform (the qform, which cannot hold a shear, is left unset)."""
    nibabel = _nibabel()
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(volume.direction, dtype=np.float64) * np.asarray(volume.spacing, dtype=np.float64)
    affine[:3, 3] = volume.origin
    data = array.transpose(3, 2, 1, 0) if array.ndim == 4 else array.transpose(2, 1, 0)
    image: Any = nibabel.Nifti1Image(np.ascontiguousarray(data), _RAS_TO_LPS @ affine)
    image.set_sform(_RAS_TO_LPS @ affine, code=1)
    image.set_qform(None, code=0)
    if array.ndim == 4:
        image.header.set_zooms((*image.header.get_zooms()[:3], float(volume.metadata.get("time_spacing", 1.0))))
    content = image.to_bytes()
    Path(target).write_bytes(gzip.compress(content) if compress else content)

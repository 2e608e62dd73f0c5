"""Reading and writing volume files (NIfTI, NRRD, MetaImage, DICOM series) as :class:`Volume` objects.

SimpleITK does all the work, so geometry is handled one way everywhere: LPS, as :class:`Volume` keeps
it. How exactly geometry survives a write/read round trip depends on the format:

* MetaImage (``.mha``): spacing, origin and direction come back bit-identical.
* NRRD (``.nrrd``): the origin comes back bit-identical; spacing and direction within about 1e-15
  relative, because NRRD stores their product (the "space directions") and reading divides it again.
* NIfTI (``.nii``, ``.nii.gz``): the header stores float32, so geometry comes back within about 1e-6
  relative (1e-6 absolute for direction entries).
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import Any, Union

import numpy as np
import SimpleITK as sitk
from numpy.typing import DTypeLike

from DeepDenoiseLib.validation import InputError
from DeepDenoiseLib.volume import Volume

PathLike = Union[str, "os.PathLike[str]"]

#: File extensions read_volume accepts (a folder is read as a DICOM series).
READ_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
#: File extensions write_volume accepts: single-file formats only, so a write can be atomic.
WRITE_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".mha")


def supported_extensions(for_writing: bool = False) -> tuple[str, ...]:
    """The file extensions accepted for reading (or writing), for help texts and file dialogs."""
    return WRITE_EXTENSIONS if for_writing else READ_EXTENSIONS


def read_volume(path: PathLike, allow_4d: bool = False) -> Volume:
    """Read a volume file, or a folder holding a DICOM series, into a :class:`Volume`.

    A 2D image becomes a volume of one slice. A 4D series raises :class:`InputError` unless
    ``allow_4d``, when the array is ``[t, k, j, i]`` with the geometry of the spatial part (the time
    step and origin go to ``metadata["time_spacing"]`` and ``["time_origin"]``). Vector/RGB images are
    read with their components as the last array axis and ``metadata["components"]`` above 1, so that
    validation can refuse them with a clear message. ``metadata`` also holds ``source_path`` and
    ``pixel_type`` (SimpleITK's name of the stored voxel type, e.g. "16-bit signed integer").
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no volume file or DICOM folder at this path", str(path))
    metadata: dict[str, Any] = {"source_path": str(path)}
    if path.is_dir():
        image = _read_dicom_series(path, metadata)
    else:
        _extension(path, READ_EXTENSIONS, "read")
        image = _read_file(path, allow_4d)
    return _image_to_volume(image, allow_4d, metadata)


def write_volume(volume: Volume, path: PathLike, dtype: DTypeLike = np.float32) -> Path:
    """Write ``volume`` as ``dtype`` voxels to a NIfTI, NRRD or MetaImage file (chosen by extension).

    The write is atomic: the data goes to a hidden temporary file in the same folder, which then
    replaces ``path`` in one step, so a failed or interrupted write leaves any earlier file untouched
    and no partial file behind. Floats written as integers are rounded and clipped to the type's range.
    A 4D ``[t, k, j, i]`` volume is written as a 4D image (use NIfTI for other tools to read it).
    Returns the path written.
    """
    path = Path(path).expanduser()
    extension = _extension(path, WRITE_EXTENSIONS, "write")
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist; create it first", str(path.parent))
    image = _volume_to_image(volume, dtype)
    name = path.name[: -len(extension)]
    temporary = path.parent / f".{name}.tmp-{secrets.token_hex(6)}{extension}"
    try:
        sitk.WriteImage(image, str(temporary), extension != ".nii")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _extension(path: Path, allowed: tuple[str, ...], action: str) -> str:
    """The longest allowed extension ``path`` ends with, case-insensitively; else an InputError."""
    name = path.name.lower()
    for extension in sorted(allowed, key=len, reverse=True):
        if name.endswith(extension):
            return extension
    folder = " or a folder holding a DICOM series" if action == "read" else ""
    raise InputError(
        f"cannot {action} '{path.name}': unsupported file type; use one of {', '.join(allowed)}{folder}"
    )


def _read_file(path: Path, allow_4d: bool) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        size = reader.GetSize()
        if len(size) == 4 and size[3] > 1 and not allow_4d:
            raise InputError(
                f"'{path.name}' is a 4D series of {size[3]} volumes of {size[0]} x {size[1]} x {size[2]} "
                "voxels where one 3D volume was expected; read it with allow_4d=True and denoise it with "
                "denoise_series (the command line does both)"
            )
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(f"could not read '{path}': {_short_message(error)}") from error


def _read_dicom_series(folder: Path, metadata: dict[str, Any]) -> sitk.Image:
    """Read the DICOM series in ``folder`` with the most files, recording the choice in ``metadata``."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputError(
            f"the folder '{folder}' holds no DICOM series; choose the folder that contains the DICOM "
            f"files of one series, or a file of type {', '.join(READ_EXTENSIONS)}"
        )
    files = {uid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid) for uid in series_ids}
    chosen = max(sorted(files), key=lambda uid: len(files[uid]))
    metadata["dicom_series_uid"] = chosen
    metadata["dicom_file_count"] = len(files[chosen])
    metadata["dicom_other_series"] = {uid: len(names) for uid, names in sorted(files.items()) if uid != chosen}
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files[chosen])
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(f"could not read the DICOM series in '{folder}': {_short_message(error)}") from error


def _image_to_volume(image: sitk.Image, allow_4d: bool, metadata: dict[str, Any]) -> Volume:
    dimension = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    metadata["pixel_type"] = sitk.GetPixelIDValueAsString(image.GetPixelID())
    metadata["components"] = components
    array = sitk.GetArrayFromImage(image)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dimension, dimension)
    if dimension == 2:
        array = array[np.newaxis]
        spacing = np.append(spacing, 1.0)
        origin = np.append(origin, 0.0)
        direction = np.pad(direction, ((0, 1), (0, 1)))
        direction[2, 2] = 1.0
    elif dimension == 4:
        if array.shape[0] == 1 and not allow_4d:
            array = array[0]
        else:
            metadata["time_spacing"] = float(spacing[3])
            metadata["time_origin"] = float(origin[3])
        spacing, origin, direction = spacing[:3], origin[:3], direction[:3, :3]
    elif dimension != 3:
        raise InputError(f"{dimension}D images are not supported; DeepDenoise reads 3D volumes")
    return Volume(array, tuple(spacing), tuple(origin), direction, metadata)


def _volume_to_image(volume: Volume, dtype: DTypeLike) -> sitk.Image:
    if int(volume.metadata.get("components", 1)) > 1:
        raise InputError("RGB/vector volumes cannot be written; DeepDenoise writes scalar volumes only")
    if volume.array.ndim not in (3, 4):
        raise InputError(f"can write 3D [k, j, i] or 4D [t, k, j, i] volumes; got shape {volume.array.shape}")
    array = _cast(volume.array, np.dtype(dtype))
    frames = [array] if array.ndim == 3 else list(array)
    images = []
    for frame in frames:
        image = sitk.GetImageFromArray(frame)
        image.SetSpacing(volume.spacing)
        image.SetOrigin(volume.origin)
        image.SetDirection(tuple(volume.direction.reshape(-1)))
        images.append(image)
    if array.ndim == 3:
        return images[0]
    return sitk.JoinSeries(
        images,
        float(volume.metadata.get("time_origin", 0.0)),
        float(volume.metadata.get("time_spacing", 1.0)),
    )


def _cast(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` as ``dtype``; floats going to integers are rounded and clipped rather than wrapped."""
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)):
            raise InputError(f"cannot write NaN or infinite values as {dtype}; write floats instead")
        info = np.iinfo(dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    return np.ascontiguousarray(array, dtype=dtype)


def _short_message(error: Exception) -> str:
    """SimpleITK's messages span many lines of C++ context; the last non-empty line says what failed."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__

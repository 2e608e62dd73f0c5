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
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import SimpleITK as sitk
from numpy.typing import DTypeLike

from DeepDenoiseLib.core.atomic_write import FileWriter, write_files
from DeepDenoiseLib.core.file_checks import EXTENSION_FORMATS, check_content, check_metaimage_data, check_nifti_data
from DeepDenoiseLib.core.output_paths import VOLUME_EXTENSIONS
from DeepDenoiseLib.core.sheared_nifti import (
    check_grid_writable,
    is_orthonormal,
    read_sheared_nifti,
    sheared_nifti_shape,
    write_sheared_nifti,
)
from DeepDenoiseLib.core.validation import InputError, check_voxel_count
from DeepDenoiseLib.core.volume import Volume

PathLike = Union[str, "os.PathLike[str]"]

#: File extensions read_volume accepts (a folder is read as a DICOM series).
READ_EXTENSIONS = tuple(EXTENSION_FORMATS)
#: File extensions write_volume accepts: single-file formats only, so a write can be atomic.
WRITE_EXTENSIONS = VOLUME_EXTENSIONS
#: SimpleITK's reader for each format: chosen by the extension, never by the content.
_IMAGE_IOS = {"NIfTI": "NiftiImageIO", "NRRD": "NrrdImageIO", "MetaImage": "MetaImageIO"}
#: Slices of a DICOM series further apart than this share of their usual spacing mean a gap.
DICOM_SPACING_TOLERANCE = 0.2


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
    ``pixel_type`` (SimpleITK's name of the stored voxel type, e.g. "16-bit signed integer"), and
    ``warnings`` where the reader chose something for the user (which DICOM series of several).

    Refused before the voxels are read (:class:`InputError`): a file whose content is not what its
    extension says, a volume too large for the size limits (decided from the header), a truncated
    file, NaN or infinite voxels in a NIfTI file (which SimpleITK would read as zeros), and a DICOM
    series with missing or unevenly spaced slices.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no volume file or DICOM folder at this path", str(path))
    metadata: dict[str, Any] = {"source_path": str(path)}
    if path.is_dir():
        image = _read_dicom_series(path, metadata)
    else:
        extension = _extension(path, READ_EXTENSIONS, "read")
        try:
            image = _read_file(path, extension, allow_4d, metadata)
        except _ShearedGrid:
            return read_sheared_nifti(path, allow_4d, metadata)
    return _image_to_volume(image, allow_4d, metadata)


def read_header(path: PathLike) -> tuple[int, ...]:
    """The array shape ``[k, j, i]`` (``[t, k, j, i]`` for a 4D series) of a volume file or DICOM
    folder, read from its header(s) alone: for size checks before a run reads any voxel."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no volume file or DICOM folder at this path", str(path))
    if path.is_dir():
        chosen, files, _ = _choose_dicom_series(path)
        return _dicom_shape(files[chosen])
    extension = _extension(path, READ_EXTENSIONS, "read")
    check_content(path, extension)
    reader = _file_reader(path, extension)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        if _is_sheared_refusal(extension, error):
            return sheared_nifti_shape(path)
        raise _read_error(path, extension, error) from error
    return _shape_kji(reader.GetSize())


def header_frames(path: PathLike) -> Optional[int]:
    """The frame count of a 4D series file or folder from its header (:func:`read_header`); None for
    one volume, and for a path whose header cannot be read (the run that reads it says why). What a
    run without a chosen method needs to pick its default (MP-PCA for a series, method_rules)."""
    try:
        shape = read_header(path)
    except (OSError, ValueError, RuntimeError):
        return None
    return shape[0] if len(shape) == 4 else None


def write_volume(volume: Volume, path: PathLike, dtype: DTypeLike = np.float32) -> Path:
    """Write ``volume`` as ``dtype`` voxels to a NIfTI, NRRD or MetaImage file (chosen by extension).

    The write is atomic: the data goes to a hidden temporary file in the same folder, which then
    replaces ``path`` in one step, so a failed or interrupted write leaves any earlier file untouched
    and no partial file behind. Floats written as integers are rounded and clipped to the type's range.
    A 4D ``[t, k, j, i]`` volume is written as a 4D image (use NIfTI for other tools to read it).
    Returns the path written. To write several files all or none, use :func:`volume_writer` with
    :func:`DeepDenoiseLib.core.atomic_write.write_files`.
    """
    return write_files([volume_writer(volume, path, dtype)])[0]


def volume_writer(volume: Volume, path: PathLike, dtype: DTypeLike = np.float32) -> tuple[Path, FileWriter]:
    """``path`` (checked: a supported extension in an existing folder) and a writer that puts
    ``volume`` in the file it is given, for :func:`DeepDenoiseLib.core.atomic_write.write_files`."""
    path = Path(path).expanduser()
    extension = _extension(path, WRITE_EXTENSIONS, "write")
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist; create it first", str(path.parent))
    if not is_orthonormal(volume.direction):  # ITK would make the axes orthogonal, moving every voxel
        check_grid_writable(volume, [path])
        array = _checked_array(volume, dtype)

        def write_sheared(target: Path) -> None:
            write_sheared_nifti(volume, target, array, compress=extension != ".nii")

        return path, write_sheared
    image = _volume_to_image(volume, dtype)

    def write(target: Path) -> None:
        _write_image(image, target, compress=extension != ".nii")

    return path, write


def _write_image(image: sitk.Image, target: Path, compress: bool) -> None:
    sitk.WriteImage(image, str(target), compress)


def _extension(path: Path, allowed: tuple[str, ...], action: str) -> str:
    """The longest allowed extension ``path`` ends with, case-insensitively; else an InputError."""
    name = path.name.lower()
    for extension in sorted(allowed, key=len, reverse=True):
        if name.endswith(extension):
            return extension
    folder = " or a folder holding a DICOM series" if action == "read" else ""
    raise InputError(f"cannot {action} '{path.name}': unsupported file type; use one of {', '.join(allowed)}{folder}")


def _shape_kji(size: tuple[int, ...]) -> tuple[int, ...]:
    """SimpleITK's size (x, y, z[, t]) as an array shape ``[k, j, i]`` or ``[t, k, j, i]`` (a 2D
    image is one slice; a 4D image of one frame is 3D)."""
    shape = tuple(int(n) for n in reversed(size))
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 4 and shape[0] == 1:
        return shape[1:]
    return shape


def _file_reader(path: Path, extension: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_IMAGE_IOS[EXTENSION_FORMATS[extension]])
    return reader


def _read_file(path: Path, extension: str, allow_4d: bool, metadata: dict[str, Any]) -> sitk.Image:
    check_content(path, extension)
    reader = _file_reader(path, extension)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        if _is_sheared_refusal(extension, error):
            raise _ShearedGrid from error
        raise _read_error(path, extension, error) from error
    size = reader.GetSize()
    if len(size) == 4 and size[3] > 1 and not allow_4d:
        raise InputError(
            f"'{path.name}' is a 4D series of {size[3]} volumes of {size[0]} x {size[1]} x {size[2]} "
            "voxels where one 3D volume was expected; read it with allow_4d=True and denoise it with "
            "denoise_series (the command line does both)"
        )
    check_voxel_count(_shape_kji(size), what=f"'{path.name}'")
    format_name = EXTENSION_FORMATS[extension]
    if format_name == "NIfTI":
        metadata["warnings"] = check_nifti_data(path)
    elif format_name == "MetaImage":
        check_metaimage_data(path)
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise _read_error(path, extension, error) from error


class _ShearedGrid(Exception):
    """ITK refused a NIfTI header whose axes are not at right angles (core/sheared_nifti.py)."""


def _is_sheared_refusal(extension: str, error: RuntimeError) -> bool:
    """Whether ITK's ``error`` on a file of ``extension`` is its refusal of a sheared NIfTI grid."""
    return EXTENSION_FORMATS[extension] == "NIfTI" and "orthonormal" in str(error)


def _read_error(path: Path, extension: str, error: RuntimeError) -> InputError:
    """SimpleITK's refusal, in one line that names the file and its format."""
    return InputError(f"could not read '{path}' as a {EXTENSION_FORMATS[extension]} file (damaged or truncated?): {_short_message(error)}")


def _choose_dicom_series(folder: Path) -> tuple[str, dict[str, list[str]], list[str]]:
    """The series with the most files in ``folder``: (its UID, every series' file names by UID,
    a warning saying which was chosen and how to choose another when there are several)."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputError(
            f"the folder '{folder}' holds no DICOM series; choose the folder that contains the DICOM "
            f"files of one series, or a file of type {', '.join(READ_EXTENSIONS)}"
        )
    files = {uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in series_ids}
    chosen = max(sorted(files), key=lambda uid: len(files[uid]))
    warnings = []
    if len(files) > 1:
        others = ", ".join(f"{uid} ({len(names)} files)" for uid, names in sorted(files.items()) if uid != chosen)
        warnings.append(
            f"the folder '{folder.name}' holds {len(files)} DICOM series; read the one with the most files, "
            f"series UID {chosen} ({len(files[chosen])} files). The others: {others}. To denoise another, "
            "put its files in a folder of their own and give that folder"
        )
    return chosen, files, warnings


def _dicom_shape(files: list[str]) -> tuple[int, ...]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(f"could not read the DICOM file '{files[0]}': {_short_message(error)}") from error
    size = tuple(int(n) for n in reader.GetSize())
    frames = size[2] if len(size) > 2 else 1
    return (len(files) * frames, size[1], size[0])


def _read_dicom_series(folder: Path, metadata: dict[str, Any]) -> sitk.Image:
    """Read the DICOM series in ``folder`` with the most files, recording the choice in ``metadata``."""
    chosen, all_files, warnings = _choose_dicom_series(folder)
    names = all_files[chosen]
    metadata["dicom_series_uid"] = chosen
    metadata["dicom_file_count"] = len(names)
    metadata["dicom_other_series"] = {uid: len(files) for uid, files in sorted(all_files.items()) if uid != chosen}
    metadata["warnings"] = warnings
    check_voxel_count(_dicom_shape(names), what=f"the DICOM series in '{folder.name}'")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"could not read the DICOM series in '{folder}': {_short_message(error)}") from error
    _check_dicom_slices(folder, reader, image, all_files[chosen], all_files)
    return image


def _check_dicom_slices(
    folder: Path, reader: sitk.ImageSeriesReader, image: sitk.Image, names: list[str], series_files: dict[str, list[str]]
) -> None:
    """Refuses a series whose slices are missing or unevenly spaced (ITK only warns, and stacks the
    slices it has as if they were evenly spaced), naming the files in the folder it could not read."""
    if len(names) < 3 or image.GetDimension() != 3:
        return
    normal = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)[:, 2]
    positions = []
    for index in range(len(names)):
        try:
            position = [float(v) for v in reader.GetMetaData(index, "0020|0032").split("\\")]
        except (RuntimeError, ValueError):
            return  # no positions to judge by
        if len(position) != 3:
            return
        positions.append(float(np.dot(position, normal)))
    steps = np.abs(np.diff(np.sort(positions)))
    usual = float(np.median(steps))
    if usual <= 0:
        raise InputError(
            f"the DICOM series in '{folder}' has several slices at one position; it may mix several "
            "acquisitions: put the files of one acquisition in a folder of their own"
        )
    worst = int(np.argmax(np.abs(steps - usual)))
    if abs(steps[worst] - usual) > DICOM_SPACING_TOLERANCE * usual:
        unread = _unreadable_dicom_files(folder, series_files)
        named = f"; files in the folder that could not be read: {', '.join(unread[:5])}" if unread else ""
        raise InputError(
            f"the DICOM series in '{folder}' has missing or unevenly spaced slices: slices {worst + 1} and "
            f"{worst + 2} (by position) are {steps[worst]:.3g} mm apart where the others are {usual:.3g} mm{named}. "
            "Export the series again, or convert it to NIfTI or NRRD with a tool that resamples it"
        )


def _unreadable_dicom_files(folder: Path, series_files: dict[str, list[str]]) -> list[str]:
    """Files in ``folder`` that look like DICOM (the 'DICM' marker) but belong to no series GDCM read."""
    known = {Path(name).name for names in series_files.values() for name in names}
    unread = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name not in known:
            try:
                with open(path, "rb") as stream:
                    if stream.read(132)[128:132] == b"DICM":
                        unread.append(path.name)
            except OSError:
                unread.append(path.name)
    return unread


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


def _checked_array(volume: Volume, dtype: DTypeLike) -> np.ndarray:
    """``volume``'s voxels as ``dtype``, once it is known to be writable (scalar, 3D or 4D)."""
    if int(volume.metadata.get("components", 1)) > 1:
        raise InputError("RGB/vector volumes cannot be written; DeepDenoise writes scalar volumes only")
    if volume.array.ndim not in (3, 4):
        raise InputError(f"can write 3D [k, j, i] or 4D [t, k, j, i] volumes; got shape {volume.array.shape}")
    return _cast(volume.array, np.dtype(dtype))


def _volume_to_image(volume: Volume, dtype: DTypeLike) -> sitk.Image:
    array = _checked_array(volume, dtype)
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

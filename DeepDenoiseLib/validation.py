"""Input checks that refuse volumes the denoiser cannot or should not process, with advice on what to do.

Every refusal raises :class:`InputError`, so the CLI and the Slicer module can show its message as is.
A constant volume is not refused: :func:`check_volume` flags it and the pipeline returns it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from DeepDenoiseLib.volume import Volume

#: An integer volume with at most this many distinct values looks like a label map (segmentation).
LABEL_MAP_MAX_VALUES = 64

#: The default size limit: a 512^3 volume already needs minutes per epoch on a CPU.
DEFAULT_MAX_VOXELS = 512**3

#: The default size limit of a whole 4D series (each frame also obeys DEFAULT_MAX_VOXELS): 2 GiB as
#: float32, of which training keeps a normalised copy, and prediction a denoised one.
DEFAULT_MAX_SERIES_VOXELS = 2**29

# How many voxels the label-map heuristic looks at before confirming on the whole volume.
_LABEL_SAMPLE_SIZE = 1 << 20


class InputError(ValueError):
    """Bad input (file, array or geometry); the message says what was wrong and what to do instead."""


@dataclass
class VolumeCheck:
    """What :func:`check_volume` found in a volume it accepted."""

    is_constant: bool
    warnings: list[str] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    dtype: str = ""
    min_value: float = 0.0
    max_value: float = 0.0
    #: True for an integer volume with few distinct values (only accepted with ``allow_label_map``).
    looks_like_label_map: bool = False


def check_volume(
    array: np.ndarray,
    allow_label_map: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    is_vector: bool = False,
) -> VolumeCheck:
    """Refuse arrays the denoiser cannot handle (raises :class:`InputError`) and describe the rest.

    ``array`` must be a 3D ``[k, j, i]`` scalar volume. ``is_vector`` says its last axis holds colour
    or vector components (as :func:`DeepDenoiseLib.volume_io.read_volume` reads RGB images), which
    are refused with a message about that rather than about the number of dimensions.
    """
    array = np.asarray(array)
    if is_vector:
        raise InputError(
            f"RGB/vector images are not supported ({array.shape[-1]} components per voxel); "
            "convert it to a scalar volume first (e.g. to grayscale or by extracting one component)"
        )
    _check_dtype(array.dtype)
    _check_dimensions(array.shape)
    if array.size > max_voxels:
        raise InputError(
            f"the volume is too large: {array.size:,} voxels ({_shape_text(array.shape)}), more than the "
            f"limit of {max_voxels:,}; crop it to the region of interest (e.g. with Slicer's Crop Volume "
            "module) or resample it to a coarser grid first"
        )
    low, high = _finite_range(array)
    check = VolumeCheck(
        is_constant=bool(low == high),
        shape=tuple(int(n) for n in array.shape),
        dtype=str(array.dtype),
        min_value=low,
        max_value=high,
    )
    if check.is_constant:
        what = "all zero" if low == 0 else f"constant (every voxel is {low:g})"
        check.warnings.append(f"the volume is {what}: there is no noise to remove, so it is returned unchanged")
        return check
    if np.issubdtype(array.dtype, np.integer):
        distinct = _count_distinct_up_to(array, LABEL_MAP_MAX_VALUES)
        if distinct is not None:
            message = f"the volume looks like a label map ({distinct} distinct integer values)"
            if not allow_label_map:
                raise InputError(
                    f"{message}; denoising a segmentation would blur its labels. Pass allow_label_map "
                    "(--force on the command line) to denoise it anyway"
                )
            check.looks_like_label_map = True
            check.warnings.append(f"{message}; denoising it anyway as asked")
    return check


def check_volume_object(
    volume: Volume,
    allow_label_map: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> VolumeCheck:
    """:func:`check_volume` on a :class:`Volume`: also refuses vector images (``metadata["components"]``
    above 1, as set by ``read_volume``) and geometry that would place voxels nowhere."""
    components = int(volume.metadata.get("components", 1))
    if components > 1:
        raise InputError(
            f"RGB/vector images are not supported ({components} components per voxel); "
            "convert it to a scalar volume first (e.g. to grayscale or by extracting one component)"
        )
    check = check_volume(volume.array, allow_label_map=allow_label_map, max_voxels=max_voxels)
    _check_geometry(volume)
    return check


def check_series_object(
    volume: Volume,
    allow_label_map: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    max_series_voxels: int = DEFAULT_MAX_SERIES_VOXELS,
) -> VolumeCheck:
    """:func:`check_volume_object` for a 4D series ``[t, k, j, i]`` whose frames share one grid: each
    frame within ``max_voxels``, the series within ``max_series_voxels``, and the content checks
    (NaN, label maps, constant) over all frames at once."""
    array = np.asarray(volume.array)
    components = int(volume.metadata.get("components", 1))
    if components > 1:
        raise InputError(
            f"RGB/vector series are not supported ({components} components per voxel); "
            "convert it to a scalar series first (e.g. to grayscale or by extracting one component)"
        )
    if array.ndim != 4:
        raise InputError(
            f"a series is a 4D array [t, k, j, i]; got {array.ndim} dimensions ({_shape_text(array.shape)}); "
            "denoise a single 3D volume with denoise_volume"
        )
    frame_voxels = int(np.prod(array.shape[1:]))
    if frame_voxels > max_voxels:
        raise InputError(
            f"each frame of the series is too large: {frame_voxels:,} voxels ({_shape_text(array.shape[1:])}), "
            f"more than the limit of {max_voxels:,}; crop or resample the series first"
        )
    if array.size > max_series_voxels:
        raise InputError(
            f"the series is too large: {array.shape[0]} frames of {frame_voxels:,} voxels, {array.size:,} in all, "
            f"more than the limit of {max_series_voxels:,}; denoise it in parts (a range of frames at a time) "
            "or crop it to the region of interest"
        )
    # The frames stacked along k: one 3D array for the content checks, without a copy.
    stacked = array.reshape(-1, *array.shape[2:])
    check = check_volume(stacked, allow_label_map=allow_label_map, max_voxels=max(stacked.size, 1))
    check.shape = tuple(int(n) for n in array.shape)
    _check_geometry(volume)
    return check


def _check_geometry(volume: Volume) -> None:
    """Refuses geometry that would place voxels nowhere."""
    if not all(np.isfinite(s) and s > 0 for s in volume.spacing):
        raise InputError(f"the voxel spacing {volume.spacing} must be finite and positive; fix the image header")
    if not all(np.isfinite(o) for o in volume.origin):
        raise InputError(f"the origin {volume.origin} is not finite; fix the image header")
    if not np.all(np.isfinite(volume.direction)) or abs(np.linalg.det(volume.direction)) < 1e-6:
        raise InputError("the direction matrix is not finite or is singular; fix the image header")


def _check_dtype(dtype: np.dtype) -> None:
    if np.issubdtype(dtype, np.complexfloating):
        raise InputError("complex-valued volumes are not supported; take the magnitude (e.g. np.abs) first")
    if dtype == np.bool_:
        raise InputError("boolean volumes are masks, not images; there is nothing to denoise")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InputError(f"voxel type {dtype} is not numeric; convert the volume to integers or floats")


def _check_dimensions(shape: tuple[int, ...]) -> None:
    if len(shape) == 2:
        raise InputError(
            f"got a 2D image ({_shape_text(shape)}); pass a single slice as a 3D volume with one slice "
            "(e.g. array[np.newaxis])"
        )
    if len(shape) == 4:
        hint = ""
        if shape[-1] in (3, 4):
            hint = (
                f" (if the last axis of size {shape[-1]} holds colour channels, this is an RGB/vector "
                "image, which is not supported either: convert it to grayscale)"
            )
        raise InputError(
            f"got a 4D array ({_shape_text(shape)}) where one 3D volume was expected; denoise a series "
            f"[t, k, j, i] with denoise_series, which trains one model on all its frames{hint}"
        )
    if len(shape) != 3:
        raise InputError(f"expected a 3D volume [k, j, i]; got {len(shape)} dimensions ({_shape_text(shape)})")
    if min(shape) == 0:
        raise InputError(f"the volume is empty ({_shape_text(shape)}); check that the right file was loaded")


def _finite_range(array: np.ndarray) -> tuple[float, float]:
    """The value range; NaN and inf are refused with a count (counted only when min/max show them)."""
    low, high = array.min(), array.max()
    if np.issubdtype(array.dtype, np.floating) and not (np.isfinite(low) and np.isfinite(high)):
        nan = int(np.count_nonzero(np.isnan(array)))
        inf = int(np.count_nonzero(np.isinf(array)))
        parts = [f"{n:,} {what}" for n, what in ((nan, "NaN"), (inf, "infinite")) if n]
        raise InputError(
            f"the volume holds {' and '.join(parts)} voxel value(s) out of {array.size:,}; "
            "fill them with finite values first (e.g. np.nan_to_num or the background value)"
        )
    return float(low), float(high)


def _count_distinct_up_to(array: np.ndarray, limit: int) -> Optional[int]:
    """The number of distinct values if it is at most ``limit``, else None.

    A strided subsample settles most volumes at once (more than ``limit`` values there means more in
    the whole); otherwise the whole volume is matched against the sample's values, and only the few
    voxels outside them are sorted.
    """
    flat = array.reshape(-1)
    step = max(1, flat.size // _LABEL_SAMPLE_SIZE)
    sample_values = np.unique(flat[::step])
    if sample_values.size > limit:
        return None
    if step == 1:
        return int(sample_values.size)
    others = flat[~np.isin(flat, sample_values)]
    if others.size == 0:
        return int(sample_values.size)
    distinct = int(sample_values.size) + int(np.unique(others).size)
    return distinct if distinct <= limit else None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "shape " + " x ".join(str(n) for n in shape)

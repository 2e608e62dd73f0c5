"""Input checks that refuse volumes the denoiser cannot or should not process, with advice on what to do.

Every refusal raises :class:`InputError`, so the CLI and the Slicer module can show its message as is.
A constant volume is not refused: :func:`check_volume` flags it and the pipeline returns it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from DeepDenoiseLib.core.volume import Volume

#: An integer volume with at most this many distinct values looks like a label map (segmentation).
LABEL_MAP_MAX_VALUES = 64

#: The default size limit: a 512^3 volume already needs minutes per epoch on a CPU.
DEFAULT_MAX_VOXELS = 512**3

#: The default size limit of a whole 4D series (each frame also obeys DEFAULT_MAX_VOXELS): 2 GiB as
#: float32, of which training keeps a normalised copy, and prediction a denoised one.
DEFAULT_MAX_SERIES_VOXELS = 2**29

# How many voxels the label-map heuristic looks at before confirming on the whole volume.
_LABEL_SAMPLE_SIZE = 1 << 20


#: Under the rician and poisson noise models, more than this share of voxels further below 0 than
#: noise reaches means the volume holds negative signal (a signed image such as CT); fewer
#: (interpolation overshoot, a padding value) are taken for noise, with a warning.
NEGATIVE_SHARE_LIMIT = 0.01

#: The noise models that assume non-negative signal, and the setting to use for signed images.
NON_NEGATIVE_NOISE_MODELS = ("rician", "poisson", "speckle")
#: How far below 0 (in noise sigma) noise takes a voxel of zero signal, at most, in practice.
NOISE_FLOOR_SIGMAS = 4.0


class InputError(ValueError):
    """Bad input (file, array or geometry); the message says what was wrong and what to do instead."""


class ResultError(RuntimeError):
    """A run produced a result that must not be returned (constant where the input was not, or not
    finite); the message says what happened and what to try."""


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


#: What a refused label map is told to do, where the caller can denoise it anyway.
LABEL_MAP_FORCE_ADVICE = (
    "denoising a segmentation would blur its labels. Pass allow_label_map (--force on the command line) to denoise it anyway"
)
#: What super-resolution (which has no such option) tells a refused label map to do instead.
SUPERRES_LABEL_MAP_ADVICE = (
    "super-resolution would blur its labels; make a label map finer by nearest-neighbour resampling "
    "instead (e.g. Slicer's Resample Scalar Volume module)"
)


def check_volume(
    array: np.ndarray,
    allow_label_map: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    is_vector: bool = False,
    label_map_advice: str = LABEL_MAP_FORCE_ADVICE,
) -> VolumeCheck:
    """Refuse arrays the denoiser cannot handle (raises :class:`InputError`) and describe the rest.

    ``array`` must be a 3D ``[k, j, i]`` scalar volume. ``is_vector`` says its last axis holds colour
    or vector components (as :func:`DeepDenoiseLib.core.volume_io.read_volume` reads RGB images), which
    are refused with a message about that rather than about the number of dimensions.
    ``label_map_advice`` follows the refusal of an integer volume that looks like a label map.
    """
    array = np.asarray(array)
    if is_vector:
        raise InputError(
            f"RGB/vector images are not supported ({array.shape[-1]} components per voxel); "
            "convert it to a scalar volume first (e.g. to grayscale or by extracting one component)"
        )
    _check_dtype(array.dtype)
    _check_dimensions(array.shape)
    check_voxel_count(array.shape, max_voxels=max_voxels)
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
                raise InputError(f"{message}; {label_map_advice}")
            check.looks_like_label_map = True
            check.warnings.append(f"{message}; denoising it anyway as asked")
    return check


def check_volume_object(
    volume: Volume,
    allow_label_map: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    label_map_advice: str = LABEL_MAP_FORCE_ADVICE,
) -> VolumeCheck:
    """:func:`check_volume` on a :class:`Volume`: also refuses vector images (``metadata["components"]``
    above 1, as set by ``read_volume``) and geometry that would place voxels nowhere."""
    components = int(volume.metadata.get("components", 1))
    if components > 1:
        raise InputError(
            f"RGB/vector images are not supported ({components} components per voxel); "
            "convert it to a scalar volume first (e.g. to grayscale or by extracting one component)"
        )
    check = check_volume(volume.array, allow_label_map=allow_label_map, max_voxels=max_voxels, label_map_advice=label_map_advice)
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
    check_voxel_count(array.shape, max_voxels=max_voxels, max_series_voxels=max_series_voxels)
    # The frames stacked along k: one 3D array for the content checks, without a copy.
    stacked = array.reshape(-1, *array.shape[2:])
    check = check_volume(stacked, allow_label_map=allow_label_map, max_voxels=max(stacked.size, 1))
    check.shape = tuple(int(n) for n in array.shape)
    _check_geometry(volume)
    return check


def check_voxel_count(
    shape: Sequence[int],
    max_voxels: int = DEFAULT_MAX_VOXELS,
    max_series_voxels: int = DEFAULT_MAX_SERIES_VOXELS,
    what: str = "the volume",
) -> None:
    """Refuses a volume ``[k, j, i]`` over ``max_voxels``, or a series ``[t, k, j, i]`` whose frames are
    over ``max_voxels`` or whose whole is over ``max_series_voxels``: from an array, or from a file's
    header before its voxels are read (volume_io.py)."""
    shape = tuple(int(n) for n in shape)
    frame = shape[-3:] if len(shape) == 4 else shape
    frame_voxels = int(np.prod(frame, dtype=np.int64))
    if len(shape) == 4:
        if frame_voxels > max_voxels:
            raise InputError(
                f"each frame of {what} is too large: {frame_voxels:,} voxels ({_shape_text(frame)}), "
                f"more than the limit of {max_voxels:,}; crop or resample the series first"
            )
        total = int(np.prod(shape, dtype=np.int64))
        if total > max_series_voxels:
            raise InputError(
                f"{_capital(what)} is too large a series: {shape[0]} frames of {frame_voxels:,} voxels, {total:,} in "
                f"all, more than the limit of {max_series_voxels:,}; denoise it in parts (a range of frames at "
                "a time) or crop it to the region of interest"
            )
    elif frame_voxels > max_voxels:
        raise InputError(
            f"{_capital(what)} is too large: {frame_voxels:,} voxels ({_shape_text(frame)}), more than the "
            f"limit of {max_voxels:,}; crop it to the region of interest (e.g. with Slicer's Crop Volume "
            "module) or resample it to a coarser grid first"
        )


def check_superres_output_size(shape: Sequence[int], factor: int, max_voxels: int = DEFAULT_MAX_VOXELS) -> None:
    """Refuses a super-resolution whose result (``shape`` made ``factor`` times finer along one axis)
    would exceed ``max_voxels``; from an array or a file's header."""
    output_voxels = int(np.prod(tuple(shape), dtype=np.int64)) * int(factor)
    if output_voxels > max_voxels:
        raise InputError(
            f"the result would have {output_voxels:,} voxels, more than the limit of {max_voxels:,}; "
            "crop the volume to the region of interest first"
        )


def check_noise_model_intensities(array: np.ndarray, noise_model: str, noise_sigma: float = 0.0) -> list[str]:
    """Refuses intensities that ``noise_model`` cannot represent, naming the model to use instead;
    returns warnings about negative voxels it takes for noise.

    ``rician`` (magnitude MRI) and ``poisson`` (photon counts) describe non-negative signal. Noise
    can bring a voxel of zero signal a little below 0 (``noise_sigma``: the Gaussian part of the
    noise), but hardly ever more than :data:`NOISE_FLOOR_SIGMAS` sigma: a volume with more than
    :data:`NEGATIVE_SHARE_LIMIT` of its voxels below that holds negative signal, such as CT in
    Hounsfield units, which these models would turn into 0, and is refused. Fewer, and negative
    voxels within the noise, are taken for noise at zero signal, with a warning. ``speckle``
    multiplies a non-negative signal, so it refuses any negative voxel. Other models accept every
    finite value.
    """
    if noise_model not in NON_NEGATIVE_NOISE_MODELS:
        return []
    array = np.asarray(array)
    negative = int(np.count_nonzero(array < 0))
    if negative == 0:
        return []
    floor = 0.0 if noise_model == "speckle" else -NOISE_FLOOR_SIGMAS * max(float(noise_sigma), 0.0)
    below = int(np.count_nonzero(array < floor)) if floor < 0 else negative
    lowest = float(array.min())
    what = {
        "rician": "the rician noise model (magnitude MRI) describes non-negative intensities",
        "poisson": "the poisson noise model (photon counts) describes non-negative signal",
        "speckle": "the speckle noise model (ultrasound) multiplies a non-negative signal",
    }[noise_model]
    if noise_model == "speckle" or below > NEGATIVE_SHARE_LIMIT * array.size:
        limit = "below 0" if floor == 0 else f"below {floor:.4g} ({NOISE_FLOOR_SIGMAS:g} noise sigma under 0, lower than noise reaches)"
        raise InputError(
            f"the volume has {below:,} of its {array.size:,} voxels ({100.0 * below / array.size:.3g} %) {limit}, "
            f"down to {lowest:.4g}: {what}, so it cannot represent them (they would come out as 0 or near it). "
            "For CT in Hounsfield units or any other signed image use the gaussian noise model "
            "(--noise-model gaussian; the CT or generic preset in Slicer)"
        )
    return [
        (
            f"{negative:,} voxels ({100.0 * negative / array.size:.3g} %) are negative, down to {lowest:.4g}; {what}, "
            "so they are taken for noise around zero signal and come out at 0 or above (use --noise-model "
            "gaussian if the noise is additive and the negative values are real)"
        )
    ]


def check_result(input_array: np.ndarray, result_array: np.ndarray, what: str = "the result") -> None:
    """Refuses a result (raises :class:`ResultError`) that holds NaN or infinite values, or that is
    constant (all zero, say) where the input is not; for a series ``[t, k, j, i]``, frame by frame.
    No denoiser output is exactly constant unless something broke (a network that did not train, a
    transform that clipped everything), so this never triggers on a result worth keeping."""
    result = np.asarray(result_array)
    if np.issubdtype(result.dtype, np.floating) and not np.all(np.isfinite(result)):
        count = int(result.size - np.count_nonzero(np.isfinite(result)))
        raise ResultError(
            f"{what} holds {count:,} NaN or infinite value(s), so it was not written; try again with "
            "another --seed, a lower --learning-rate, or more training (--budget-minutes, --min-steps)"
        )
    source = np.asarray(input_array)
    frames = list(zip(source, result)) if result.ndim == 4 and source.shape == result.shape else [(source, result)]
    for index, (before, after) in enumerate(frames):
        if after.size and after.min() == after.max() and before.min() != before.max():
            frame = f" (frame {index + 1} of {len(frames)})" if len(frames) > 1 else ""
            value = float(after.flat[0])
            raise ResultError(
                f"{what}{frame} is constant (every voxel {value:g}) although the input is not, so it was not "
                "written. The network is far from trained (too few steps: raise --min-steps or "
                "--budget-minutes), or, if the input is noise with no signal above it, there is nothing "
                "to denoise"
            )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


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
            f"got a 2D image ({_shape_text(shape)}); pass a single slice as a 3D volume with one slice (e.g. array[np.newaxis])"
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

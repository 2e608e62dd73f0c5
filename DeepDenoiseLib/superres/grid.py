"""Grids for super-resolution, and resampling along one axis that keeps the field of view.

A volume with ``n`` voxels of spacing ``s`` along an axis covers ``n * s`` millimetres, from the outer
edge of its first voxel to the outer edge of its last. Upsampling by ``factor`` gives ``n * factor``
voxels of spacing ``s / factor`` over exactly the same extent, so the first voxel centre moves
*towards* the edge by ``(s - s / factor) / 2`` along that axis's direction; downsampling is the
inverse. Fine voxel ``m`` then sits at coarse index ``(m + 0.5) / factor - 0.5``, and coarse voxel ``i``
at fine index ``(i + 0.5) * factor - 0.5``: the centre of its block of ``factor`` fine voxels.

Both ways of degrading used to make training pairs follow that convention: ``spline`` evaluates the
cubic B-spline through the fine voxels at each block centre (point sampling, no anti-aliasing, as
``scipy.ndimage.zoom(order=3, grid_mode=True)`` does); ``area`` averages each block (a thick slice
with a box-shaped profile). Upsampling is always the cubic spline through the coarse voxels,
mirrored at the ends.

Axes are named by the volume's voxel axes (``x`` = i, ``y`` = j, ``z`` = k), not by anatomy.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume

# scipy is imported where it resamples: the Slicer module imports this file at start-up.

#: Voxel axis names and their index in the (i, j, k) spacing and direction columns.
AXIS_IJK = {"x": 0, "y": 1, "z": 2}
#: The fewest coarse voxels along the upsampled axis a spline (and a training pair) can work with.
MIN_COARSE_VOXELS = 4


def array_axis(axis: str) -> int:
    """The ``[k, j, i]`` array axis of a voxel axis name (``z`` is array axis 0)."""
    if axis not in AXIS_IJK:
        raise InputError(f"the axis must be one of x, y, z; got {axis!r}")
    return 2 - AXIS_IJK[axis]


def coarsest_axis(spacing: tuple[float, float, float]) -> str:
    """The voxel axis with the largest spacing (``z`` when several tie): the one ``auto`` upsamples."""
    largest = max(spacing)
    for name in ("z", "y", "x"):
        if spacing[AXIS_IJK[name]] >= largest * (1.0 - 1e-6):
            return name
    raise AssertionError("unreachable")


def upsample_spline(array: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """``array`` with ``factor`` times as many voxels along ``axis`` (cubic spline, same extent)."""
    from scipy import ndimage

    zoom = [1.0] * array.ndim
    zoom[axis] = float(factor)
    upsampled = ndimage.zoom(np.asarray(array, dtype=np.float32), zoom, order=3, mode="reflect", grid_mode=True)
    return upsampled.astype(np.float32, copy=False)


def downsample(array: np.ndarray, factor: int, axis: int, method: str = "spline") -> np.ndarray:
    """``array`` with ``factor`` times fewer voxels along ``axis`` over the same extent (``spline``
    point samples at the block centres, or ``area`` block means); the length must be a multiple of
    ``factor`` (see :func:`crop_to_multiple`)."""
    length = array.shape[axis]
    if length % factor:
        raise ValueError(f"{length} voxels along axis {axis} are not a multiple of the factor {factor}")
    array = np.asarray(array, dtype=np.float32)
    if method == "area":
        shape = array.shape[:axis] + (length // factor, factor) + array.shape[axis + 1 :]
        return array.reshape(shape).mean(axis=axis + 1, dtype=np.float64).astype(np.float32)
    if method != "spline":
        raise ValueError(f"downsampling must be spline or area; got {method!r}")
    from scipy import ndimage

    zoom = [1.0] * array.ndim
    zoom[axis] = 1.0 / factor
    return ndimage.zoom(array, zoom, order=3, mode="reflect", grid_mode=True).astype(np.float32, copy=False)


def crop_to_multiple(array: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """``array`` cut at the end of ``axis`` to a whole number of blocks of ``factor`` voxels."""
    keep = array.shape[axis] - array.shape[axis] % factor
    return np.take(array, np.arange(keep), axis=axis)


def resampled_geometry(volume: Volume, factor: float, axis: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The spacing and origin of ``volume``'s grid made ``factor`` times finer along ``axis``
    (``factor`` below 1 makes it coarser), with the same field of view and directions."""
    index = AXIS_IJK[axis]
    spacing = list(volume.spacing)
    old = spacing[index]
    spacing[index] = old / factor
    shift = (spacing[index] - old) / 2.0
    origin = np.asarray(volume.origin, dtype=np.float64) + volume.direction[:, index] * shift
    return (spacing[0], spacing[1], spacing[2]), (float(origin[0]), float(origin[1]), float(origin[2]))


def on_fine_grid(volume: Volume, array: np.ndarray, factor: int, axis: str) -> Volume:
    """A volume holding ``array`` on ``volume``'s grid made ``factor`` times finer along ``axis``."""
    expected = list(volume.array.shape[-3:])
    expected[array_axis(axis)] *= factor
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"array shape {array.shape} does not match the fine grid {tuple(expected)}")
    spacing, origin = resampled_geometry(volume, factor, axis)
    return replace(volume, array=array, spacing=spacing, origin=origin, direction=volume.direction.copy(), metadata=dict(volume.metadata))


def degrade_volume(volume: Volume, factor: int, axis: str, method: str = "spline") -> Volume:
    """``volume`` made ``factor`` times coarser along ``axis`` (cut to a multiple of ``factor``
    first), on the matching coarse grid: the low-resolution counterpart used to test or benchmark."""
    along = array_axis(axis)
    cropped = crop_to_multiple(np.asarray(volume.array, dtype=np.float32), factor, along)
    if cropped.shape[along] == 0:
        raise InputError(f"the volume has fewer than {factor} voxels along {axis}; it cannot be made {factor}x coarser")
    coarse = downsample(cropped, factor, along, method)
    grid = replace(volume, array=cropped)
    spacing, origin = resampled_geometry(grid, 1.0 / factor, axis)
    return replace(volume, array=coarse, spacing=spacing, origin=origin, direction=volume.direction.copy(), metadata=dict(volume.metadata))


def field_of_view_corners(volume: Volume) -> np.ndarray:
    """The 8 outer corners of the volume's field of view in world (LPS) millimetres, ``(8, 3)``:
    voxel index -0.5 and n - 0.5 along each axis."""
    shape_ijk = np.array(volume.array.shape[-3:][::-1], dtype=np.float64)
    corners = []
    for corner in np.ndindex(2, 2, 2):
        index = np.where(np.array(corner) == 1, shape_ijk - 0.5, -0.5)
        corners.append(np.asarray(volume.origin) + volume.direction @ (index * np.asarray(volume.spacing)))
    return np.array(corners)

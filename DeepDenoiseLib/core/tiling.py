"""Tiled prediction with smooth blending, and test-time augmentation (TTA), for arrays of any rank.

A volume too large for the accelerator is cut into overlapping tiles. Border tiles are pushed
inward (:func:`tile_starts`) instead of padded, so every tile has the same shape, can be batched,
and sees only real voxels. Overlapping predictions are blended with a raised-cosine weight that
tapers only on sides shared with a neighbour (:func:`blend_window`): seams disappear, and a voxel
on the true volume border keeps its tile's value instead of being darkened.

The model itself stays outside: ``predict_fn`` maps a float32 batch ``(B, *tile)`` to an array of
the same shape (the caller wraps torch). :func:`make_tta_fn` wraps such a function so that it
averages the predictions of the flipped and rotated batch; it composes with :func:`predict_tiled`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Optional, Union, overload

import numpy as np

from .progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report

PredictFn = Callable[[np.ndarray], np.ndarray]

WEIGHT_FLOOR = 1e-3
"""Smallest blending weight along one axis: weights never reach zero, so no voxel divides by zero."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions of tiles of ``tile`` voxels covering ``[0, length)``.

    Neighbours share at least ``overlap`` voxels; the last tile is shifted back to end exactly at
    ``length`` (no padding). If ``length <= tile`` there is one tile, of the whole length.
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be positive; got length={length}, tile={tile}")
    if overlap < 0:
        raise ValueError(f"overlap must not be negative; got {overlap}")
    if length <= tile:
        return [0]
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return [i * stride for i in range(count - 1)] + [length - tile]


def _axis_weights(size: int, overlap: int, taper_low: bool, taper_high: bool) -> np.ndarray:
    """1D weight: a raised-cosine ramp over ``overlap`` voxels on each tapered side, 1 elsewhere.

    The ramp is sampled at half-voxel offsets, so the falling ramp of one tile and the rising ramp of
    its neighbour sum to exactly 1 where they overlap by ``overlap`` voxels.
    """
    weights = np.ones(size, dtype=np.float64)
    width = min(overlap, size)
    if width > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
        if taper_low:
            weights[:width] = np.minimum(weights[:width], ramp)
        if taper_high:
            weights[size - width :] = np.minimum(weights[size - width :], ramp[::-1])
    return np.maximum(weights, WEIGHT_FLOOR)


def _per_axis(value: Union[int, Sequence[int]], ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * ndim
    values = tuple(int(v) for v in value)
    if len(values) != ndim:
        raise ValueError(f"{name} has {len(values)} entries but the array has {ndim} axes")
    return values


def blend_window(
    shape: Sequence[int],
    overlap: Union[int, Sequence[int]],
    taper: Optional[Sequence[tuple[bool, bool]]] = None,
) -> np.ndarray:
    """Separable float64 blending weight for a tile of ``shape``.

    Along each axis it rises over ``overlap`` voxels with a raised cosine, is 1 in the middle and
    falls again; it never drops below :data:`WEIGHT_FLOOR` per axis. ``taper`` gives, per axis,
    whether the low and high sides taper (default: all do); :func:`predict_tiled` turns tapering off
    on sides that lie on the volume border, where no neighbour shares the voxels.
    """
    shape = tuple(int(s) for s in shape)
    overlaps = _per_axis(overlap, len(shape), "overlap")
    tapers = [(True, True)] * len(shape) if taper is None else list(taper)
    if len(tapers) != len(shape):
        raise ValueError(f"taper has {len(tapers)} entries but the shape has {len(shape)} axes")
    window = np.ones((), dtype=np.float64)
    for size, width, (low, high) in zip(shape, overlaps, tapers):
        window = np.multiply.outer(window, _axis_weights(size, width, low, high))
    return window


def predict_tiled(
    array: np.ndarray,
    predict_fn: PredictFn,
    tile_shape: Sequence[int],
    overlap: Union[int, Sequence[int]],
    batch_size: int = 1,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    stage: str = "predicting",
) -> np.ndarray:
    """Predict ``array`` (any rank) tile by tile and blend the tiles into one float32 result.

    ``predict_fn`` gets float32 batches ``(B, *tile)``; where the array is smaller than
    ``tile_shape`` along an axis the tile spans that whole axis. It returns the same shape, or
    ``(B, C, *tile)`` for ``C`` output channels (e.g. :func:`make_tta_fn` with ``return_std``), in
    which case the result is ``(C, *array.shape)``. Each voxel gets ``sum(w * pred) / sum(w)``
    accumulated in float64, so an array that fits in one tile gives exactly ``predict_fn(array)``.
    Progress is reported after each batch; ``cancel`` is checked between batches.
    """
    array = np.asarray(array)
    ndim = array.ndim
    if ndim < 1:
        raise ValueError("cannot tile a 0-dimensional array")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    requested = _per_axis(tile_shape, ndim, "tile_shape")
    if min(requested) < 1:
        raise ValueError(f"tile_shape must be positive; got {requested}")
    overlaps = _per_axis(overlap, ndim, "overlap")
    tile = tuple(min(t, n) for t, n in zip(requested, array.shape))
    starts = [tile_starts(n, t, o) for n, t, o in zip(array.shape, tile, overlaps)]

    # Weights are separable and the tiles form a grid, so the summed weight is the product of
    # per-axis sums: no weight volume needs to be stored.
    axis_sums: list[np.ndarray] = []
    for n, t, o, axis_starts in zip(array.shape, tile, overlaps, starts):
        total = np.zeros(n, dtype=np.float64)
        for i, s in enumerate(axis_starts):
            total[s : s + t] += _axis_weights(t, o, i > 0, i < len(axis_starts) - 1)
        axis_sums.append(total)

    corners = list(itertools.product(*(range(len(s)) for s in starts)))
    count = len(corners)
    window_cache: dict[tuple[tuple[bool, bool], ...], np.ndarray] = {}
    accumulator: Optional[np.ndarray] = None
    channels: Optional[int] = None
    report(progress, ProgressEvent(stage=stage, fraction=0.0, message=f"tile 0/{count}"))
    for first in range(0, count, batch_size):
        check_cancelled(cancel)
        chunk = corners[first : first + batch_size]
        regions = [tuple(slice(starts[a][i], starts[a][i] + tile[a]) for a, i in enumerate(index)) for index in chunk]
        batch = np.stack([array[region] for region in regions]).astype(np.float32, copy=False)
        prediction = np.asarray(predict_fn(batch))
        if accumulator is None:
            channels = _output_channels(prediction.shape, batch.shape)
            lead = () if channels is None else (channels,)
            accumulator = np.zeros(lead + array.shape, dtype=np.float64)
        elif _output_channels(prediction.shape, batch.shape) != channels:
            raise ValueError(f"predict_fn changed its output shape to {prediction.shape} mid-run")
        for b, (index, region) in enumerate(zip(chunk, regions)):
            # Taper only towards neighbours: never on a side lying on the volume border.
            taper = tuple((i > 0, i < len(s) - 1) for i, s in zip(index, starts))
            window = window_cache.get(taper)
            if window is None:
                window = window_cache[taper] = blend_window(tile, overlaps, taper)
            target = region if channels is None else (slice(None),) + region
            accumulator[target] += window * prediction[b]
        done = first + len(chunk)
        report(progress, ProgressEvent(stage=stage, fraction=done / count, message=f"tile {done}/{count}"))
    check_cancelled(cancel)
    assert accumulator is not None  # there is always at least one tile
    offset = 0 if channels is None else 1
    for a, total in enumerate(axis_sums):
        accumulator /= total.reshape((1,) * (offset + a) + (-1,) + (1,) * (ndim - a - 1))
    return accumulator.astype(np.float32)


def _output_channels(output: tuple[int, ...], batch: tuple[int, ...]) -> Optional[int]:
    """None for output shaped like the batch, ``C`` for ``(B, C, *tile)``; anything else is refused."""
    if output == batch:
        return None
    if len(output) == len(batch) + 1 and output[0] == batch[0] and output[2:] == batch[1:]:
        return output[1]
    raise ValueError(f"predict_fn returned shape {output} for a batch of shape {batch}")


@dataclass(frozen=True)
class TileTransform:
    """One element of the dihedral group in a plane: an optional flip of the plane's first axis,
    then ``quarter_turns`` rotations by 90 degrees (``np.rot90``).

    ``axes`` are negative (counted from the last axis), so a transform applies unchanged to a tile
    or to a batch of tiles with a leading batch axis.
    """

    quarter_turns: int
    flip: bool
    axes: tuple[int, int]

    def apply(self, array: np.ndarray) -> np.ndarray:
        if self.flip:
            array = np.flip(array, self.axes[0])
        return np.rot90(array, self.quarter_turns, self.axes)

    def invert(self, array: np.ndarray) -> np.ndarray:
        array = np.rot90(array, -self.quarter_turns, self.axes)
        return np.flip(array, self.axes[0]) if self.flip else array


def tta_transforms(ndim: int, inplane_axes: tuple[int, int] = (-2, -1), square: bool = True) -> list[TileTransform]:
    """The TTA transforms for ``ndim``-dimensional tiles acting in the plane of ``inplane_axes``.

    With ``square`` tiles these are the 8 elements of the dihedral group (4 quarter turns, each with
    and without a flip). A quarter turn of a non-square tile changes its shape, which the model may
    not accept and which would no longer match ``predict_fn``'s shape contract, so with
    ``square=False`` only the 4 shape-keeping elements are used: identity, either flip, both flips.
    """
    if ndim < 2:
        raise ValueError(f"TTA needs tiles of at least 2 axes; got {ndim}")
    axes = []
    for axis in inplane_axes:
        if not -ndim <= axis < ndim:
            raise ValueError(f"in-plane axis {axis} is out of range for {ndim}-dimensional tiles")
        axes.append(axis % ndim - ndim)
    if len(axes) != 2 or axes[0] == axes[1]:
        raise ValueError(f"inplane_axes must name two different axes; got {inplane_axes}")
    turns = (0, 1, 2, 3) if square else (0, 2)
    return [TileTransform(k, flip, (axes[0], axes[1])) for k in turns for flip in (False, True)]


@overload
def predict_with_tta(
    batch: np.ndarray, predict_fn: PredictFn, inplane_axes: tuple[int, int] = ..., return_std: Literal[False] = ...
) -> np.ndarray: ...


@overload
def predict_with_tta(
    batch: np.ndarray, predict_fn: PredictFn, inplane_axes: tuple[int, int], return_std: Literal[True]
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def predict_with_tta(
    batch: np.ndarray, predict_fn: PredictFn, inplane_axes: tuple[int, int] = ..., *, return_std: Literal[True]
) -> tuple[np.ndarray, np.ndarray]: ...


def predict_with_tta(
    batch: np.ndarray,
    predict_fn: PredictFn,
    inplane_axes: tuple[int, int] = (-2, -1),
    return_std: bool = False,
) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Average ``predict_fn`` over the TTA transforms of ``batch`` (``(B, *tile)``, float32).

    ``inplane_axes`` count the tile's axes (axis 0 is the tile's first axis, not the batch axis).
    Each prediction is transformed back before averaging. With ``return_std`` the per-voxel
    (population) standard deviation across the predictions comes too, as an uncertainty map.
    """
    batch = np.asarray(batch, dtype=np.float32)
    ndim = batch.ndim - 1
    transforms = tta_transforms(ndim, inplane_axes, square=True)
    first, second = transforms[0].axes
    if batch.shape[first] != batch.shape[second]:
        transforms = tta_transforms(ndim, inplane_axes, square=False)
    # Welford's running mean and sum of squared deviations, in float64.
    mean = np.zeros(batch.shape, dtype=np.float64)
    squares = np.zeros(batch.shape, dtype=np.float64)
    for n, transform in enumerate(transforms, start=1):
        moved = np.ascontiguousarray(transform.apply(batch))
        prediction = np.asarray(predict_fn(moved))
        if prediction.shape != moved.shape:
            raise ValueError(f"predict_fn returned shape {prediction.shape} for a batch shaped {moved.shape}")
        restored = transform.invert(prediction).astype(np.float64)
        delta = restored - mean
        mean += delta / n
        squares += delta * (restored - mean)
    result = mean.astype(np.float32)
    if not return_std:
        return result
    return result, np.sqrt(squares / len(transforms)).astype(np.float32)


def make_tta_fn(predict_fn: PredictFn, inplane_axes: tuple[int, int] = (-2, -1), return_std: bool = False) -> PredictFn:
    """A ``predict_fn`` doing TTA around ``predict_fn``, for :func:`predict_tiled`.

    With ``return_std`` it returns ``(B, 2, *tile)``: the mean then the standard deviation, which
    :func:`predict_tiled` blends into a ``(2, *shape)`` result (the blended standard deviation is the
    weighted mean of the tiles' deviations, an approximation where tiles overlap).
    """

    def tta_fn(batch: np.ndarray) -> np.ndarray:
        if return_std:
            mean, std = predict_with_tta(batch, predict_fn, inplane_axes, return_std=True)
            return np.stack([mean, std], axis=1)
        return predict_with_tta(batch, predict_fn, inplane_axes)

    return tta_fn

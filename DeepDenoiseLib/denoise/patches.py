"""Training patches drawn from one volume, or from every frame of a series: random positions, flips
and in-plane 90-degree rotations, with a slab of the volume held out for validation.

A 2D network sees a patch ``(1 + 2 * context_slices, P, P)``: the slice being denoised first, then
its neighbours above and below (mirrored at the volume's ends) as extra channels. A 3D network sees
``(1, Pz, P, P)``. Volumes smaller than a patch get a smaller patch, rounded down to what the UNet's
pooling needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

#: With learnable voxels, a patch is redrawn at most this many times before the last one is kept.
MAX_DRAWS = 20
#: Held-out patches drawn once and scored after each epoch (training keeps the weights that score best).
VALIDATION_PATCHES = 16


@dataclass
class PatchGeometry:
    """What one patch looks like: ``spatial`` is (P, P) in 2D or (Pz, P, P) in 3D."""

    spatial: tuple[int, ...]
    context_slices: int

    @property
    def channels(self) -> int:
        return 1 + 2 * self.context_slices


def fit_patch(
    requested: int,
    volume_shape: tuple[int, int, int],
    multiple: tuple[int, ...],
    spatial_dims: int,
    depth: Optional[int] = None,
    shown_shape: Optional[tuple[int, ...]] = None,
) -> tuple[int, ...]:
    """The largest patch no bigger than ``requested`` or the volume, divisible by ``multiple``.

    A volume too small for the network's pooling (``depth`` levels) is refused with a ValueError
    naming ``shown_shape`` (the volume as the user has it; default ``volume_shape``), and the depth
    that would fit, if any does."""
    extents = volume_shape[-spatial_dims:]
    patch = []
    for extent, step in zip(extents, multiple):
        size = min(requested, extent)
        size -= size % step
        if size < step and extent >= step:
            raise ValueError(
                f"training.patch_size {requested} is too small for this network: it needs at least {step} voxels; "
                "raise training.patch_size or lower model.depth"
            )
        if size < step:
            shown = "x".join(map(str, shown_shape or volume_shape))
            deepest = extent.bit_length() - 1  # floor(log2(extent)); 0 for a single voxel
            if depth is None:
                advice = "use a shallower model (smaller depth)"
            elif 1 <= deepest < depth:
                advice = f"set model.depth to {deepest} (the deepest that fits; the 'model' section of --config)"
            else:
                advice = (
                    f"it has only {extent} voxel(s) there, too few for a network of any depth: crop or resample "
                    "it less, or denoise a larger region"
                )
            raise ValueError(
                f"the volume ({shown} voxels, k x j x i) is too small for this network: every axis it works on "
                f"needs at least {step} voxels; {advice}"
            )
        patch.append(size)
    return tuple(patch)


def context_stack(volume: np.ndarray, z: int, context_slices: int) -> np.ndarray:
    """Slice ``z`` followed by its neighbours ``z-1, z+1, z-2, z+2, ...`` (mirrored at the ends)."""
    depth = volume.shape[0]
    order = [z]
    for step in range(1, context_slices + 1):
        order += [z - step, z + step]
    return volume[[_mirror(i, depth) for i in order]]


def _mirror(index: int, size: int) -> int:
    if size == 1:
        return 0
    period = 2 * (size - 1)
    index = abs(index) % period
    return period - index if index >= size else index


def oriented(volume: np.ndarray, slice_axis: int) -> np.ndarray:
    """A view of ``volume`` with ``slice_axis`` first, so its slices are cut across that axis."""
    return np.moveaxis(volume, slice_axis, 0)


def restored(array: np.ndarray, slice_axis: int) -> np.ndarray:
    """The inverse of :func:`oriented`."""
    return np.moveaxis(array, 0, slice_axis)


class PatchSampler:
    """Draws augmented training patches outside a held-out validation slab, and fixed validation
    patches inside it. The slab is the last ``validation_fraction`` of the volume's longest axis.

    A 2D network may learn from slices cut across several ``slice_axes`` (all three for a volume
    with near-isotropic voxels): three times the variety of views from the same voxels.

    ``volume`` is one ``[k, j, i]`` volume or a series ``[t, k, j, i]`` whose frames share one grid:
    patches then come from every frame, so one model learns the whole series, and the validation
    slab is the same region of every frame.

    With a ``target`` (aligned voxel for voxel with ``volume``: a second acquisition, or the clean
    truth), each patch carries the target's patch as one more, last, channel (in 2D its slice alone,
    without context), cut at the same place and flipped and rotated with it.

    With ``learnable`` (aligned too: each voxel's weight in the loss, zero where it may not learn;
    see recorruptible.py and loss_weights.py), each patch carries it the same way as its very last
    channel, and a patch is kept with the probability of that channel's mean (at most 1), so that
    steps are not spent where nothing, or little, can be learnt.
    """

    def __init__(
        self,
        volume: np.ndarray,
        geometry: PatchGeometry,
        validation_fraction: float,
        rng: np.random.Generator,
        slice_axes: tuple[int, ...] = (0,),
        target: Optional[np.ndarray] = None,
        learnable: Optional[np.ndarray] = None,
    ) -> None:
        for name, aligned in (("target", target), ("learnable", learnable)):
            if aligned is not None and aligned.shape != volume.shape:
                raise ValueError(f"the {name}'s shape {aligned.shape} differs from the volume's {volume.shape}")
        self.geometry = geometry
        self.rng = rng
        self.spatial_dims = len(geometry.spatial)
        self.slice_axes = slice_axes if self.spatial_dims == 2 else (0,)
        frames = volume[np.newaxis] if volume.ndim == 3 else volume
        spatial_shape = frames.shape[1:]
        # views are frame-major: frame 0 in each orientation, then frame 1...
        self.views = [oriented(frame, axis) for frame in frames for axis in self.slice_axes]
        # the volume axes (k, j, i) along each view's axes: the slice axis first, then the others in order
        self.view_axes = [(axis, *(a for a in range(3) if a != axis)) for _ in frames for axis in self.slice_axes]
        # the aligned volumes carried as last channels: the target, then the learnable voxels
        self.carried_views = [
            [oriented(frame, axis) for frame in (carried[np.newaxis] if carried.ndim == 3 else carried) for axis in self.slice_axes]
            for carried in (target, learnable)
            if carried is not None
        ]
        self.draws_learnable = learnable is not None
        self.channels = geometry.channels + len(self.carried_views)
        # the patch as a 3D box in a view: a 2D patch is one slice thick
        self.patch_shape: tuple[int, ...] = (1, *geometry.spatial) if self.spatial_dims == 2 else geometry.spatial
        held_axis = int(np.argmax(spatial_shape))
        # where the held-out axis lies in each view (oriented() puts the slice axis first)
        held_per_axis = [([axis] + [a for a in range(3) if a != axis]).index(held_axis) for axis in self.slice_axes]
        self.held_axes = held_per_axis * len(frames)
        length = spatial_shape[held_axis]
        needed = max(self.patch_shape[view_axis] for view_axis in held_per_axis)
        held_out = int(round(length * validation_fraction))
        if held_out:
            held_out = max(held_out, needed)
            if length - held_out < needed:
                held_out = 0
        self.train_stop = length - held_out
        self.held_out = held_out

    def _random_corner(self, view: int, region: tuple[int, int]) -> tuple[int, int, int]:
        corner = []
        for axis, (extent, size) in enumerate(zip(self.views[view].shape, self.patch_shape)):
            low, high = region if axis == self.held_axes[view] else (0, extent)
            corner.append(int(self.rng.integers(low, max(low, high - size) + 1)))
        return tuple(corner)  # type: ignore[return-value]

    def _extract(self, view: int, corner: tuple[int, int, int]) -> np.ndarray:
        shape = self.patch_shape
        z, y, x = corner
        volume = self.views[view]
        if self.spatial_dims == 3:
            patch = volume[z : z + shape[0], y : y + shape[1], x : x + shape[2]][None]
        else:
            patch = context_stack(volume, z, self.geometry.context_slices)[:, y : y + shape[1], x : x + shape[2]]
        if not self.carried_views:
            return patch
        carried = [views[view][z : z + shape[0], y : y + shape[1], x : x + shape[2]] for views in self.carried_views]
        return np.concatenate([patch] + [c if self.spatial_dims == 2 else c[None] for c in carried])

    def _random_patch(self, region: tuple[int, int]) -> tuple[np.ndarray, int]:
        for _ in range(MAX_DRAWS):
            view = int(self.rng.integers(len(self.views)))
            patch = self._extract(view, self._random_corner(view, region))
            # with learnable voxels, a patch is kept with the probability of their mean weight
            if not self.draws_learnable or self.rng.random() < float(np.mean(patch[-1])):
                break
        return patch, view

    def training_batch(self, batch_size: int) -> np.ndarray:
        """``(B, C, *spatial)`` float32 patches with random flips and in-plane rotations."""
        return self.training_batch_with_axes(batch_size)[0]

    def training_batch_with_axes(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`training_batch` and, for each patch, the volume axes (0, 1, 2: k, j, i) along its
        slice or depth axis, its rows and its columns (``(B, 3)``): correlated noise for a patch
        follows them (noise_correlation.py)."""
        patches, axes = [], []
        square = self.geometry.spatial[-1] == self.geometry.spatial[-2]
        for _ in range(batch_size):
            patch, view = self._random_patch((0, self.train_stop))
            stack, rows, columns = self.view_axes[view]
            if square:
                turns = int(self.rng.integers(4))
                patch = np.rot90(patch, k=turns, axes=(-2, -1))
                rows, columns = (columns, rows) if turns % 2 else (rows, columns)
            for axis in range(1, patch.ndim):
                if self.rng.random() < 0.5:
                    patch = np.flip(patch, axis=axis)
            patches.append(np.ascontiguousarray(patch))
            axes.append((stack, rows, columns))
        return np.stack(patches).astype(np.float32, copy=False), np.array(axes, dtype=np.int64).reshape(-1, 3)

    def validation_batch(self, count: int) -> np.ndarray:
        """Patches from the held-out slab (empty when the volume is too small to hold one out)."""
        return self.validation_batch_with_axes(count)[0]

    def validation_batch_with_axes(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`validation_batch` and each patch's volume axes, as :meth:`training_batch_with_axes`."""
        if not self.held_out:
            return np.zeros((0, self.channels, *self.geometry.spatial), dtype=np.float32), np.zeros((0, 3), dtype=np.int64)
        region = (self.train_stop, self.train_stop + self.held_out)
        drawn = [self._random_patch(region) for _ in range(count)]
        axes = np.array([self.view_axes[view] for _, view in drawn], dtype=np.int64).reshape(-1, 3)
        return np.stack([patch for patch, _ in drawn]).astype(np.float32), axes


class MixedPatchSampler:
    """Patches from several volumes (the scans a cohort's shared model learns from), each through its
    own :class:`PatchSampler`: every training patch comes from a volume drawn at random, so each scan
    is seen equally often whatever its size; the validation patches are each volume's held-out
    patches, in equal shares. ``training_batch`` and ``validation_batch`` also say which volume each
    patch came from (its index in ``samplers``), so a loss can use that volume's noise level."""

    def __init__(self, samplers: list[PatchSampler], rng: np.random.Generator) -> None:
        if not samplers:
            raise ValueError("a mixed sampler needs at least one volume")
        self.samplers = samplers
        self.rng = rng

    def training_batch(self, batch_size: int) -> PatchBatch:
        sources = self.rng.integers(len(self.samplers), size=batch_size)
        drawn = [self.samplers[int(source)].training_batch_with_axes(1) for source in sources]
        return PatchBatch(np.concatenate([patches for patches, _ in drawn]), sources, np.concatenate([axes for _, axes in drawn]))

    def validation_batch(self, count: int) -> PatchBatch:
        """``count`` held-out patches shared among the volumes (fresh training patches from a volume
        too small to hold a slab out)."""
        shares = [count // len(self.samplers) + (index < count % len(self.samplers)) for index in range(len(self.samplers))]
        patches, sources, axes = [], [], []
        for index, (sampler, share) in enumerate(zip(self.samplers, shares)):
            if share == 0:
                continue
            held, held_axes = sampler.validation_batch_with_axes(share)
            if not len(held):
                held, held_axes = sampler.training_batch_with_axes(share)
            patches.append(held)
            axes.append(held_axes)
            sources.append(np.full(share, index))
        return PatchBatch(np.concatenate(patches), np.concatenate(sources), np.concatenate(axes))


class PatchBatch(NamedTuple):
    """Patches (``(B, C, *spatial)``), the index of the volume each came from, and each one's volume
    axes along its slice or depth axis, rows and columns (``(B, 3)``)."""

    patches: np.ndarray
    sources: np.ndarray
    axes: np.ndarray

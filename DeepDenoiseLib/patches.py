"""Training patches drawn from one volume: random positions, flips and in-plane 90-degree rotations,
with a slab of the volume held out for validation.

A 2D network sees a patch ``(1 + 2 * context_slices, P, P)``: the slice being denoised first, then
its neighbours above and below (mirrored at the volume's ends) as extra channels. A 3D network sees
``(1, Pz, P, P)``. Volumes smaller than a patch get a smaller patch, rounded down to what the UNet's
pooling needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PatchGeometry:
    """What one patch looks like: ``spatial`` is (P, P) in 2D or (Pz, P, P) in 3D."""

    spatial: tuple[int, ...]
    context_slices: int

    @property
    def channels(self) -> int:
        return 1 + 2 * self.context_slices


def fit_patch(requested: int, volume_shape: tuple[int, int, int], multiple: tuple[int, ...], spatial_dims: int) -> tuple[int, ...]:
    """The largest patch no bigger than ``requested`` or the volume, divisible by ``multiple``."""
    extents = volume_shape[-spatial_dims:]
    patch = []
    for extent, step in zip(extents, multiple):
        size = min(requested, extent)
        size -= size % step
        if size < step:
            raise ValueError(
                f"the volume ({'x'.join(map(str, volume_shape))}) is too small for this network: every "
                f"axis needs at least {step} voxels; use a shallower model (smaller depth)"
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


class PatchSampler:
    """Draws augmented training patches outside a held-out validation slab, and fixed validation
    patches inside it. The slab is the last ``validation_fraction`` of the longest axis."""

    def __init__(
        self,
        volume: np.ndarray,
        geometry: PatchGeometry,
        validation_fraction: float,
        rng: np.random.Generator,
    ) -> None:
        self.volume = volume
        self.geometry = geometry
        self.rng = rng
        self.spatial_dims = len(geometry.spatial)
        full_patch = self._full_patch_shape()
        self.validation_axis = int(np.argmax(volume.shape))
        length = volume.shape[self.validation_axis]
        held_out = int(round(length * validation_fraction))
        needed = full_patch[self.validation_axis]
        if held_out and length - held_out < needed:
            held_out = 0
        if held_out and held_out < needed:
            held_out = min(needed, length - needed) if length - needed >= needed else 0
        self.train_stop = length - held_out
        self.held_out = held_out

    def _full_patch_shape(self) -> tuple[int, int, int]:
        if self.spatial_dims == 2:
            return (1, *self.geometry.spatial)  # type: ignore[return-value]
        return self.geometry.spatial  # type: ignore[return-value]

    def _random_corner(self, region: tuple[int, int]) -> tuple[int, int, int]:
        shape = self._full_patch_shape()
        corner = []
        for axis, (extent, size) in enumerate(zip(self.volume.shape, shape)):
            low, high = (region if axis == self.validation_axis else (0, extent))
            corner.append(int(self.rng.integers(low, max(low, high - size) + 1)))
        return tuple(corner)  # type: ignore[return-value]

    def _extract(self, corner: tuple[int, int, int]) -> np.ndarray:
        shape = self._full_patch_shape()
        if self.spatial_dims == 3:
            z, y, x = corner
            return self.volume[z : z + shape[0], y : y + shape[1], x : x + shape[2]][None]
        z, y, x = corner
        stack = context_stack(self.volume, z, self.geometry.context_slices)
        return stack[:, y : y + shape[1], x : x + shape[2]]

    def training_batch(self, batch_size: int) -> np.ndarray:
        """``(B, C, *spatial)`` float32 patches with random flips and in-plane rotations."""
        patches = []
        square = self.geometry.spatial[-1] == self.geometry.spatial[-2]
        for _ in range(batch_size):
            patch = self._extract(self._random_corner((0, self.train_stop)))
            if square:
                patch = np.rot90(patch, k=int(self.rng.integers(4)), axes=(-2, -1))
            for axis in range(1, patch.ndim):
                if self.rng.random() < 0.5:
                    patch = np.flip(patch, axis=axis)
            patches.append(np.ascontiguousarray(patch))
        return np.stack(patches).astype(np.float32, copy=False)

    def validation_batch(self, count: int) -> np.ndarray:
        """Patches from the held-out slab (empty when the volume is too small to hold one out)."""
        if not self.held_out:
            return np.zeros((0, self.geometry.channels, *self.geometry.spatial), dtype=np.float32)
        region = (self.train_stop, self.volume.shape[self.validation_axis])
        return np.stack([self._extract(self._random_corner(region)) for _ in range(count)]).astype(np.float32)

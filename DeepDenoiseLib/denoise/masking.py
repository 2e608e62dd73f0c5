"""Blind-spot masking for Noise2Void: which voxels to hide, and what to show the network instead.

A batch is a tensor ``(B, C, *spatial)``; only channel ``target_channel`` is the image being denoised
(the others are neighbouring slices fed as context). Hidden voxels are spread by stratified sampling
(one per grid box, so they never cluster), replaced by a random neighbour (N2V) or by the median of
their neighbourhood (N2V2), and optionally joined by a line of hidden voxels along one axis
(structN2V) to break noise that is correlated along that axis. The loss is computed only at hidden
voxels, against their original noisy values.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from DeepDenoiseLib.denoise.config import MaskingConfig

AXIS_INDEX = {"z": 0, "y": 1, "x": 2}


@dataclass
class MaskedBatch:
    """The network's input, and where and what the loss compares."""

    inputs: torch.Tensor
    batch_index: torch.Tensor
    spatial_index: tuple[torch.Tensor, ...]
    targets: torch.Tensor


def stratified_coordinates(
    batch_size: int, spatial_shape: tuple[int, ...], masked_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One random voxel per box of a regular grid whose box volume is ``1 / masked_fraction``."""
    ndim = len(spatial_shape)
    box = max(1, int(round((1.0 / masked_fraction) ** (1.0 / ndim))))
    grids = [torch.arange(0, size, box) for size in spatial_shape]
    origins = torch.stack(torch.meshgrid(*grids, indexing="ij"), dim=-1).reshape(-1, ndim)
    count = origins.shape[0]
    batch_index = torch.arange(batch_size).repeat_interleave(count)
    origins = origins.repeat(batch_size, 1)
    # boxes at the far edge may be cut by the patch border: jitter only within the part inside
    extent = torch.clamp(torch.tensor(spatial_shape) - origins, max=box)
    jitter = (torch.rand(origins.shape, generator=generator) * extent).long()
    coords = origins + torch.minimum(jitter, extent - 1)
    return batch_index, tuple(coords[:, d] for d in range(ndim))


def neighbour_offsets(ndim: int, radius: int) -> torch.Tensor:
    """All offsets within ``radius`` along every axis, the centre excluded."""
    ranges = [range(-radius, radius + 1)] * ndim
    offsets = [o for o in itertools.product(*ranges) if any(o)]
    return torch.tensor(offsets, dtype=torch.long)


def _shifted(index: tuple[torch.Tensor, ...], offset: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Index plus offset; where that leaves the patch along an axis, the offset's sign flips on that
    axis. The neighbour then still differs from the voxel along that axis, so a hidden voxel is never
    shown its own value (mirroring about the border could land on the voxel itself)."""
    shifted = []
    for axis, (position, size) in enumerate(zip(index, shape)):
        step = offset[..., axis]
        moved = position + step
        moved = torch.where((moved < 0) | (moved >= size), position - step, moved)
        shifted.append(moved.clamp(0, size - 1))
    return tuple(shifted)


def mask_batch(
    batch: torch.Tensor,
    config: MaskingConfig,
    generator: torch.Generator,
    target_channel: int = 0,
) -> MaskedBatch:
    """Hide stratified voxels of ``batch[:, target_channel]`` and return what the network sees."""
    spatial_shape = tuple(batch.shape[2:])
    ndim = len(spatial_shape)
    image = batch[:, target_channel]
    batch_index, spatial_index = stratified_coordinates(batch.shape[0], spatial_shape, config.masked_fraction, generator)
    batch_index = batch_index.to(batch.device)
    spatial_index = tuple(i.to(batch.device) for i in spatial_index)
    at_masked = (batch_index, *spatial_index)
    targets = image[at_masked].clone()
    offsets = neighbour_offsets(ndim, config.neighbourhood_radius).to(batch.device)
    if config.replacement == "median":
        neighbours = [(batch_index, *_shifted(spatial_index, offset, spatial_shape)) for offset in offsets]
        values = torch.stack([image[neighbour] for neighbour in neighbours], dim=1)
        replacement = values.median(dim=1).values
    else:
        choice = torch.randint(0, offsets.shape[0], (batch_index.shape[0],), generator=generator)
        chosen = offsets[choice.to(batch.device)]
        at_chosen = (batch_index, *_shifted(spatial_index, chosen, spatial_shape))
        replacement = image[at_chosen]
    inputs = batch.clone()
    if config.struct_axis is not None and config.struct_half_length > 0:
        _hide_struct_line(inputs, batch_index, spatial_index, config, generator, target_channel)
    at_target = (batch_index, torch.full_like(batch_index, target_channel), *spatial_index)
    inputs[at_target] = replacement
    return MaskedBatch(inputs=inputs, batch_index=batch_index, spatial_index=spatial_index, targets=targets)


def _hide_struct_line(
    inputs: torch.Tensor,
    batch_index: torch.Tensor,
    spatial_index: tuple[torch.Tensor, ...],
    config: MaskingConfig,
    generator: torch.Generator,
    target_channel: int,
) -> None:
    """structN2V: overwrite the voxels within ``struct_half_length`` of each hidden voxel along the
    chosen axis with values drawn from random places of the same patch. Along ``z`` in a 2D network
    the neighbouring slices are the context channels, so the line runs across channels."""
    spatial_shape = tuple(inputs.shape[2:])
    ndim = len(spatial_shape)
    axis_name = config.struct_axis or "x"
    count = batch_index.shape[0]
    device = inputs.device
    for step in range(1, config.struct_half_length + 1):
        for sign in (-1, 1):
            random_source = tuple(torch.randint(0, size, (count,), generator=generator).to(device) for size in spatial_shape)
            at_source = (batch_index, torch.full_like(batch_index, target_channel), *random_source)
            values = inputs[at_source]
            if ndim == 2 and axis_name == "z":
                # context_stack orders the channels z, z-1, z+1, z-2, z+2, ...
                channel = target_channel + 2 * step - (1 if sign < 0 else 0)
                if channel < inputs.shape[1]:
                    at_channel = (batch_index, torch.full_like(batch_index, channel), *spatial_index)
                    inputs[at_channel] = values
                continue
            axis = AXIS_INDEX[axis_name] - (3 - ndim)
            if axis < 0:
                raise ValueError(f"structN2V axis {axis_name!r} does not exist in a {ndim}D patch")
            offset = torch.zeros(ndim, dtype=torch.long, device=device)
            offset[axis] = sign * step
            moved = list(spatial_index)
            moved[axis] = spatial_index[axis] + sign * step
            inside = (moved[axis] >= 0) & (moved[axis] < spatial_shape[axis])
            index = (batch_index[inside], torch.full_like(batch_index[inside], target_channel), *(m[inside] for m in moved))
            inputs[index] = values[inside]


def expected_masked_count(spatial_shape: tuple[int, ...], masked_fraction: float) -> int:
    """How many voxels :func:`stratified_coordinates` hides per patch: one per grid box, partial
    boxes at the far edges included."""
    ndim = len(spatial_shape)
    box = max(1, int(round((1.0 / masked_fraction) ** (1.0 / ndim))))
    return math.prod(math.ceil(size / box) for size in spatial_shape)

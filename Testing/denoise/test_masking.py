"""Tests of blind-spot masking (DeepDenoiseLib.denoise.masking): stratified coordinates, uniform and median
replacement, structN2V line masks (including along Z) and a loss computed at masked voxels only."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from DeepDenoiseLib.denoise.config import DenoiseConfig, MaskingConfig
from DeepDenoiseLib.denoise.masking import expected_masked_count, mask_batch, neighbour_offsets, stratified_coordinates
from DeepDenoiseLib.denoise.n2v_training import _training_loss
from Testing.support.phantoms import single_thread  # noqa: F401


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def box_edge(masked_fraction: float, ndim: int) -> int:
    return max(1, int(round((1.0 / masked_fraction) ** (1.0 / ndim))))


def unique_batch(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Distinct values everywhere, so a replaced voxel can be traced to where its value came from."""
    g = generator(seed)
    values = (torch.randperm(int(np.prod(shape)), generator=g).float() + 1.0) / 1000.0
    return values.reshape(shape)


# --- stratified coordinates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch_size, shape, fraction",
    [(3, (16, 16), 1 / 16), (2, (32, 32), 1 / 64), (2, (9, 12, 12), 1 / 27), (1, (28, 28), 0.02)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_coordinate_per_grid_box(batch_size: int, shape: tuple[int, ...], fraction: float, seed: int) -> None:
    """Shapes divisible by the grid box: exactly one hidden voxel in every box of every patch."""
    box = box_edge(fraction, len(shape))
    assert all(s % box == 0 for s in shape)  # (the partial-box case is tested separately)
    batch_index, coords = stratified_coordinates(batch_size, shape, fraction, generator(seed))
    count = expected_masked_count(shape, fraction)
    assert count == int(np.prod([s // box for s in shape]))
    assert batch_index.shape[0] == batch_size * count
    for b in range(batch_size):
        chosen = batch_index == b
        assert int(chosen.sum()) == count
        points = torch.stack([c[chosen] for c in coords], dim=1)
        assert ((points >= 0) & (points < torch.tensor(shape))).all()
        boxes = {tuple(p) for p in (points // box).tolist()}
        # every box is hit, and none twice: no two hidden voxels in the same box
        assert boxes == set(itertools.product(*[range(s // box) for s in shape]))


def test_coordinates_depend_on_the_generator_and_are_not_on_a_fixed_lattice() -> None:
    _, a = stratified_coordinates(1, (32, 32), 1 / 16, generator(0))
    _, b = stratified_coordinates(1, (32, 32), 1 / 16, generator(0))
    _, c = stratified_coordinates(1, (32, 32), 1 / 16, generator(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    # the position within each box is random: all four offsets along each axis occur
    for axis in a:
        assert set((axis % 4).tolist()) == {0, 1, 2, 3}


def test_partial_boxes_at_the_edge_also_get_one_voxel() -> None:
    shape, fraction = (10, 10), 1 / 16  # 4x4 boxes: the last row and column of boxes are half outside
    for seed in range(5):
        batch_index, coords = stratified_coordinates(1, shape, fraction, generator(seed))
        assert batch_index.shape[0] == expected_masked_count(shape, fraction) == 9
        points = torch.stack(coords, dim=1)
        assert ((points >= 0) & (points < 10)).all()
        assert {tuple(p) for p in (points // 4).tolist()} == set(itertools.product(range(3), range(3)))
    # the default: 64x64 patches at 2 % use 7x7 boxes, the last ones cut to 1 voxel
    batch_index, _ = stratified_coordinates(4, (64, 64), 0.02, generator(0))
    assert batch_index.shape[0] == 4 * expected_masked_count((64, 64), 0.02) == 4 * 100


def test_neighbour_offsets_exclude_the_centre() -> None:
    offsets = neighbour_offsets(2, 2)
    assert offsets.shape == (24, 2)
    assert not (offsets == 0).all(dim=1).any()
    assert offsets.abs().max() == 2
    assert neighbour_offsets(3, 1).shape == (26, 3)


# --- replacement -----------------------------------------------------------------------------------


def neighbourhood_values(image: np.ndarray, point: tuple[int, ...], radius: int) -> np.ndarray:
    """The values at every offset within ``radius`` of ``point`` (centre excluded); an offset that
    leaves the image along an axis is taken with the opposite sign on that axis."""
    values = []
    for offset in itertools.product(range(-radius, radius + 1), repeat=image.ndim):
        if not any(offset):
            continue
        position = []
        for p, o, size in zip(point, offset, image.shape):
            position.append(p + o if 0 <= p + o < size else p - o)
        values.append(image[tuple(position)])
    return np.array(values)


def away_from_border(point: tuple[int, ...], shape: tuple[int, ...], radius: int) -> bool:
    return all(radius <= p < size - radius for p, size in zip(point, shape))


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (2, 1, 12, 12, 12)])
@pytest.mark.parametrize("radius", [1, 2])
def test_uniform_replacement_takes_a_neighbour_value_never_the_centre(shape: tuple[int, ...], radius: int) -> None:
    batch = unique_batch(shape)
    config = MaskingConfig(masked_fraction=0.06, replacement="uniform", neighbourhood_radius=radius)
    masked = mask_batch(batch, config, generator(3))
    image = batch[:, 0].numpy()
    seen = masked.inputs[:, 0].numpy()
    interior = 0
    for b, *point in zip(masked.batch_index.tolist(), *(i.tolist() for i in masked.spatial_index)):
        value = seen[(b, *point)]
        assert value in neighbourhood_values(image[b], tuple(point), radius)
        assert value != image[(b, *point)]  # all values are distinct, so no coincidence is possible
        if away_from_border(point, shape[2:], radius):
            interior += 1
    assert interior >= 5
    # the replacement is random: the masked voxels take values from many different offsets
    offsets = set()
    for b, *point in zip(masked.batch_index.tolist(), *(i.tolist() for i in masked.spatial_index)):
        if away_from_border(point, shape[2:], radius):
            source = np.argwhere(image[b] == seen[(b, *point)])[0]
            offsets.add(tuple(source - np.array(point)))
    assert len(offsets) >= min(5, interior)


@pytest.mark.parametrize("replacement", ["uniform", "median"])
def test_replacement_never_shows_a_masked_voxel_its_own_value(replacement: str) -> None:
    batch = unique_batch((32, 1, 8, 8), seed=1)
    config = MaskingConfig(masked_fraction=0.25, replacement=replacement, neighbourhood_radius=2)
    masked = mask_batch(batch, config, generator(2))
    index = (masked.batch_index, *masked.spatial_index)
    assert not (masked.inputs[:, 0][index] == batch[:, 0][index]).any()


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 1, 8, 8, 8)])
def test_median_replacement_is_the_neighbourhood_median(shape: tuple[int, ...]) -> None:
    batch = unique_batch(shape, seed=5)
    radius = 2
    config = MaskingConfig(masked_fraction=0.05, replacement="median", neighbourhood_radius=radius)
    masked = mask_batch(batch, config, generator(4))
    image = batch[:, 0].numpy()
    seen = masked.inputs[:, 0].numpy()
    for b, *point in zip(masked.batch_index.tolist(), *(i.tolist() for i in masked.spatial_index)):
        values = np.sort(neighbourhood_values(image[b], tuple(point), radius))
        # an even number of neighbours (24 or 124): torch takes the lower of the two middle values,
        # which is a real neighbour value (np.median would average the two)
        assert values.size % 2 == 0
        assert seen[(b, *point)] == values[(values.size - 1) // 2]
        assert values[values.size // 2 - 1] <= seen[(b, *point)] <= values[values.size // 2]


@pytest.mark.parametrize("replacement", ["uniform", "median"])
def test_targets_are_the_original_values_and_only_masked_voxels_change(replacement: str) -> None:
    batch = unique_batch((3, 5, 16, 16), seed=1)  # 5 channels: the image and four context slices
    config = MaskingConfig(masked_fraction=0.04, replacement=replacement)
    masked = mask_batch(batch, config, generator(2))
    index = (masked.batch_index, *masked.spatial_index)
    assert torch.equal(masked.targets, batch[:, 0][index])
    changed = masked.inputs != batch
    expected = torch.zeros_like(changed)
    expected[(masked.batch_index, torch.zeros_like(masked.batch_index), *masked.spatial_index)] = True
    assert not (changed & ~expected).any()  # nothing else changes, context channels included
    assert changed[expected].all()  # values are unique, and no voxel is shown its own value
    assert torch.equal(batch, unique_batch((3, 5, 16, 16), seed=1))  # the input batch is left untouched


# --- structN2V -------------------------------------------------------------------------------------


def line_voxels(masked, axis: int, half_length: int, spatial_shape: tuple[int, ...]) -> set:
    voxels = set()
    for b, *point in zip(masked.batch_index.tolist(), *(i.tolist() for i in masked.spatial_index)):
        for step in range(-half_length, half_length + 1):
            moved = list(point)
            moved[axis] += step
            if 0 <= moved[axis] < spatial_shape[axis]:
                voxels.add((b, *moved))
    return voxels


@pytest.mark.parametrize(
    "shape, struct_axis, axis",
    [
        ((2, 1, 8, 16, 16), "z", 0),
        ((2, 1, 8, 16, 16), "y", 1),
        ((2, 1, 8, 16, 16), "x", 2),
        ((2, 1, 16, 16), "x", 1),
        ((2, 1, 16, 16), "y", 0),
    ],
)
def test_struct_mask_hides_a_line_along_the_chosen_axis(shape: tuple[int, ...], struct_axis: str, axis: int) -> None:
    batch = unique_batch(shape, seed=7)
    half_length = 2
    config = MaskingConfig(masked_fraction=0.02, struct_axis=struct_axis, struct_half_length=half_length)
    masked = mask_batch(batch, config, generator(8))
    changed = (masked.inputs != batch)[:, 0]
    changed_voxels = {tuple(v) for v in changed.nonzero().tolist()}
    line = line_voxels(masked, axis, half_length, shape[2:])
    # only the masked voxels and their lines change, and (values being distinct) essentially all of them
    assert changed_voxels <= line
    assert len(changed_voxels) >= 0.95 * len(line)
    assert len(line) > 2 * len(masked.targets)  # the line really extends beyond the masked voxels
    # the targets are still the original values, not the line's replacements
    assert torch.equal(masked.targets, batch[:, 0][(masked.batch_index, *masked.spatial_index)])


def test_struct_mask_along_z_in_a_2d_network_overwrites_context_channels_at_the_masked_pixel() -> None:
    batch = unique_batch((2, 5, 16, 16), seed=9)  # image + context z-1, z+1, z-2, z+2
    config = MaskingConfig(masked_fraction=0.04, struct_axis="z", struct_half_length=2)
    masked = mask_batch(batch, config, generator(10))
    changed = masked.inputs != batch
    masked_pixels = torch.zeros_like(changed[:, 0])
    masked_pixels[(masked.batch_index, *masked.spatial_index)] = True
    # the image changes only at the masked pixels; context channels change only there too
    assert torch.equal(changed[:, 0], masked_pixels)
    for channel in range(1, 5):
        assert not (changed[:, channel] & ~masked_pixels).any()
    # the slice directly above (channel 1, z-1) is hidden at every masked pixel
    assert changed[:, 1][masked_pixels].all()


@pytest.mark.parametrize("half_length, hidden", [(1, (1, 2)), (2, (1, 2, 3, 4))])
def test_struct_mask_along_z_hides_context_slices_on_both_sides(half_length: int, hidden: tuple) -> None:
    batch = unique_batch((2, 5, 16, 16), seed=11)
    config = MaskingConfig(masked_fraction=0.04, struct_axis="z", struct_half_length=half_length)
    masked = mask_batch(batch, config, generator(12))
    changed = masked.inputs != batch
    index = (masked.batch_index, *masked.spatial_index)
    for channel in range(1, 5):
        share = float(changed[:, channel][index].float().mean())
        if channel in hidden:
            assert share > 0.95, f"context channel {channel} is not hidden at the masked pixels"
        else:
            assert share == 0.0


def test_struct_axis_z_without_context_channels_hides_only_the_masked_pixel() -> None:
    batch = unique_batch((1, 1, 16, 16))
    config = MaskingConfig(masked_fraction=0.04, struct_axis="z", struct_half_length=1)
    masked = mask_batch(batch, config, generator(0))
    changed = masked.inputs != batch
    assert int(changed.sum()) == masked.targets.numel()


# --- the loss sees masked voxels only --------------------------------------------------------------


class FreeOutput(nn.Module):
    """A 'network' whose output is a free parameter, so the loss's gradient shows where it looks."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.output = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output + 0.0 * x[:, :1]


@pytest.mark.parametrize("method, shape", [("n2v", (2, 3, 16, 16)), ("n2v2", (2, 1, 8, 16, 16))])
def test_training_loss_is_computed_at_masked_voxels_only(method: str, shape: tuple[int, ...]) -> None:
    config = DenoiseConfig.for_method(method, masking={"masked_fraction": 0.04})
    batch = unique_batch(shape, seed=13)
    network = FreeOutput((shape[0], 1, *shape[2:]))
    loss = _training_loss(network, batch, config, generator(21), None)
    loss.backward()
    grad = network.output.grad[:, 0]
    # the same generator state gives the same mask
    expected = mask_batch(batch, config.masking, generator(21))
    masked_voxels = torch.zeros_like(grad, dtype=torch.bool)
    masked_voxels[(expected.batch_index, *expected.spatial_index)] = True
    assert torch.equal(grad != 0, masked_voxels)
    # mean squared error against the original values: d/dp mean((p - t)^2) = 2 (p - t) / n
    n = expected.targets.numel()
    assert torch.allclose(grad[(expected.batch_index, *expected.spatial_index)], -2 * expected.targets / n)
    assert float(loss.detach()) == pytest.approx(float(torch.mean(expected.targets**2)), rel=1e-6)

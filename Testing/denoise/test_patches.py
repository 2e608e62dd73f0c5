"""Tests of training patches (DeepDenoiseLib.denoise.patches): fitting the patch to small volumes, context
stacks mirrored at the ends, random flips and in-plane rotations, the held-out validation slab and
multi-orientation sampling.

Most tests sample a 'coordinate volume' whose voxel values encode their own (k, j, i) index, so a
patch tells exactly where it was cut from and how it was flipped or rotated.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from DeepDenoiseLib.denoise.patches import PatchGeometry, PatchSampler, _mirror, context_stack, fit_patch, oriented, restored


def coordinate_volume(shape: tuple[int, int, int]) -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (k * 10000 + j * 100 + i).astype(np.float32)  # exact in float32 for shapes below 100


def decode(values: np.ndarray) -> np.ndarray:
    """``(..., 3)`` integer (k, j, i) from coordinate-volume values."""
    v = np.rint(values).astype(np.int64)
    return np.stack([v // 10000, (v // 100) % 100, v % 100], axis=-1)


def sampler(shape, spatial, context=0, fraction=0.0, seed=0, slice_axes=(0,)) -> PatchSampler:
    return PatchSampler(coordinate_volume(shape), PatchGeometry(spatial, context), fraction, np.random.default_rng(seed), slice_axes)


# --- fit_patch -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "requested, volume_shape, multiple, dims, expected",
    [
        (64, (40, 256, 256), (4, 4), 2, (64, 64)),
        (64, (24, 30, 50), (4, 4), 2, (28, 48)),  # smaller than the patch: shrinks to a multiple of 4
        (32, (24, 256, 256), (1, 4, 4), 3, (24, 32, 32)),
        (32, (10, 40, 18), (2, 4, 4), 3, (10, 32, 16)),
        (64, (5, 9, 9), (8, 8), 2, (8, 8)),
    ],
)
def test_fit_patch_adapts_to_small_volumes(requested, volume_shape, multiple, dims, expected) -> None:
    patch = fit_patch(requested, volume_shape, multiple, dims)
    assert patch == expected
    for size, extent, step in zip(patch, volume_shape[-dims:], multiple):
        assert size <= min(requested, extent) and size % step == 0


@pytest.mark.parametrize("volume_shape, dims", [((10, 3, 50), 2), ((3, 64, 64), 3), ((20, 64, 3), 2)])
def test_fit_patch_refuses_a_volume_too_small_with_a_clear_message(volume_shape, dims) -> None:
    multiple = (4, 4) if dims == 2 else (4, 4, 4)
    with pytest.raises(ValueError) as error:
        fit_patch(64, volume_shape, multiple, dims)
    message = str(error.value)
    assert "too small" in message and "x".join(map(str, volume_shape)) in message
    assert "at least 4 voxels" in message and "depth" in message


# --- context stacks --------------------------------------------------------------------------------


def test_context_stack_orders_neighbours_and_mirrors_at_the_ends() -> None:
    volume = coordinate_volume((5, 2, 2))
    slices = lambda stack: list(decode(stack[:, 0, 0])[:, 0])  # noqa: E731
    assert slices(context_stack(volume, 2, 2)) == [2, 1, 3, 0, 4]
    assert slices(context_stack(volume, 0, 2)) == [0, 1, 1, 2, 2]  # -1 -> 1, -2 -> 2
    assert slices(context_stack(volume, 4, 2)) == [4, 3, 3, 2, 2]  # 5 -> 3, 6 -> 2
    assert slices(context_stack(volume, 1, 0)) == [1]
    assert context_stack(volume, 3, 1).shape == (3, 2, 2)


def test_context_stack_of_thin_volumes() -> None:
    single = coordinate_volume((1, 3, 3))
    assert np.array_equal(context_stack(single, 0, 2), np.repeat(single, 5, axis=0))
    two = coordinate_volume((2, 1, 1))
    assert list(decode(context_stack(two, 0, 3)[:, 0, 0])[:, 0]) == [0, 1, 1, 0, 0, 1, 1]


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_mirror_always_lands_inside(size: int) -> None:
    for index in range(-3 * size, 4 * size):
        assert 0 <= _mirror(index, size) < size
    for index in range(size):
        assert _mirror(index, size) == index


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_oriented_and_restored_are_inverse(axis: int) -> None:
    volume = coordinate_volume((3, 4, 5))
    view = oriented(volume, axis)
    assert view.shape[0] == volume.shape[axis]
    assert np.array_equal(restored(view, axis), volume)
    # slice s of the view is the volume cut across `axis` at s
    assert np.all(decode(view[2])[..., axis] == 2)


# --- augmentation ----------------------------------------------------------------------------------


def patch_frame(patch: np.ndarray) -> tuple:
    """How a 2D patch of the coordinate volume is laid out: d(j, i)/d(row) and d(j, i)/d(col).
    Also checks that the patch is a rigid (flipped/rotated) copy of a block of the volume."""
    coords = decode(patch)[..., 1:]  # (rows, cols, [j, i])
    down = coords[1, 0] - coords[0, 0]
    right = coords[0, 1] - coords[0, 0]
    rows, cols = np.meshgrid(np.arange(patch.shape[0]), np.arange(patch.shape[1]), indexing="ij")
    expected = coords[0, 0] + rows[..., None] * down + cols[..., None] * right
    assert np.array_equal(coords, expected)
    assert sorted(np.abs(np.concatenate([down, right])).tolist()) == [0, 0, 1, 1]
    return tuple(down), tuple(right)


def test_square_patches_come_in_all_eight_flips_and_rotations() -> None:
    s = sampler((8, 32, 32), (16, 16))
    batch = s.training_batch(200)
    assert batch.shape == (200, 1, 16, 16) and batch.dtype == np.float32
    frames = Counter(patch_frame(patch[0]) for patch in batch)
    assert len(frames) == 8  # the dihedral group of the square
    assert min(frames.values()) >= 8  # each about 1/8 of the time


def test_non_square_patches_are_flipped_but_never_rotated() -> None:
    s = sampler((8, 32, 32), (8, 16))
    batch = s.training_batch(100)
    assert batch.shape == (100, 1, 8, 16)
    frames = {patch_frame(patch[0]) for patch in batch}
    # rows always run along j and columns along i, each either way
    assert frames == {((dj, 0), (0, di)) for dj in (1, -1) for di in (1, -1)}


def test_context_channels_follow_the_patch_augmentation() -> None:
    s = sampler((12, 24, 24), (8, 8), context=2)
    for patch in s.training_batch(40):
        coords = decode(patch)
        # in every channel each pixel shows the same (j, i): flips and rotations move all channels together
        assert np.all(coords[..., 1:] == coords[:1, ..., 1:])
        k = coords[:, 0, 0, 0]
        centre = k[0]
        assert all(np.all(coords[c, ..., 0] == k[c]) for c in range(5))
        expected = [_mirror(centre + d, 12) for d in (0, -1, 1, -2, 2)]
        assert list(k) == expected


def test_3d_patches_flip_along_z_and_rotate_in_plane() -> None:
    s = sampler((12, 16, 16), (4, 8, 8))
    batch = s.training_batch(120)
    assert batch.shape == (120, 1, 4, 8, 8)
    z_directions, frames = set(), set()
    for patch in batch:
        coords = decode(patch[0])
        dk = coords[1, 0, 0, 0] - coords[0, 0, 0, 0]
        z_directions.add(int(dk))
        assert np.all(coords[1:, ..., 0] - coords[:-1, ..., 0] == dk)  # whole slices move together
        frames.add(patch_frame(patch[0, 0]))
    assert z_directions == {1, -1}
    assert len(frames) == 8


def test_sampling_is_reproducible_for_a_seed() -> None:
    a = sampler((8, 32, 32), (16, 16), context=1, seed=5).training_batch(6)
    b = sampler((8, 32, 32), (16, 16), context=1, seed=5).training_batch(6)
    c = sampler((8, 32, 32), (16, 16), context=1, seed=6).training_batch(6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# --- the validation slab ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, spatial, context, slice_axes, held_axis",
    [
        ((20, 24, 40), (16, 16), 2, (0,), 2),  # held axis lies in the slice plane
        ((40, 16, 16), (16, 16), 2, (0,), 0),  # held axis is the slice axis: context runs along it
        ((12, 16, 48), (8, 8, 8), 0, (0,), 2),  # 3D patches
        ((24, 24, 40), (16, 16), 1, (0, 1, 2), 2),  # several orientations
    ],
)
def test_training_patches_stay_out_of_the_validation_slab(shape, spatial, context, slice_axes, held_axis) -> None:
    """The slab is the last ``validation_fraction`` of the longest axis, widened to hold one patch.
    What the sampler guarantees: the image channel of every training patch lies wholly before the
    slab and every validation patch wholly inside it; a 2D network's context channels may reach
    ``context_slices`` slices past the slab's edge when the held axis is the slice axis."""
    s = sampler(shape, spatial, context=context, fraction=0.2, slice_axes=slice_axes)
    length = shape[held_axis]
    assert s.held_out >= round(0.2 * length)
    assert s.train_stop + s.held_out == length
    # widened to hold one patch along the held axis in every orientation (a 2D patch is one slice thick
    # across its slice axis)
    full_patch = (1, *spatial) if len(spatial) == 2 else spatial
    needed = max(full_patch[([a] + [b for b in range(3) if b != a]).index(held_axis)] for a in slice_axes)
    assert s.held_out == max(round(0.2 * length), needed)

    training = decode(s.training_batch(300))
    image_channel = training[:, 0, ..., held_axis]
    assert image_channel.max() < s.train_stop
    assert image_channel.max() == s.train_stop - 1  # patches do reach the slab's edge
    assert training[..., held_axis].max() < s.train_stop + context

    validation = decode(s.validation_batch(50))
    assert validation.shape[0] == 50
    assert validation[:, 0, ..., held_axis].min() >= s.train_stop
    assert validation[:, 0, ..., held_axis].max() <= length - 1


def test_no_validation_slab_when_the_volume_cannot_spare_one() -> None:
    too_small = sampler((8, 16, 16), (16, 16), context=1, fraction=0.2)
    assert too_small.held_out == 0 and too_small.train_stop == 16
    assert too_small.validation_batch(4).shape == (0, 3, 16, 16)
    none_asked = sampler((8, 64, 64), (16, 16), fraction=0.0)
    assert none_asked.held_out == 0 and none_asked.validation_batch(4).shape == (0, 1, 16, 16)
    # training still works and uses the whole volume
    assert decode(too_small.training_batch(50))[:, 0, ..., 2].max() == 15


# --- orientations ----------------------------------------------------------------------------------


def slice_axis_of(patch: np.ndarray) -> int:
    coords = decode(patch[0])
    constant = [axis for axis in range(3) if np.all(coords[..., axis] == coords[0, 0, axis])]
    assert len(constant) == 1
    return constant[0]


def test_multi_orientation_draws_slices_across_all_three_axes() -> None:
    s = sampler((24, 28, 32), (16, 16), context=1, slice_axes=(0, 1, 2))
    counts = Counter(slice_axis_of(patch) for patch in s.training_batch(150))
    assert set(counts) == {0, 1, 2}
    assert min(counts.values()) >= 25  # about a third each
    for patch in s.training_batch(30):
        axis = slice_axis_of(patch)
        # context channels are the neighbouring slices across that same axis
        across = decode(patch[:, 0, 0])[:, axis]
        assert abs(int(across[1]) - int(across[0])) == 1 and abs(int(across[2]) - int(across[0])) == 1


def test_single_orientation_draws_axial_slices_only() -> None:
    s = sampler((24, 28, 32), (16, 16), slice_axes=(0,))
    assert {slice_axis_of(patch) for patch in s.training_batch(60)} == {0}

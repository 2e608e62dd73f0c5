"""The finer grid keeps the field of view and the orientation; resampling along one axis follows the
same convention (coarse voxel centres at the centres of their blocks of fine voxels)."""

from __future__ import annotations

import numpy as np
import pytest

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.superres.grid import (
    array_axis,
    coarsest_axis,
    crop_to_multiple,
    degrade_volume,
    downsample,
    field_of_view_corners,
    on_fine_grid,
    resampled_geometry,
    upsample_spline,
)
from Testing.support.jobs import OBLIQUE


def oblique_volume(shape=(6, 7, 8)) -> Volume:
    array = np.random.default_rng(0).random(shape).astype(np.float32)
    return Volume(array, spacing=(0.9, 1.1, 5.0), origin=(12.0, -30.0, 7.5), direction=OBLIQUE)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_the_fine_grid_keeps_field_of_view_and_directions(factor: int, axis: str) -> None:
    volume = oblique_volume()
    shape = list(volume.array.shape)
    shape[array_axis(axis)] *= factor
    fine = on_fine_grid(volume, np.zeros(shape, np.float32), factor, axis)
    np.testing.assert_allclose(field_of_view_corners(fine), field_of_view_corners(volume), atol=1e-9)
    np.testing.assert_array_equal(fine.direction, volume.direction)
    index = "xyz".index(axis)
    for i in range(3):
        expected = volume.spacing[i] / factor if i == index else volume.spacing[i]
        assert fine.spacing[i] == pytest.approx(expected)
    # The first voxel centre moved towards the edge by (s/f - s)/2 along the axis's direction.
    shift = np.asarray(fine.origin) - np.asarray(volume.origin)
    step = volume.spacing[index]
    np.testing.assert_allclose(shift, volume.direction[:, index] * (step / factor - step) / 2, atol=1e-12)
    with pytest.raises(ValueError, match="fine grid"):
        on_fine_grid(volume, np.zeros(volume.array.shape, np.float32), factor, axis)


def test_degrading_then_refining_gives_back_the_grid() -> None:
    volume = oblique_volume((8, 7, 6))
    coarse = degrade_volume(volume, 4, "z")
    assert coarse.array.shape == (2, 7, 6)
    assert coarse.spacing == pytest.approx((0.9, 1.1, 20.0))
    np.testing.assert_allclose(field_of_view_corners(coarse), field_of_view_corners(volume), atol=1e-9)
    spacing, origin = resampled_geometry(coarse, 4, "z")
    assert spacing == pytest.approx(volume.spacing)
    np.testing.assert_allclose(origin, volume.origin, atol=1e-12)


def test_coarse_voxels_sit_at_the_centre_of_their_blocks() -> None:
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32)[:, None, None], (16, 3, 3)).copy()
    np.testing.assert_allclose(downsample(ramp, 4, 0, "area")[:, 0, 0], [1.5, 5.5, 9.5, 13.5])
    # The cubic spline reproduces a ramp away from the mirrored ends.
    np.testing.assert_allclose(downsample(ramp, 4, 0, "spline")[1:3, 0, 0], [5.5, 9.5], atol=0.01)
    coarse = np.broadcast_to(np.arange(8, dtype=np.float32)[:, None, None], (8, 2, 2)).copy()
    fine = upsample_spline(coarse, 2, 0)
    assert fine.shape == (16, 2, 2)
    # Fine voxel m lies at coarse coordinate (m + 0.5) / 2 - 0.5.
    np.testing.assert_allclose(fine[4:12, 0, 0], (np.arange(4, 12) + 0.5) / 2 - 0.5, atol=0.01)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_resampling_works_along_any_axis_and_keeps_constants(axis: int) -> None:
    constant = np.full((8, 8, 8), 3.0, np.float32)
    up = upsample_spline(constant, 4, axis)
    assert up.shape[axis] == 32 and up.dtype == np.float32
    np.testing.assert_allclose(up, 3.0, atol=1e-5)
    np.testing.assert_allclose(downsample(constant, 2, axis, "spline"), 3.0, atol=1e-5)
    assert crop_to_multiple(np.zeros((10, 9, 11)), 4, axis).shape[axis] == 8


def test_resampling_refuses_lengths_that_are_not_whole_blocks_and_unknown_methods() -> None:
    with pytest.raises(ValueError, match="multiple"):
        downsample(np.zeros((10, 4, 4)), 4, 0)
    with pytest.raises(ValueError, match="spline or area"):
        downsample(np.zeros((8, 4, 4)), 4, 0, "nearest")
    with pytest.raises(InputError, match="x, y, z"):
        array_axis("w")
    with pytest.raises(InputError, match="fewer than 4"):
        degrade_volume(Volume(np.zeros((3, 4, 4), np.float32)), 4, "z")


def test_the_coarsest_axis_is_the_thickest_voxels_and_z_on_ties() -> None:
    assert coarsest_axis((0.5, 0.5, 5.0)) == "z"
    assert coarsest_axis((3.0, 0.5, 0.5)) == "x"
    assert coarsest_axis((1.0, 1.0, 1.0)) == "z"

"""Tests for the input checks: each refusal fires with a helpful message, and good volumes pass."""

from __future__ import annotations

import numpy as np
import pytest

from DeepDenoiseLib.core.validation import (
    LABEL_MAP_MAX_VALUES,
    InputError,
    check_volume,
    check_volume_object,
)
from DeepDenoiseLib.core.volume import Volume


def noisy_float(shape: tuple[int, ...] = (4, 8, 8)) -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 1.0, size=shape).astype(np.float32)


def test_float_volume_passes_with_its_range() -> None:
    array = noisy_float()
    check = check_volume(array)
    assert not check.is_constant
    assert check.warnings == []
    assert check.shape == (4, 8, 8)
    assert check.dtype == "float32"
    assert check.min_value == float(array.min())
    assert check.max_value == float(array.max())
    assert not check.looks_like_label_map


def test_nan_is_refused_with_count() -> None:
    array = noisy_float()
    array[0, 0, :3] = np.nan
    with pytest.raises(InputError, match=r"3 NaN voxel value\(s\) out of 256; fill them"):
        check_volume(array)


def test_inf_is_refused_with_count() -> None:
    array = noisy_float()
    array[1, 2, 3] = np.inf
    array[1, 2, 4] = -np.inf
    array[2, 2, 2] = np.nan
    with pytest.raises(InputError, match="1 NaN and 2 infinite voxel"):
        check_volume(array)


@pytest.mark.parametrize("shape", [(0, 8, 8), (4, 0, 8), (4, 8, 0)])
def test_empty_volume_is_refused(shape: tuple[int, int, int]) -> None:
    with pytest.raises(InputError, match="empty"):
        check_volume(np.zeros(shape, dtype=np.float32))


def test_2d_array_is_refused_with_advice() -> None:
    with pytest.raises(InputError, match=r"2D image.*3D volume with one slice"):
        check_volume(noisy_float((8, 8)))
    assert not check_volume(noisy_float((1, 8, 8))).is_constant


def test_4d_array_is_refused() -> None:
    with pytest.raises(InputError, match="4D array.*denoise_series") as info:
        check_volume(noisy_float((2, 4, 8, 8)))
    assert "RGB" not in str(info.value)


def test_4d_array_with_colour_like_last_axis_mentions_rgb() -> None:
    with pytest.raises(InputError, match=r"4D array.*RGB/vector"):
        check_volume(noisy_float((4, 8, 8, 3)))


def test_vector_flag_refuses_with_rgb_message() -> None:
    with pytest.raises(InputError, match=r"RGB/vector images are not supported \(3 components"):
        check_volume(noisy_float((4, 8, 8, 3)), is_vector=True)


@pytest.mark.parametrize("ndim", [1, 5])
def test_other_dimension_counts_are_refused(ndim: int) -> None:
    with pytest.raises(InputError, match=f"expected a 3D volume.*got {ndim} dimensions"):
        check_volume(np.ones((2,) * ndim, dtype=np.float32))


@pytest.mark.parametrize(
    ("dtype", "message"),
    [(np.complex64, "complex"), (np.bool_, "boolean"), (np.dtype("U1"), "not numeric")],
)
def test_unusable_dtypes_are_refused(dtype: np.dtype, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_volume(np.zeros((2, 3, 4), dtype=dtype))


def test_all_zero_volume_is_constant_with_warning() -> None:
    check = check_volume(np.zeros((4, 8, 8), dtype=np.int16))
    assert check.is_constant
    assert len(check.warnings) == 1
    assert "all zero" in check.warnings[0]
    assert "returned unchanged" in check.warnings[0]


def test_constant_volume_is_constant_with_warning() -> None:
    check = check_volume(np.full((4, 8, 8), 7.5, dtype=np.float32))
    assert check.is_constant
    assert check.min_value == check.max_value == 7.5
    assert "every voxel is 7.5" in check.warnings[0]


def test_label_map_is_refused_and_allowed_with_flag() -> None:
    labels = np.random.default_rng(0).integers(0, 5, size=(4, 8, 8)).astype(np.uint8)
    with pytest.raises(InputError, match=r"label map \(5 distinct integer values\); .*allow_label_map.*--force"):
        check_volume(labels)
    check = check_volume(labels, allow_label_map=True)
    assert check.looks_like_label_map
    assert not check.is_constant
    assert "label map" in check.warnings[0]


def test_integer_ct_with_many_values_passes() -> None:
    ct = np.random.default_rng(0).normal(40.0, 200.0, size=(4, 16, 16)).astype(np.int16)
    assert len(np.unique(ct)) > LABEL_MAP_MAX_VALUES
    check = check_volume(ct)
    assert not check.looks_like_label_map
    assert check.warnings == []


def test_label_threshold_is_exact() -> None:
    values = np.arange(LABEL_MAP_MAX_VALUES + 1, dtype=np.int32)
    at_limit = np.resize(values[:-1], (4, 8, 8))
    with pytest.raises(InputError, match=f"{LABEL_MAP_MAX_VALUES} distinct"):
        check_volume(at_limit)
    assert not check_volume(np.resize(values, (4, 8, 10))).looks_like_label_map


def test_float_volume_with_few_values_is_not_a_label_map() -> None:
    check = check_volume(np.resize(np.arange(3, dtype=np.float32), (4, 8, 8)))
    assert not check.looks_like_label_map


@pytest.mark.parametrize(("extra", "refused"), [(3, True), (10, False)])
def test_label_heuristic_counts_values_the_subsample_missed(extra: int, refused: bool) -> None:
    # 2**21 voxels: the subsample takes every 2nd voxel, so it sees the 61 base values (61 is odd)
    # but none of the extra values placed at odd indices; only the confirmation pass finds those.
    flat = np.resize(np.arange(61, dtype=np.int16), 128**3)
    flat[1 : 2 * extra : 2] = np.arange(extra, dtype=np.int16) + 1000
    volume = flat.reshape(128, 128, 128)
    assert len(np.unique(flat[::2])) == 61
    assert len(np.unique(volume)) == 61 + extra
    if refused:
        with pytest.raises(InputError, match=f"{61 + extra} distinct"):
            check_volume(volume)
    else:
        assert not check_volume(volume).looks_like_label_map


def test_too_large_volume_is_refused_with_its_size() -> None:
    expected = r"too large: 256 voxels \(shape 4 x 8 x 8\), more than the limit of 255; crop"
    with pytest.raises(InputError, match=expected):
        check_volume(noisy_float(), max_voxels=255)
    assert not check_volume(noisy_float(), max_voxels=256).is_constant


def test_volume_object_passes_and_checks_geometry() -> None:
    volume = Volume(noisy_float(), (0.7, 0.7, 5.0), (1.0, 2.0, 3.0))
    assert not check_volume_object(volume).is_constant
    with pytest.raises(InputError, match="spacing"):
        check_volume_object(Volume(noisy_float(), (0.7, 0.0, 5.0)))
    with pytest.raises(InputError, match="origin"):
        check_volume_object(Volume(noisy_float(), origin=(0.0, np.nan, 0.0)))
    with pytest.raises(InputError, match="direction"):
        check_volume_object(Volume(noisy_float(), direction=np.zeros((3, 3))))


def test_volume_object_forwards_label_map_flag_and_refuses_vectors() -> None:
    labels = Volume(np.resize(np.arange(3, dtype=np.int16), (4, 8, 8)))
    with pytest.raises(InputError, match="label map"):
        check_volume_object(labels)
    assert check_volume_object(labels, allow_label_map=True).looks_like_label_map
    rgb = Volume(noisy_float((4, 8, 8, 3)), metadata={"components": 3})
    with pytest.raises(InputError, match=r"RGB/vector images are not supported \(3 components"):
        check_volume_object(rgb)

"""Tests for tiled prediction, blending and test-time augmentation (DeepDenoiseLib.core.tiling)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from DeepDenoiseLib.core.progress import Cancelled, CancelToken, ProgressEvent
from DeepDenoiseLib.core.tiling import (
    WEIGHT_FLOOR,
    blend_window,
    make_tta_fn,
    predict_tiled,
    predict_with_tta,
    tile_starts,
    tta_transforms,
)


def identity(batch: np.ndarray) -> np.ndarray:
    return batch.copy()


def mean_filter(batch: np.ndarray) -> np.ndarray:
    """A 3-voxel mean along every tile axis (not across the batch axis)."""
    size = (1,) + (3,) * (batch.ndim - 1)
    return ndimage.uniform_filter(batch.astype(np.float64), size=size, mode="reflect").astype(np.float32)


def ramp_fn(batch: np.ndarray) -> np.ndarray:
    """Not equivariant: the added value depends on the position along the last axis."""
    return (batch * batch + np.arange(batch.shape[-1], dtype=np.float32)).astype(np.float32)


@pytest.mark.parametrize(
    "length, tile, overlap",
    [(37, 16, 4), (50, 16, 4), (61, 16, 4), (64, 16, 0), (17, 16, 15), (100, 32, 16), (16, 16, 4), (5, 16, 4)],
)
def test_tile_starts_cover_with_overlap_and_end_at_length(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0
    assert min(starts) >= 0
    assert starts[-1] + size == length
    covered = np.zeros(length, dtype=int)
    for s in starts:
        covered[s : s + size] += 1
    assert covered.min() >= 1
    for a, b in zip(starts, starts[1:]):
        assert b > a
        assert a + size - b >= overlap


def test_tile_starts_single_tile_when_short_and_rejects_bad_overlap() -> None:
    assert tile_starts(10, 16, 4) == [0]
    assert tile_starts(16, 16, 8) == [0]
    with pytest.raises(ValueError):
        tile_starts(40, 16, 16)
    with pytest.raises(ValueError):
        tile_starts(40, 16, -1)


def test_blend_window_tapers_only_requested_sides() -> None:
    window = blend_window((20, 12), 4)
    assert window.shape == (20, 12)
    assert window.min() > 0
    assert blend_window((400,), 200).min() == pytest.approx(WEIGHT_FLOOR)
    assert window[10, 6] == 1.0
    assert window[0, 6] < 0.1 and window[-1, 6] < 0.1
    one_sided = blend_window((20, 12), 4, taper=((False, True), (False, False)))
    np.testing.assert_array_equal(one_sided[0], np.ones(12))
    np.testing.assert_array_equal(one_sided[:, 0], one_sided[:, -1])
    assert one_sided[-1, 0] < 0.1


def test_blend_ramps_of_neighbours_sum_to_one() -> None:
    ramp = blend_window((10,), 4, taper=((False, True),))[-4:]
    rise = blend_window((10,), 4, taper=((True, False),))[:4]
    np.testing.assert_allclose(ramp + rise, 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "shape, tile, overlap",
    [((37, 50, 61), (16, 16, 16), 4), ((45, 70), (16, 32), (4, 8)), ((8, 40, 33), (16, 16, 16), 4)],
)
def test_identity_is_returned_exactly(shape, tile, overlap) -> None:
    array = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    result = predict_tiled(array, identity, tile, overlap)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, array)


def test_pointwise_nonlinear_matches_untiled() -> None:
    array = np.random.default_rng(1).normal(size=(37, 50, 61)).astype(np.float32)
    result = predict_tiled(array, np.tanh, (16, 16, 16), 4, batch_size=8)
    np.testing.assert_allclose(result, np.tanh(array), rtol=0, atol=1e-6)


def _clean_voxels(shape, tile, overlap, radius):
    """Voxels that no tile sees within ``radius`` of one of its inner (non-border) faces."""
    clean = np.ones(shape, dtype=bool)
    per_axis = []
    for n, t in zip(shape, tile):
        starts = tile_starts(n, t, overlap)
        bad = np.zeros(n, dtype=bool)
        for s in starts:
            if s > 0:
                bad[s : s + radius] = True
            if s + t < n:
                bad[s + t - radius : s + t] = True
        per_axis.append(~bad)
    for axis, good in enumerate(per_axis):
        clean &= good.reshape((1,) * axis + (-1,) + (1,) * (len(shape) - axis - 1))
    return clean


def test_neighbourhood_filter_matches_away_from_tile_edges_and_border_is_not_darkened() -> None:
    shape, tile, overlap = (37, 50, 61), (16, 16, 16), 4
    array = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    result = predict_tiled(array, mean_filter, tile, overlap, batch_size=4)
    expected = mean_filter(array[None])[0]
    clean = _clean_voxels(shape, tile, overlap, radius=1)
    assert clean.sum() > 0.5 * clean.size
    np.testing.assert_allclose(result[clean], expected[clean], rtol=0, atol=1e-6)
    # Tiles are never cut at the true volume border, so its faces are mostly clean and match there.
    for axis in range(3):
        for side in (0, -1):
            face = np.take(clean, side, axis=axis)
            assert face.mean() > 0.5
            diff = np.take(result, side, axis=axis) - np.take(expected, side, axis=axis)
            assert np.abs(diff[face]).max() <= 1e-6
    # Blending keeps every voxel close even at tile edges, where tiles disagree.
    assert np.abs(result - expected).max() < 0.1


def test_constant_image_stays_constant_everywhere() -> None:
    array = np.full((30, 41, 23), 5.0, dtype=np.float32)
    result = predict_tiled(array, mean_filter, (16, 16, 16), 4)
    np.testing.assert_allclose(result, 5.0, rtol=1e-6)


def test_blending_leaves_no_seams() -> None:
    """Each tile is predicted as its own constant: the blend must ramp between them, not jump."""
    rng = np.random.default_rng(3)

    def tile_constant(batch: np.ndarray) -> np.ndarray:
        return np.broadcast_to(rng.uniform(size=(len(batch),) + (1,) * (batch.ndim - 1)), batch.shape)

    array = np.zeros((96, 96), dtype=np.float32)
    hard = predict_tiled(array, tile_constant, (32, 32), 0)
    smooth = predict_tiled(array, tile_constant, (32, 32), 16)
    hard_jump = max(np.abs(np.diff(hard, axis=a)).max() for a in (0, 1))
    smooth_jump = max(np.abs(np.diff(smooth, axis=a)).max() for a in (0, 1))
    assert hard_jump > 0.2
    assert smooth_jump < 0.12


def test_single_tile_equals_whole_prediction() -> None:
    array = np.random.default_rng(4).normal(size=(12, 20, 15)).astype(np.float32)
    calls = []

    def fn(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return mean_filter(batch) * 3.0 + 1.0

    result = predict_tiled(array, fn, (16, 32, 16), 4)
    assert calls == [(1, 12, 20, 15)]
    np.testing.assert_allclose(result, fn(array[None])[0], rtol=0, atol=1e-6)


def test_progress_reaches_one_with_tile_messages() -> None:
    events: list[ProgressEvent] = []
    array = np.zeros((40, 40), dtype=np.float32)
    predict_tiled(array, identity, (16, 16), 4, batch_size=3, progress=events.append, stage="predicting")
    n = len(tile_starts(40, 16, 4)) ** 2
    assert all(e.stage == "predicting" for e in events)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert events[-1].message == f"tile {n}/{n}"


def test_cancel_inside_second_call_raises() -> None:
    token = CancelToken()
    calls = []

    def fn(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 2:
            token.cancel()
        return batch

    array = np.zeros((64, 64), dtype=np.float32)
    with pytest.raises(Cancelled):
        predict_tiled(array, fn, (16, 16), 4, cancel=token)
    assert len(calls) == 2


def test_cancel_during_last_batch_still_raises() -> None:
    token = CancelToken()

    def fn(batch: np.ndarray) -> np.ndarray:
        token.cancel()
        return batch

    with pytest.raises(Cancelled):
        predict_tiled(np.zeros((10, 10), dtype=np.float32), fn, (16, 16), 4, cancel=token)


def test_batch_size_does_not_change_result() -> None:
    array = np.random.default_rng(5).normal(size=(30, 37, 29)).astype(np.float32)
    single = predict_tiled(array, mean_filter, (16, 16, 16), 4, batch_size=1)
    batched = predict_tiled(array, mean_filter, (16, 16, 16), 4, batch_size=5)
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-6)


def test_tiles_are_uniform_float32_batches_of_real_voxels() -> None:
    array = np.arange(37 * 23, dtype=np.int16).reshape(37, 23)
    seen = []

    def fn(batch: np.ndarray) -> np.ndarray:
        seen.append((batch.dtype, batch.shape))
        return batch

    result = predict_tiled(array, fn, (16, 16), 4, batch_size=4)
    assert {dtype for dtype, _ in seen} == {np.dtype(np.float32)}
    assert {shape[1:] for _, shape in seen} == {(16, 16)}
    np.testing.assert_array_equal(result, array.astype(np.float32))


def test_wrong_output_shape_is_refused() -> None:
    with pytest.raises(ValueError):
        predict_tiled(np.zeros((20, 20), dtype=np.float32), lambda b: b[:, :-1], (16, 16), 4)


def test_tta_transforms_are_the_dihedral_group() -> None:
    tile = np.arange(16, dtype=np.float32).reshape(4, 4)
    transforms = tta_transforms(2)
    assert len(transforms) == 8
    images = {transform.apply(tile).tobytes() for transform in transforms}
    assert len(images) == 8
    for transform in transforms:
        np.testing.assert_array_equal(transform.invert(transform.apply(tile)), tile)
    assert len(tta_transforms(3, (0, 1), square=False)) == 4


def test_tta_identity_returns_input_exactly() -> None:
    batch = np.random.default_rng(6).normal(size=(3, 5, 8, 8)).astype(np.float32)
    mean, std = predict_with_tta(batch, identity, return_std=True)
    np.testing.assert_array_equal(mean, batch)
    np.testing.assert_array_equal(std, np.zeros_like(batch))


def _hand_tta(batch: np.ndarray, fn, square: bool) -> list[np.ndarray]:
    """The TTA predictions written out with numpy on the last two axes of a batch."""
    predictions = []
    for k in (0, 1, 2, 3) if square else (0, 2):
        for flip in (False, True):
            moved = np.rot90(np.flip(batch, -2) if flip else batch, k, axes=(-2, -1))
            back = np.rot90(fn(np.ascontiguousarray(moved)), -k, axes=(-2, -1))
            predictions.append(np.flip(back, -2) if flip else back)
    return predictions


@pytest.mark.parametrize("shape, square", [((2, 4, 9, 9), True), ((2, 4, 6, 10), False)])
def test_tta_of_non_equivariant_fn_equals_hand_average(shape, square) -> None:
    batch = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    mean, std = predict_with_tta(batch, ramp_fn, return_std=True)
    hand = np.stack(_hand_tta(batch, ramp_fn, square))
    assert len(hand) == (8 if square else 4)
    assert np.abs(mean - ramp_fn(batch)).max() > 0.1
    np.testing.assert_allclose(mean, hand.mean(axis=0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(std, hand.std(axis=0), rtol=0, atol=1e-5)


def test_tta_inplane_axes_count_tile_axes_not_batch_axis() -> None:
    batch = np.random.default_rng(8).normal(size=(2, 6, 6, 4)).astype(np.float32)
    by_index = predict_with_tta(batch, ramp_fn, inplane_axes=(0, 1))
    by_negative = predict_with_tta(batch, ramp_fn, inplane_axes=(-3, -2))
    np.testing.assert_array_equal(by_index, by_negative)
    moved = np.moveaxis(batch, -1, 1)  # tile axes (0, 1) of batch become the last two of ``moved``

    def moved_fn(b: np.ndarray) -> np.ndarray:
        return np.moveaxis(ramp_fn(np.moveaxis(b, 1, -1)), -1, 1)

    hand = np.stack(_hand_tta(moved, moved_fn, square=True)).mean(axis=0)
    np.testing.assert_allclose(by_index, np.moveaxis(hand, 1, -1), rtol=0, atol=1e-5)


def test_tta_composes_with_tiling() -> None:
    array = np.random.default_rng(9).normal(size=(10, 40, 40)).astype(np.float32)
    np.testing.assert_array_equal(predict_tiled(array, make_tta_fn(identity), (8, 16, 16), 4), array)
    both = predict_tiled(array, make_tta_fn(ramp_fn, return_std=True), (8, 16, 16), 4, batch_size=2)
    assert both.shape == (2,) + array.shape
    mean_only = predict_tiled(array, make_tta_fn(ramp_fn), (8, 16, 16), 4, batch_size=2)
    np.testing.assert_allclose(both[0], mean_only, rtol=0, atol=1e-6)
    assert both[1].min() >= 0 and both[1].max() > 0


def test_tta_std_map_for_one_tile_equals_direct_tta() -> None:
    array = np.random.default_rng(10).normal(size=(6, 12, 12)).astype(np.float32)
    result = predict_tiled(array, make_tta_fn(ramp_fn, return_std=True), (16, 16, 16), 4)
    mean, std = predict_with_tta(array[None], ramp_fn, return_std=True)
    np.testing.assert_allclose(result[0], mean[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(result[1], std[0], rtol=0, atol=1e-6)

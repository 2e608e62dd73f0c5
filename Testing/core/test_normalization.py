"""Tests for percentile normalisation (DeepDenoiseLib.core.normalization)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DeepDenoiseLib.core.normalization import PercentileNormalizer


def test_percentiles_map_to_zero_and_one_without_clipping() -> None:
    array = np.random.default_rng(0).gamma(2.0, 300.0, size=(20, 30, 30)).astype(np.float32)
    norm = PercentileNormalizer.fit(array, 1.0, 99.0)
    assert norm.low == pytest.approx(np.percentile(array.astype(np.float64), 1.0))
    assert norm.high == pytest.approx(np.percentile(array.astype(np.float64), 99.0))
    out = norm.forward(array)
    assert out.dtype == np.float32
    assert np.mean(out < 0) == pytest.approx(0.01, abs=0.002)
    assert np.mean(out > 1) == pytest.approx(0.01, abs=0.002)
    assert out.min() < 0 and out.max() > 1.5


def test_round_trip_is_exact_to_float32_rounding() -> None:
    array = np.random.default_rng(1).uniform(200.0, 4000.0, size=(16, 32, 32)).astype(np.float32)
    norm = PercentileNormalizer.fit(array, 0.5, 99.5)
    back = norm.inverse(norm.forward(array))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, array, rtol=1e-6, atol=0)


def test_round_trip_of_signed_ct_values_is_exact_relative_to_range() -> None:
    array = np.random.default_rng(2).integers(-1024, 3071, size=(16, 32, 32)).astype(np.int16)
    norm = PercentileNormalizer.fit(array, 0.5, 99.5)
    back = norm.inverse(norm.forward(array))
    np.testing.assert_allclose(back, array, rtol=0, atol=1e-6 * (norm.high - norm.low))
    np.testing.assert_array_equal(np.rint(back).astype(np.int16), array)


def test_constant_image_is_safe() -> None:
    array = np.full((8, 8, 8), 37.5, dtype=np.float32)
    norm = PercentileNormalizer.fit(array, 0.5, 99.5)
    assert norm.low == norm.high == 37.5
    assert norm.scale == 1.0
    out = norm.forward(array)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, 0.0)
    np.testing.assert_array_equal(norm.inverse(out), array)


def test_percentiles_are_computed_in_float64() -> None:
    array = (100_000_000 + np.arange(101)).astype(np.int64)
    norm = PercentileNormalizer.fit(array, 0.0, 100.0)
    assert norm.low == 100_000_000.0
    assert norm.high == 100_000_100.0


def test_mask_restricts_the_fit_and_input_is_untouched() -> None:
    array = np.concatenate([np.zeros(1000), np.linspace(10.0, 20.0, 1001)]).astype(np.float64)
    original = array.copy()
    mask = array > 0
    norm = PercentileNormalizer.fit(array, 0.0, 100.0, mask=mask)
    assert (norm.low, norm.high) == (10.0, 20.0)
    np.testing.assert_array_equal(array, original)
    unmasked = PercentileNormalizer.fit(array, 0.0, 100.0)
    np.testing.assert_array_equal(array, original)
    assert unmasked.low == 0.0
    with pytest.raises(ValueError):
        PercentileNormalizer.fit(array, 0.0, 100.0, mask=np.zeros_like(mask))
    with pytest.raises(ValueError):
        PercentileNormalizer.fit(array, 0.0, 100.0, mask=mask[:10])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        PercentileNormalizer.fit(np.array([1.0, np.nan, 3.0]), 0.5, 99.5)
    with pytest.raises(ValueError):
        PercentileNormalizer.fit(np.arange(10.0), 60.0, 40.0)
    with pytest.raises(ValueError):
        PercentileNormalizer(low=2.0, high=1.0)


def test_dict_round_trip_through_json() -> None:
    norm = PercentileNormalizer(low=-1000.25, high=2999.5)
    restored = PercentileNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert restored == norm
    with pytest.raises(ValueError):
        PercentileNormalizer.from_dict({"low": 1.0})
    with pytest.raises(ValueError):
        PercentileNormalizer.from_dict({"low": 1.0, "high": 2.0, "hgih": 3.0})

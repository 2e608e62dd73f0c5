"""Tests of bench/dicom_series.py (benchmark_real.py's DICOM row): the series written reads back as
the same volume at the same place in space, and what 16 bits would change is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.dicom_series import write_mr_series
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_volume


def tilted(handedness: float) -> np.ndarray:
    """A direction matrix tilted 20 degrees about i; ``handedness`` -1 flips the k axis."""
    angle = np.deg2rad(20.0)
    direction = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]])
    direction[:, 2] *= handedness
    return direction


def integer_volume(direction: np.ndarray) -> Volume:
    array = np.random.default_rng(0).integers(-200, 3000, size=(5, 7, 9)).astype(np.float32)
    return Volume(array, (0.9, 1.1, 2.5), (-40.0, 12.5, 7.0), direction)


def test_a_right_handed_volume_reads_back_unchanged(tmp_path: Path) -> None:
    volume = integer_volume(tilted(1.0))
    files = write_mr_series(volume, tmp_path / "series")
    read = read_volume(tmp_path / "series")
    assert len(files) == 5 and read.metadata["dicom_file_count"] == 5
    assert np.array_equal(np.asarray(read.array, dtype=np.float32), volume.array)  # negative values too (int16)
    assert np.allclose(read.spacing, volume.spacing) and np.allclose(read.origin, volume.origin, atol=1e-4)
    assert np.allclose(read.direction, volume.direction, atol=1e-5)


def test_a_left_handed_volume_comes_back_in_the_other_slice_order_at_the_same_place(tmp_path: Path) -> None:
    volume = integer_volume(tilted(-1.0))
    write_mr_series(volume, tmp_path / "series")
    read = read_volume(tmp_path / "series")
    assert np.array_equal(np.asarray(read.array, dtype=np.float32), volume.array[::-1])
    last = len(volume.array) - 1
    last_slice_origin = np.asarray(volume.origin) + volume.direction @ (np.asarray(volume.spacing) * np.array([0.0, 0.0, last]))
    assert np.allclose(read.origin, last_slice_origin, atol=1e-4)
    assert np.allclose(read.direction[:, 2], -volume.direction[:, 2], atol=1e-5)


def test_what_16_bits_would_change_is_refused(tmp_path: Path) -> None:
    volume = integer_volume(np.eye(3))
    with pytest.raises(ValueError, match="non-integer"):
        write_mr_series(volume.with_array(volume.array + 0.5), tmp_path / "a")
    with pytest.raises(ValueError, match="16 bits"):
        write_mr_series(volume.with_array(volume.array * 100.0), tmp_path / "b")
    with pytest.raises(ValueError, match="16 bits"):  # negative values need int16, which stops at 32767
        write_mr_series(volume.with_array(volume.array * 12.0), tmp_path / "d")
    bright = volume.with_array(np.abs(volume.array) + 40000.0)  # beyond int16, within uint16
    write_mr_series(bright, tmp_path / "e")
    assert np.array_equal(np.asarray(read_volume(tmp_path / "e").array, dtype=np.float32), bright.array)
    with pytest.raises(ValueError, match="3D"):
        write_mr_series(volume.with_array(volume.array[None]), tmp_path / "c")

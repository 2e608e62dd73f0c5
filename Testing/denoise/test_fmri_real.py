"""Real 4D fMRI through the command line: nibabel's bundled example4d.nii.gz (2 frames of 128x96x24)
and functional.nii (20 frames of 17x21x3) are denoised as series with one model each, after a very
short training with fixed steps. The output keeps the file's geometry, time step and frame count (as
nibabel, an independent reader, sees them), and the temporal SNR in the brain does not fall.

bench/benchmark_fmri.py measures the same path with a real training budget.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.cli import commands as cli
from DeepDenoiseLib.core.metrics import mean_image_mask, temporal_snr
from DeepDenoiseLib.core.progress import ProgressEvent
from Testing.support.phantoms import single_thread, tiny_config  # noqa: F401

nibabel = pytest.importorskip("nibabel")
DATA = Path(os.path.dirname(nibabel.__file__)) / "tests" / "data"

# Settings per file: a few fixed steps (seed 0), enough that the blind-spot network's prior has
# learnt something; example4d predicts slices across its own axis only, to keep the test short.
CASES = {
    "functional.nii": {"model": {"depth": 2, "base_channels": 16}, "training": {"steps_per_epoch": 60, "max_epochs": 1, "batch_size": 4}},
    "example4d.nii.gz": {"model": {"slice_axes": "k"}, "training": {"steps_per_epoch": 10, "max_epochs": 1}},
}


@pytest.mark.parametrize("name", list(CASES))
def test_real_fmri_series_keeps_geometry_and_frames_and_temporal_snr_does_not_fall(name, tmp_path, capsys) -> None:
    source = DATA / name
    if not source.is_file():
        pytest.skip(f"nibabel's test data lacks {name} (some packagers strip nibabel/tests/data)")
    config_path = tmp_path / "config.json"
    tiny_config("r2r", **CASES[name]).save(config_path)
    output = tmp_path / "denoised.nii.gz"
    code = cli.main(["denoise", str(source), str(output), "--config", str(config_path), "--progress", "json"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    summary = ProgressEvent.from_json(captured.out.splitlines()[-1]).summary

    original, denoised = nibabel.load(source), nibabel.load(output)
    frames = original.shape[3]
    assert denoised.shape == original.shape and summary["frames"] == frames
    np.testing.assert_allclose(denoised.affine, original.affine, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(denoised.header.get_zooms(), original.header.get_zooms(), rtol=1e-6)  # time step included
    assert denoised.header.get_xyzt_units() == original.header.get_xyzt_units()

    before = np.asarray(original.get_fdata(), dtype=np.float64).transpose(3, 2, 1, 0)  # [t, k, j, i]
    after = np.asarray(denoised.get_fdata(), dtype=np.float64).transpose(3, 2, 1, 0)
    assert np.all(np.isfinite(after))
    brain = mean_image_mask(before)
    tsnr_before, tsnr_after = temporal_snr(before, brain), temporal_snr(after, brain)
    assert summary["self_check"]["passed"] and tsnr_after > tsnr_before, (summary["self_check"], tsnr_before, tsnr_after)

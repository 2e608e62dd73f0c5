"""The denoising run end to end: check the input, normalise, train Noise2Void, predict, invert.

:func:`denoise_volume` works on a :class:`Volume` in memory (what the Slicer worker and scripts call);
:func:`denoise_file` adds reading and atomic writing, and is what the command line runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from DeepDenoiseLib.config import PAIRED_METHODS, DenoiseConfig
from DeepDenoiseLib.inference import predict_volume
from DeepDenoiseLib.metrics import estimate_foreground_noise_sigma
from DeepDenoiseLib.normalization import PercentileNormalizer
from DeepDenoiseLib.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.rician import rician_unbias
from DeepDenoiseLib.training import TrainingHistory, train_noise2void
from DeepDenoiseLib.validation import check_volume_object
from DeepDenoiseLib.volume import Volume
from DeepDenoiseLib.volume_io import read_volume, write_volume

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass
class DenoiseResult:
    """The denoised volume on the input's grid, what was removed (input minus output), the spread
    across test-time augmentations when they ran, and the run's closing figures."""

    denoised: Volume
    residual: Volume
    uncertainty: Optional[Volume]
    summary: dict[str, Any] = field(default_factory=dict)
    history: Optional[TrainingHistory] = None


def denoise_volume(
    volume: Volume,
    config: Optional[DenoiseConfig] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> DenoiseResult:
    """Trains Noise2Void on ``volume`` itself and returns it denoised, on exactly the same grid.

    A constant volume comes back unchanged with a warning in ``summary["warnings"]``. With the
    ``rician`` noise model the result is corrected for the Rician bias of magnitude images.

    >>> result = denoise_volume(read_volume("noisy.nii.gz"), DenoiseConfig.for_method("n2v2"))
    >>> result.summary["seconds"], result.summary["noise_sigma_after"]
    """
    config = config or DenoiseConfig()
    if config.method in PAIRED_METHODS:
        raise ValueError(
            f"method '{config.method}' learns from pairs of volumes: use DeepDenoiseLib.paired "
            "(deepdenoise n2n or deepdenoise supervised on the command line)"
        )
    start = time.perf_counter()
    check = check_volume_object(volume, allow_label_map=config.allow_label_map)
    for warning in check.warnings:
        logger.warning(warning)
    array = np.asarray(volume.array, dtype=np.float32)
    summary: dict[str, Any] = {
        "method": config.method,
        "dimensions": config.model.dimensions,
        "shape_kji": list(array.shape),
        "warnings": list(check.warnings),
    }
    if check.is_constant:
        summary.update(seconds=time.perf_counter() - start, training_steps=0)
        zeros = volume.with_array(np.zeros_like(array))
        uncertainty = zeros if config.prediction.tta else None
        return DenoiseResult(volume.with_array(array.copy()), zeros, uncertainty, summary)

    normalizer = PercentileNormalizer.fit(
        array, config.normalization.low_percentile, config.normalization.high_percentile
    )
    normalized = normalizer.forward(array)
    spacing_zyx = tuple(reversed(volume.spacing))
    noise_sigma = config.noise.sigma if config.noise.sigma is not None else estimate_foreground_noise_sigma(array)
    model = train_noise2void(
        normalized, config, spacing_zyx, progress, cancel, noise_sigma=noise_sigma / normalizer.scale  # type: ignore[arg-type]
    )
    check_cancelled(cancel)
    predict_start = time.perf_counter()
    prediction = predict_volume(model, normalized, config.prediction, progress, cancel)
    denoised = normalizer.inverse(prediction.denoised)
    if config.noise.model == "rician":
        denoised = rician_unbias(denoised, noise_sigma)
    residual = (array - denoised).astype(np.float32)
    uncertainty = None
    if prediction.spread is not None:
        uncertainty = volume.with_array((prediction.spread * np.float32(normalizer.scale)).astype(np.float32))
    summary.update(
        seconds=round(time.perf_counter() - start, 2),
        training_seconds=round(model.history.seconds, 2),
        prediction_seconds=round(time.perf_counter() - predict_start, 2),
        training_steps=model.history.steps,
        stopped_by=model.history.stopped_by,
        best_validation_loss=model.history.best_validation_loss,
        device=str(model.device),
        noise_model=config.noise.model,
        noise_sigma_before=noise_sigma,
        noise_sigma_after=estimate_foreground_noise_sigma(denoised),
        residual_std=float(np.std(residual)),
    )
    return DenoiseResult(volume.with_array(denoised), volume.with_array(residual), uncertainty, summary, model.history)


def denoise_file(
    input_path: PathLike,
    output_path: PathLike,
    config: Optional[DenoiseConfig] = None,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> dict[str, Any]:
    """Reads ``input_path``, denoises it and writes the outputs; returns the run's summary.

    Each file is written atomically, and if any write fails the outputs already written by this run
    are removed, so a failed or cancelled run leaves no output behind.
    """
    config = config or DenoiseConfig()
    if uncertainty_path is not None and not config.prediction.tta:
        raise ValueError("an uncertainty map needs test-time augmentation (prediction.tta / --tta)")
    report(progress, ProgressEvent("loading", 0.0, message=str(input_path)))
    volume = read_volume(input_path)
    report(progress, ProgressEvent("loading", 1.0, message="x".join(map(str, volume.array.shape[::-1]))))
    result = denoise_volume(volume, config, progress, cancel)
    check_cancelled(cancel)
    outputs: list[tuple[Volume, PathLike]] = [(result.denoised, output_path)]
    if residual_path is not None:
        outputs.append((result.residual, residual_path))
    if uncertainty_path is not None and result.uncertainty is not None:
        outputs.append((result.uncertainty, uncertainty_path))
    written = write_outputs(outputs, progress)
    summary = dict(result.summary, output=str(written[0]))
    report(progress, ProgressEvent("done", 1.0, message="finished", summary=summary))
    return summary


def write_outputs(outputs: list[tuple[Volume, PathLike]], progress: Optional[ProgressCallback] = None) -> list[Path]:
    """Writes each volume to its path atomically; if any write fails, removes those already written,
    so that a run leaves all of its outputs or none."""
    written: list[Path] = []
    try:
        for index, (output, path) in enumerate(outputs):
            report(progress, ProgressEvent("writing", index / len(outputs), message=str(path)))
            written.append(write_volume(output, path))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    report(progress, ProgressEvent("writing", 1.0, message="done"))
    return written

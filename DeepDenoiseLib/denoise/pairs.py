"""What the methods that learn from pairs of volumes (Noise2Noise, supervised) share: the checks of
volumes and of a pair's grids, the noise sigma for the Rician correction, prediction frame by frame,
and the result with its summary.

Volumes must lie on exactly the same grid as their partners (an :class:`InputError` says how they
differ otherwise), and outputs keep that grid. Intensities are normalised per pair (by the noisy
volume's percentiles, or both acquisitions' together), so a model applies to volumes of another
intensity scale, and mapped back exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from DeepDenoiseLib.core.device import fallback_warnings
from DeepDenoiseLib.core.metrics import estimate_foreground_noise_sigma
from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, check_cancelled
from DeepDenoiseLib.core.validation import InputError, check_noise_model_intensities, check_result, check_volume_object
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.inference import predict_volume, sub_progress
from DeepDenoiseLib.denoise.networks import TrainedModel
from DeepDenoiseLib.denoise.result import DenoiseResult
from DeepDenoiseLib.denoise.rician import rician_unbias

logger = logging.getLogger(__name__)

#: Frames whose noise is estimated to fix the Rician correction of a series (evenly spaced).
SIGMA_FRAMES = 8


def check_volume(volume: Volume, role: str, allow_label_map: bool, training: bool = True) -> bool:
    """The usual volume checks, with the role named; a constant volume has nothing to learn from, so
    ``training`` refuses it. Returns whether the volume is constant."""
    try:
        check = check_volume_object(volume, allow_label_map=allow_label_map)
    except InputError as error:
        raise InputError(f"{role}: {error}") from error
    if check.is_constant and training:
        raise InputError(f"{role} is constant: there is nothing to learn from; check that the right file was loaded")
    for warning in check.warnings:
        logger.warning("%s: %s", role, warning)
    return check.is_constant


def check_series(series: Volume, allow_label_map: bool, training: bool = True) -> bool:
    array = np.asarray(series.array)
    if array.ndim != 4:
        raise InputError(
            f"a series needs a 4D [t, k, j, i] array; got {array.ndim} dimensions (shape {array.shape}); "
            "two separate acquisitions go in as two volumes"
        )
    if array.shape[0] < 2:
        raise InputError(f"a series needs at least 2 frames to pair neighbouring frames; got {array.shape[0]}")
    stacked = dataclasses.replace(series, array=array.reshape(-1, *array.shape[2:]))
    return check_volume(stacked, "the series", allow_label_map, training)


def check_same_grid(first: Volume, second: Volume, names: tuple[str, str]) -> None:
    if first.same_geometry(second):
        return
    differences = []
    if first.array.shape != second.array.shape:
        differences.append(f"shape {first.array.shape} vs {second.array.shape}")
    if first.spacing != second.spacing:
        differences.append(f"spacing {first.spacing} vs {second.spacing}")
    if first.origin != second.origin:
        differences.append(f"origin {first.origin} vs {second.origin}")
    if not np.array_equal(first.direction, second.direction):
        differences.append("direction matrices differ")
    raise InputError(
        f"the {names[0]} and the {names[1]} must lie on the same voxel grid ({'; '.join(differences)}); "
        "resample one onto the other first (e.g. with Slicer's Resample Scalar/Vector/DWI Volume module)"
    )


def check_method(config: DenoiseConfig, method: str) -> None:
    if config.method != method:
        raise ValueError(f"this needs a '{method}' configuration (DenoiseConfig.for_method('{method}')); got method '{config.method}'")


def correction_sigma(frames: Sequence[np.ndarray], config: DenoiseConfig) -> float:
    """The noise sigma (original units) for the Rician correction: configured, or estimated on the
    foreground of up to :data:`SIGMA_FRAMES` frames (median)."""
    if config.noise.sigma is not None:
        return float(config.noise.sigma)
    return _estimated_sigma(frames)


def _estimated_sigma(frames: Sequence[np.ndarray]) -> float:
    chosen = np.unique(np.linspace(0, len(frames) - 1, min(SIGMA_FRAMES, len(frames))).round().astype(int))
    return float(np.median([estimate_foreground_noise_sigma(frames[int(i)]) for i in chosen]))


def unbiases(config: DenoiseConfig) -> bool:
    """Whether results need the Rician correction: yes when the network learned noisy magnitudes
    (every method but supervised, whose targets are clean) under the Rician model."""
    return config.noise.model == "rician" and config.method != "supervised"


def intensity_warnings(config: DenoiseConfig, *volumes: Volume) -> list[str]:
    """What reading the volumes chose for the user, and, when the result gets the Rician correction,
    the refusal of signed intensities it cannot represent (or a warning about a few negative voxels)."""
    warnings = [warning for volume in volumes for warning in volume.metadata.get("warnings", [])]
    if unbiases(config):
        for volume in volumes:
            array = np.asarray(volume.array)
            frames = list(array) if array.ndim == 4 else [array]
            warnings += check_noise_model_intensities(array, "rician", correction_sigma(frames, config))
    return warnings


def predict_frames(
    model: TrainedModel,
    frames: Sequence[np.ndarray],
    normalizer: PercentileNormalizer,
    config: DenoiseConfig,
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Each frame (original units) denoised on its own, back in original units; with TTA also the
    spread. Returns ``[t, k, j, i]`` arrays."""
    denoised, spread = [], []
    for index, frame in enumerate(frames):
        check_cancelled(cancel)
        prediction = predict_volume(model, normalizer.forward(frame), config.prediction, sub_progress(progress, index, len(frames)), cancel)
        denoised.append(normalizer.inverse(prediction.denoised))
        if prediction.spread is not None:
            spread.append((prediction.spread * np.float32(normalizer.scale)).astype(np.float32))
    return np.stack(denoised), (np.stack(spread) if spread else None)


def paired_result(
    source: Volume,
    noisy: np.ndarray,
    denoised: np.ndarray,
    spread: Optional[np.ndarray],
    model: TrainedModel,
    config: DenoiseConfig,
    noise_sigma: Optional[float],
    timing: tuple[float, float],
    extra: dict[str, Any],
) -> DenoiseResult:
    """The result on ``source``'s grid with the summary; Rician-corrected with ``noise_sigma`` (the
    noise of one input volume) when the method needs it. ``timing``: when the run and its prediction
    started."""
    start, predict_start = timing
    if unbiases(config):
        assert noise_sigma is not None
        denoised = rician_unbias(denoised, noise_sigma)
    denoised = denoised.astype(np.float32)
    check_result(noisy, denoised, "the denoised volume")
    extra = dict(extra, warnings=list(extra.get("warnings", [])) + fallback_warnings(config.training.device, model.device))
    residual = (noisy - denoised).astype(np.float32)
    summary: dict[str, Any] = {
        "method": config.method,
        "architecture": config.model.architecture,
        "dimensions": config.model.dimensions,
        "shape_kji": list(noisy.shape),
        **extra,
        "seconds": round(time.perf_counter() - start, 2),
        "training_seconds": round(model.history.seconds, 2),
        "prediction_seconds": round(time.perf_counter() - predict_start, 2),
        "training_steps": model.history.steps,
        "stopped_by": model.history.stopped_by,
        "best_validation_loss": model.history.best_validation_loss,
        "device": str(model.device),
        "noise_model": config.noise.model,
        "residual_std": float(np.std(residual)),
    }
    if noise_sigma is not None:
        summary["noise_sigma_before"] = noise_sigma
        summary["noise_sigma_after"] = _estimated_sigma(list(denoised.reshape(-1, *denoised.shape[-3:])))
    uncertainty = None if spread is None else source.with_array(spread)
    return DenoiseResult(source.with_array(denoised), source.with_array(residual), uncertainty, summary, model.history)


def spacing_zyx(volume: Volume) -> tuple[float, float, float]:
    return tuple(reversed(volume.spacing))  # type: ignore[return-value]

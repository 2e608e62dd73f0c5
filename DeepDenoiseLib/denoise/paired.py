"""Denoising from pairs of volumes: Noise2Noise on two acquisitions or on a 4D series, supervised
training on (noisy, clean) pairs, and applying a trained model to a new volume.

* :func:`noise2noise_volumes`: two noisy acquisitions of the same anatomy on one grid (repeat scans,
  even and odd averages). The network learns to predict each from the other; the result is
  predicted from both (``prediction.noise2noise_input``).
* :func:`noise2noise_series`: a 4D ``[t, k, j, i]`` series (fMRI, dynamic scans). Neighbouring
  frames are the pairs (t to t+1 and back), one network serves the whole series, and each frame is
  denoised from itself alone, so the changes from frame to frame (the temporal signal) stay its own.
* :func:`train_supervised` and :func:`denoise_with_model`: learn from (noisy, clean) pairs such as
  low-dose and full-dose CT or single and many-average MRI, then denoise new volumes. The model is
  a :class:`~DeepDenoiseLib.denoise.training.TrainedModel`; with the configuration it was trained with, that
  is everything needed to save it and apply it later.

Volumes must lie on exactly the same grid as their partners (an :class:`InputError` says how they
differ otherwise), and outputs keep that grid. Intensities are normalised per pair (by the noisy
volume's percentiles, or both acquisitions' together), so a model applies to volumes of another
intensity scale, and mapped back exactly.

>>> config = DenoiseConfig.for_method("supervised", training={"budget_seconds": 300})
>>> model = train_supervised([read_volume("low_dose.nii.gz")], [read_volume("full_dose.nii.gz")], config)
>>> result = denoise_with_model(read_volume("new_low_dose.nii.gz"), model, config)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from DeepDenoiseLib.core.device import fallback_warnings
from DeepDenoiseLib.core.metrics import estimate_foreground_noise_sigma
from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.core.validation import (
    InputError,
    check_noise_model_intensities,
    check_result,
    check_volume_object,
    check_voxel_count,
)
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_header, read_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.inference import predict_volume, sub_progress
from DeepDenoiseLib.denoise.networks import TrainedModel
from DeepDenoiseLib.denoise.pair_training import train_pairs
from DeepDenoiseLib.denoise.pipeline import DenoiseResult, PathLike, check_outputs, write_outputs
from DeepDenoiseLib.denoise.rician import rician_unbias

logger = logging.getLogger(__name__)

#: Frames whose noise is estimated to fix the Rician correction of a series (evenly spaced).
SIGMA_FRAMES = 8


# --- checks -----------------------------------------------------------------------------------------


def _check_3d(volume: Volume, role: str, allow_label_map: bool, training: bool = True) -> bool:
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


def _check_series(series: Volume, allow_label_map: bool, training: bool = True) -> bool:
    array = np.asarray(series.array)
    if array.ndim != 4:
        raise InputError(
            f"a series needs a 4D [t, k, j, i] array; got {array.ndim} dimensions (shape {array.shape}); "
            "two separate acquisitions go in as two volumes"
        )
    if array.shape[0] < 2:
        raise InputError(f"a series needs at least 2 frames to pair neighbouring frames; got {array.shape[0]}")
    stacked = dataclasses.replace(series, array=array.reshape(-1, *array.shape[2:]))
    return _check_3d(stacked, "the series", allow_label_map, training)


def _check_same_grid(first: Volume, second: Volume, names: tuple[str, str]) -> None:
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


def _check_method(config: DenoiseConfig, method: str) -> None:
    if config.method != method:
        raise ValueError(f"this needs a '{method}' configuration (DenoiseConfig.for_method('{method}')); got method '{config.method}'")


# --- prediction -------------------------------------------------------------------------------------


def _noise_sigma(frames: Sequence[np.ndarray], config: DenoiseConfig) -> float:
    """The noise sigma (original units) for the Rician correction: configured, or estimated on the
    foreground of up to :data:`SIGMA_FRAMES` frames (median)."""
    if config.noise.sigma is not None:
        return float(config.noise.sigma)
    return _estimated_sigma(frames)


def _estimated_sigma(frames: Sequence[np.ndarray]) -> float:
    chosen = np.unique(np.linspace(0, len(frames) - 1, min(SIGMA_FRAMES, len(frames))).round().astype(int))
    return float(np.median([estimate_foreground_noise_sigma(frames[int(i)]) for i in chosen]))


def _unbiases(config: DenoiseConfig) -> bool:
    """Whether results need the Rician correction: yes when the network learned noisy magnitudes
    (every method but supervised, whose targets are clean) under the Rician model."""
    return config.noise.model == "rician" and config.method != "supervised"


def _intensity_warnings(config: DenoiseConfig, *volumes: Volume) -> list[str]:
    """What reading the volumes chose for the user, and, when the result gets the Rician correction,
    the refusal of signed intensities it cannot represent (or a warning about a few negative voxels)."""
    warnings = [warning for volume in volumes for warning in volume.metadata.get("warnings", [])]
    if _unbiases(config):
        for volume in volumes:
            array = np.asarray(volume.array)
            frames = list(array) if array.ndim == 4 else [array]
            warnings += check_noise_model_intensities(array, "rician", _noise_sigma(frames, config))
    return warnings


def _predict_frames(
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


def _result(
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
    if _unbiases(config):
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


# --- Noise2Noise ------------------------------------------------------------------------------------


def noise2noise_volumes(
    first: Volume,
    second: Volume,
    config: Optional[DenoiseConfig] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> DenoiseResult:
    """Denoises two acquisitions of the same anatomy with Noise2Noise: the network learns to predict
    each from the other (both ways round), then the result is predicted from both, as
    ``prediction.noise2noise_input`` says (``each``: the mean of the two predictions; ``mean``: one
    prediction from their mean). The residual is the acquisitions' mean minus the result.

    The noise of the two must be independent (separate scans or separate averages, not one scan
    and a filtered copy of it).
    """
    config = config or DenoiseConfig.for_method("noise2noise")
    _check_method(config, "noise2noise")
    _check_3d(first, "the first acquisition", config.allow_label_map)
    _check_3d(second, "the second acquisition", config.allow_label_map)
    _check_same_grid(first, second, ("first acquisition", "second acquisition"))
    if np.array_equal(first.array, second.array):
        raise InputError(
            "the two acquisitions are identical (one file given twice, or a copy): Noise2Noise learns from two "
            "acquisitions with independent noise, and from one it would learn to return its input unchanged"
        )
    warnings = _intensity_warnings(config, first, second)
    start = time.perf_counter()
    arrays = [np.asarray(v.array, dtype=np.float32) for v in (first, second)]
    normalizer = PercentileNormalizer.fit(np.stack(arrays), config.normalization.low_percentile, config.normalization.high_percentile)
    normalized = [normalizer.forward(a) for a in arrays]
    model = train_pairs(normalized, normalized[::-1], config, _spacing_zyx(first), progress, cancel)
    check_cancelled(cancel)
    predict_start = time.perf_counter()
    mean = (0.5 * (arrays[0].astype(np.float64) + arrays[1])).astype(np.float32)
    sources = arrays if config.prediction.noise2noise_input == "each" else [mean]
    denoised, spread = _predict_frames(model, sources, normalizer, config, progress, cancel)
    combined_spread = None if spread is None else np.sqrt(np.mean(spread.astype(np.float64) ** 2, axis=0)).astype(np.float32)
    extra = {"acquisitions": 2, "noise2noise_input": config.prediction.noise2noise_input, "warnings": warnings}
    return _result(
        first.with_array(mean),
        mean,
        denoised.mean(axis=0),
        combined_spread,
        model,
        config,
        _noise_sigma(arrays, config),
        (start, predict_start),
        extra,
    )


def noise2noise_series(
    series: Volume,
    config: Optional[DenoiseConfig] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> DenoiseResult:
    """Denoises a 4D ``[t, k, j, i]`` series with Noise2Noise between neighbouring frames (t to t+1
    and t+1 to t), one network for the whole series; every frame is then denoised from itself
    alone, so what changes between frames (an fMRI activation) is kept rather than averaged away.
    Returns a 4D result with the same frames and grid. The noise must be independent between frames
    (true of thermal noise, not of physiological fluctuations, which are kept as signal).
    """
    config = config or DenoiseConfig.for_method("noise2noise")
    _check_method(config, "noise2noise")
    _check_series(series, config.allow_label_map)
    warnings = _intensity_warnings(config, series)
    start = time.perf_counter()
    array = np.asarray(series.array, dtype=np.float32)
    normalizer = PercentileNormalizer.fit(array, config.normalization.low_percentile, config.normalization.high_percentile)
    normalized = normalizer.forward(array)
    frames = list(normalized)
    model = train_pairs(frames[:-1] + frames[1:], frames[1:] + frames[:-1], config, _spacing_zyx(series), progress, cancel)
    check_cancelled(cancel)
    predict_start = time.perf_counter()
    denoised, spread = _predict_frames(model, list(array), normalizer, config, progress, cancel)
    noise_sigma = _noise_sigma(list(array), config)
    extra = {"frames": int(array.shape[0]), "warnings": warnings}
    return _result(series, array, denoised, spread, model, config, noise_sigma, (start, predict_start), extra)


# --- supervised ---------------------------------------------------------------------------------------


def train_supervised(
    noisy: Sequence[Volume],
    clean: Sequence[Volume],
    config: Optional[DenoiseConfig] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> TrainedModel:
    """Trains a network to turn each noisy volume into its clean partner (same grid, same order) and
    returns it; apply it with :func:`denoise_with_model` and the same ``config``. Each pair is
    normalised by its noisy volume's percentiles. The first pair's voxel spacing plans a 3D network's
    pooling."""
    config = config or DenoiseConfig.for_method("supervised")
    _check_method(config, "supervised")
    if len(noisy) != len(clean) or not noisy:
        raise InputError(
            f"supervised training needs one clean volume per noisy volume, at least one pair; got {len(noisy)} noisy and {len(clean)} clean"
        )
    inputs, targets = [], []
    for index, (source, target) in enumerate(zip(noisy, clean), start=1):
        _check_3d(source, f"noisy volume {index}", config.allow_label_map)
        _check_3d(target, f"clean volume {index}", config.allow_label_map)
        _check_same_grid(source, target, (f"noisy volume {index}", f"clean volume {index}"))
        if np.array_equal(source.array, target.array):
            raise InputError(
                f"noisy volume {index} and its clean partner are identical (one file given twice, or a copy): "
                "the network would learn to return its input unchanged"
            )
        source_array = np.asarray(source.array, dtype=np.float32)
        normalizer = PercentileNormalizer.fit(source_array, config.normalization.low_percentile, config.normalization.high_percentile)
        inputs.append(normalizer.forward(source_array))
        targets.append(normalizer.forward(np.asarray(target.array, dtype=np.float32)))
    return train_pairs(inputs, targets, config, _spacing_zyx(noisy[0]), progress, cancel)


def denoise_with_model(
    volume: Volume,
    model: TrainedModel,
    config: DenoiseConfig,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> DenoiseResult:
    """Denoises ``volume`` (3D, or a 4D series frame by frame) with an already trained ``model`` and
    the configuration it was trained with, normalising by the volume's own percentiles. A blind-spot
    model with noise fusion gets this volume's noise sigma (estimated, or ``noise.sigma``). A
    constant volume comes back unchanged, with a warning in ``summary["warnings"]``."""
    if volume.is_4d:
        constant = _check_series(volume, config.allow_label_map, training=False)
    else:
        constant = _check_3d(volume, "the volume", config.allow_label_map, training=False)
    start = time.perf_counter()
    array = np.asarray(volume.array, dtype=np.float32)
    if constant:
        zeros = volume.with_array(np.zeros_like(array))
        warning = "the volume is constant: there is no noise to remove, so it is returned unchanged"
        return DenoiseResult(volume.with_array(array.copy()), zeros, None, {"method": config.method, "warnings": [warning]})
    warnings = _intensity_warnings(config, volume)
    frames = list(array) if array.ndim == 4 else [array]
    normalizer = PercentileNormalizer.fit(array, config.normalization.low_percentile, config.normalization.high_percentile)
    noise_sigma = _noise_sigma(frames, config) if _unbiases(config) or model.noise_variance is not None else None
    if model.noise_variance is not None:
        model = dataclasses.replace(model, noise_variance=(noise_sigma / normalizer.scale) ** 2)
    denoised, spread = _predict_frames(model, frames, normalizer, config, progress, cancel)
    if array.ndim == 3:
        denoised, spread = denoised[0], None if spread is None else spread[0]
    extra = {"applied_model": True, "warnings": warnings}
    return _result(volume, array, denoised, spread, model, config, noise_sigma, (start, start), extra)


def _spacing_zyx(volume: Volume) -> tuple[float, float, float]:
    return tuple(reversed(volume.spacing))  # type: ignore[return-value]


# --- files ----------------------------------------------------------------------------------------------


def _load(path: PathLike, progress: Optional[ProgressCallback], allow_4d: bool = False) -> Volume:
    report(progress, ProgressEvent("loading", 0.0, message=str(path)))
    volume = read_volume(path, allow_4d=allow_4d)
    report(progress, ProgressEvent("loading", 1.0, message="x".join(map(str, volume.array.shape[::-1]))))
    return volume


def _check_uncertainty(config: Optional[DenoiseConfig], uncertainty_path: Optional[PathLike]) -> None:
    if uncertainty_path is not None and not (config is not None and config.prediction.tta):
        raise ValueError("an uncertainty map needs test-time augmentation (prediction.tta / --tta)")


def _write(
    result: DenoiseResult,
    output_path: PathLike,
    residual_path: Optional[PathLike],
    uncertainty_path: Optional[PathLike],
    progress: Optional[ProgressCallback],
) -> dict[str, Any]:
    outputs = [(result.denoised, output_path)]
    if residual_path is not None:
        outputs.append((result.residual, residual_path))
    if uncertainty_path is not None and result.uncertainty is not None:
        outputs.append((result.uncertainty, uncertainty_path))
    written = write_outputs(outputs, progress)
    summary = dict(result.summary, output=str(written[0]))
    report(progress, ProgressEvent("done", 1.0, message="finished", summary=summary))
    return summary


def noise2noise_files(
    input_paths: Sequence[PathLike],
    output_path: PathLike,
    config: Optional[DenoiseConfig] = None,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    force: bool = False,
) -> dict[str, Any]:
    """Noise2Noise on files: two paths are two acquisitions (:func:`noise2noise_volumes`), one path a
    4D series (:func:`noise2noise_series`). The output paths and the inputs' sizes are checked before
    anything is read (pipeline.check_outputs; an output equal to an input needs ``force``); writes
    all outputs or none; returns the summary."""
    config = config or DenoiseConfig.for_method("noise2noise")
    _check_uncertainty(config, uncertainty_path)
    if len(input_paths) not in (1, 2):
        raise InputError(f"give two acquisitions or one 4D series; got {len(input_paths)} input files")
    check_outputs(list(input_paths), output_path, residual_path, uncertainty_path, force)
    if len(input_paths) == 1:
        result = noise2noise_series(_load(input_paths[0], progress, allow_4d=True), config, progress, cancel)
    else:
        first, second = (_load(path, progress) for path in input_paths)
        result = noise2noise_volumes(first, second, config, progress, cancel)
    check_cancelled(cancel)
    return _write(result, output_path, residual_path, uncertainty_path, progress)


def train_supervised_files(
    noisy_paths: Sequence[PathLike],
    clean_paths: Sequence[PathLike],
    config: Optional[DenoiseConfig] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> TrainedModel:
    """:func:`train_supervised` on files, read in order (noisy and clean paired by position); each
    file's size is checked from its header before any is read."""
    if len(noisy_paths) != len(clean_paths):
        raise InputError(f"give one clean file per noisy file; got {len(noisy_paths)} noisy and {len(clean_paths)} clean")
    for path in [*noisy_paths, *clean_paths]:
        check_voxel_count(read_header(path), what=f"'{Path(path).name}'")
    noisy = [_load(path, progress) for path in noisy_paths]
    clean = [_load(path, progress) for path in clean_paths]
    return train_supervised(noisy, clean, config, progress, cancel)


def denoise_file_with_model(
    input_path: PathLike,
    output_path: PathLike,
    model: TrainedModel,
    config: DenoiseConfig,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    force: bool = False,
) -> dict[str, Any]:
    """:func:`denoise_with_model` on a file (3D, or a 4D series); checks the output paths first (an
    output equal to the input needs ``force``), writes all outputs or none, returns the summary."""
    _check_uncertainty(config, uncertainty_path)
    check_outputs(input_path, output_path, residual_path, uncertainty_path, force)
    result = denoise_with_model(_load(input_path, progress, allow_4d=True), model, config, progress, cancel)
    check_cancelled(cancel)
    return _write(result, output_path, residual_path, uncertainty_path, progress)

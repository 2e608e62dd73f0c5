"""The self-supervised denoising run end to end, in memory: check the input, normalise, train (R2R
from the pretrained prior, or a Noise2Void flavour), predict, invert, and check the result. On a 4D
series, method ``mppca`` (the series default) takes the place of training and prediction
(mppca.py); everything around it is the same.

:func:`denoise_volume` works on a :class:`Volume` (what scripts call); :func:`denoise_series` does the
same for a 4D series ``[t, k, j, i]``, by MP-PCA or with one network for all frames; :func:`apply_trained_model` skips
the training and uses a model trained before (a saved model file). The runs on files, which the
command line and the Slicer worker make, are files.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from DeepDenoiseLib.core.device import fallback_warnings
from DeepDenoiseLib.core.metrics import estimate_foreground_noise_sigma
from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.core.validation import (
    InputError,
    VolumeCheck,
    check_result,
    check_series_object,
    check_volume_object,
)
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import PAIRED_METHODS, DenoiseConfig
from DeepDenoiseLib.denoise.inference import predict_volume
from DeepDenoiseLib.denoise.loss_weights import intensity_weights
from DeepDenoiseLib.denoise.method_rules import SERIES_ONLY_METHODS, check_series_method
from DeepDenoiseLib.denoise.mppca import ignored_settings_warning, mppca_series
from DeepDenoiseLib.denoise.n2v_training import train_noise2void
from DeepDenoiseLib.denoise.networks import TrainedModel
from DeepDenoiseLib.denoise.noise2noise import noise2noise_series
from DeepDenoiseLib.denoise.noise_models import NoiseTransform, fit_noise_model, foreground
from DeepDenoiseLib.denoise.r2r_training import SelfCheck, TrainingVolume, train_r2r
from DeepDenoiseLib.denoise.result import DenoiseResult
from DeepDenoiseLib.denoise.self_check import ErrorEstimate, check_error_estimate, check_residual

logger = logging.getLogger(__name__)

#: Methods that train one self-supervised model on the noisy data itself: on a series, one model
#: learns from patches of every frame.
SHARED_MODEL_SERIES_METHODS = ("r2r", "blindspot", "n2v", "n2v2", "structn2v")


def denoise_volume(
    volume: Volume,
    config: Optional[DenoiseConfig] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    companions: Sequence[Volume] = (),
) -> DenoiseResult:
    """Trains on ``volume`` itself (by default R2R from the pretrained prior) and returns it
    denoised, on exactly the same grid. With ``companions`` (other scans, 3D or 4D series, of a
    cohort; method ``r2r`` only) the one network learns from them too, each with its own noise
    level and normalisation, as a cohort's shared model does (``result.model``).

    A constant volume comes back unchanged with a warning in ``summary["warnings"]``. With the
    ``rician`` noise model the result is corrected for the Rician bias of magnitude images.

    >>> result = denoise_volume(read_volume("noisy.nii.gz"), DenoiseConfig.for_method("n2v2"))
    >>> result.summary["seconds"], result.summary["noise_sigma_after"]
    """
    return _run(volume, config or DenoiseConfig(), progress, cancel, trained=None, series=False, companions=companions)


def denoise_series(
    volume: Volume,
    config: Optional[DenoiseConfig] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    companions: Sequence[Volume] = (),
) -> DenoiseResult:
    """Denoises a 4D series ``[t, k, j, i]`` (fMRI, dynamic scans) and returns a series on the same grid.

    Without ``config``, by MP-PCA (method ``mppca``: local PCA across all frames, mppca.py), which
    needs at least 10 frames (a shorter series takes R2R, frame by frame). A ``config`` of a network method trains ONE model on patches drawn from
    every frame, then predicts frame by frame: the training time does not grow with the frame count.
    Normalisation is fitted on the whole series; the noise sigma is the median of the frames'
    estimates (or ``noise.sigma``). ``summary`` adds ``frames`` (and ``mppca`` for that method);
    ``metadata`` (time spacing and origin) is kept.

    >>> series = read_volume("bold.nii.gz", allow_4d=True)
    >>> result = denoise_series(series)  # MP-PCA
    >>> result = denoise_series(series, DenoiseConfig.for_method("blindspot", training={"budget_seconds": 300}))
    """
    config = config or DenoiseConfig.for_input(series=True, frames=len(volume.array))
    if config.method in SHARED_MODEL_SERIES_METHODS + SERIES_ONLY_METHODS:
        return _run(volume, config, progress, cancel, trained=None, series=True, companions=companions)
    if companions:
        raise ValueError(f"method {config.method!r} learns from one series; only method r2r also learns from other scans")
    if config.method == "noise2noise":
        return noise2noise_series(volume, config, progress, cancel)
    methods = ", ".join(SERIES_ONLY_METHODS + SHARED_MODEL_SERIES_METHODS)
    raise InputError(f"method {config.method!r} cannot denoise a 4D series; use one of {methods}")


def apply_trained_model(
    model: TrainedModel,
    volume: Volume,
    config: DenoiseConfig,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    series: bool = False,
) -> DenoiseResult:
    """Denoises ``volume`` (3D, or with ``series`` a 4D series frame by frame) with a model trained
    before on another volume, as :func:`denoise_volume` would have after its training: the
    normalisation is fitted on this volume with ``config``'s percentiles, and the noise sigma (for
    the fusion step and the Rician correction) is estimated on it unless ``config.noise.sigma``
    fixes it."""
    return _run(volume, config, progress, cancel, trained=model, series=series)


@dataclass
class _Prepared:
    """The input as the network sees it: stabilised and normalised, with its noise model."""

    array: np.ndarray
    noise: NoiseTransform
    normalizer: PercentileNormalizer
    normalized: np.ndarray

    @property
    def normalized_sigma(self) -> float:
        """The noise sigma in the normalised units the network works in."""
        return self.noise.sigma / self.normalizer.scale


def _prepare(array: np.ndarray, config: DenoiseConfig) -> _Prepared:
    noise = fit_noise_model(array, config.noise)
    stabilised = noise.forward(array)
    normalizer = PercentileNormalizer.fit(stabilised, config.normalization.low_percentile, config.normalization.high_percentile)
    return _Prepared(array, noise, normalizer, normalizer.forward(stabilised))


def _check(volume: Volume, config: DenoiseConfig, series: bool) -> VolumeCheck:
    if series:
        return check_series_object(volume, allow_label_map=config.allow_label_map)
    return check_volume_object(volume, allow_label_map=config.allow_label_map)


def _run(
    volume: Volume,
    config: DenoiseConfig,
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
    trained: Optional[TrainedModel],
    series: bool,
    companions: Sequence[Volume] = (),
) -> DenoiseResult:
    if companions and (trained is not None or config.method != "r2r"):
        raise ValueError(f"only method r2r learns from other scans (companions) as well; method {config.method!r} learns from one")
    if trained is None and config.method in PAIRED_METHODS:
        raise ValueError(
            f"method '{config.method}' learns from pairs of volumes: use DeepDenoiseLib.denoise.noise2noise or .supervised "
            "(deepdenoise n2n or deepdenoise supervised on the command line)"
        )
    start = time.perf_counter()
    check = _check(volume, config, series)
    check_series_method(config.method, int(np.shape(volume.array)[0]) if series else None)
    for warning in check.warnings:
        logger.warning(warning)
    array = np.asarray(volume.array, dtype=np.float32)
    summary: dict[str, Any] = {
        "method": config.method,
        "dimensions": config.model.dimensions,
        "shape_kji": list(array.shape[-3:]),
        "warnings": list(volume.metadata.get("warnings", [])) + list(check.warnings),
    }
    if series:
        summary["frames"] = int(array.shape[0])
    if check.is_constant:
        summary.update(seconds=time.perf_counter() - start, training_steps=0)
        zeros = volume.with_array(np.zeros_like(array))
        uncertainty = zeros if config.prediction.tta else None
        return DenoiseResult(volume.with_array(array.copy()), zeros, uncertainty, summary, config=config)

    prepared = _prepare(array, config)
    summary["warnings"] += prepared.noise.warnings
    if prepared.noise.correlation is not None and config.method not in ("r2r", *SERIES_ONLY_METHODS):
        summary["warnings"].append(
            f"the noise is alike in neighbouring voxels (correlation {prepared.noise.parameters['neighbour_correlation_kji']} along k, j, i): "
            f"method {config.method} assumes independent noise and leaves the correlated part; method r2r (the default) accounts for it"
        )
    r2r_check: Optional[SelfCheck] = None
    model: Optional[TrainedModel] = None
    if config.method in SERIES_ONLY_METHODS:
        predict_start = time.perf_counter()
        outcome = mppca_series(prepared.normalized, config, prepared.normalized_sigma, progress, cancel, prepared.noise.colour)
        denoised = prepared.noise.inverse(prepared.normalizer.inverse(outcome.denoised)).astype(np.float32)
        spread, device, error_check = None, outcome.device, outcome.error_check
        outcome.figures["local_sigma_median"] *= prepared.normalizer.scale
        summary["mppca"] = outcome.figures
        summary["warnings"] += ignored_settings_warning(config)
    else:
        prepared_companions, left_out = _companions(companions, config)
        summary["warnings"] += left_out
        model, r2r_check = _model(volume, config, prepared, trained, progress, cancel, prepared_companions)
        if companions:  # the constant ones are left out
            summary["trained_on_volumes"] = 1 + len(prepared_companions)
        check_cancelled(cancel)
        predict_start = time.perf_counter()
        denoised, spread, checked_output = _predict(model, prepared, config, progress, cancel)
        device = model.device
    check_result(array, denoised, "the denoised volume")
    summary["warnings"] += fallback_warnings(config.training.device, device)
    residual_check = check_residual(array, denoised, prepared.noise)
    if model is not None:
        report(progress, ProgressEvent("predicting", 1.0, message="checking the result"))
        error_check = _error_estimate(model, prepared, config, checked_output, cancel)
    summary["warnings"] += error_check.implausible_warnings()
    summary["self_check"] = {
        **error_check.to_summary(),
        "residual_to_noise": residual_check.to_summary()["residual_to_noise"],
        **({"r2r": r2r_check.to_summary()} if r2r_check else {}),
    }
    failure = _self_check_failure(residual_check.passed, error_check.passed, r2r_check, config.method)
    summary["self_check"]["passed"] = failure is None
    if failure:
        summary["warnings"].append(failure)
        logger.warning(failure)
        denoised = array.copy()
        spread = None if spread is None else np.zeros_like(spread)
    residual = (array - denoised).astype(np.float32)
    uncertainty = None if spread is None else volume.with_array(spread)
    if trained is None and model is not None:
        summary.update(
            training_seconds=round(model.history.seconds, 2),
            training_steps=model.history.steps,
            stopped_by=model.history.stopped_by,
            training_precision=model.history.precision,
            best_validation_loss=model.history.best_validation_loss,
        )
        if model.history.initial_validation_loss is not None:  # the pretrained prior's score, before any step
            summary["initial_validation_loss"] = model.history.initial_validation_loss
    else:
        summary.update(training_seconds=0.0, training_steps=0)
    summary.update(
        seconds=round(time.perf_counter() - start, 2),
        prediction_seconds=round(time.perf_counter() - predict_start, 2),
        device=str(device),
        noise_model=config.noise.model,
        noise_parameters=prepared.noise.parameters,
        noise_sigma_fused=prepared.noise.sigma,
        noise_sigma_before=_noise_sigma(array),
        noise_sigma_after=_noise_sigma(denoised),
        residual_std=float(np.std(residual)),
    )
    history = None if model is None else model.history
    result = DenoiseResult(volume.with_array(denoised), volume.with_array(residual), uncertainty, summary, history)
    if trained is None:
        result.model, result.normalizer, result.config = model, prepared.normalizer, config
    return result


def _model(
    volume: Volume,
    config: DenoiseConfig,
    prepared: _Prepared,
    trained: Optional[TrainedModel],
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
    companions: Sequence[_Prepared] = (),
) -> tuple[TrainedModel, Optional[SelfCheck]]:
    """The network that denoises: trained on the volume now (R2R's held-out check with it), or the
    model trained before, told this volume's noise level."""
    if trained is not None:
        # The fusion step weighs each voxel's own value by this volume's noise level, not the training volume's.
        variance = None if trained.noise_variance is None else prepared.normalized_sigma**2
        return dataclasses.replace(trained, noise_variance=variance), None
    spacing_zyx = (volume.spacing[2], volume.spacing[1], volume.spacing[0])
    if config.method == "r2r":
        trained_on = [
            TrainingVolume(one.normalized, one.normalized_sigma, intensity_weights(one.normalized, one.normalizer, one.noise))
            for one in (prepared, *companions)
        ]
        return train_r2r(trained_on, config, spacing_zyx, progress, cancel, prepared.noise.correlation)
    return train_noise2void(prepared.normalized, config, spacing_zyx, progress, cancel, noise_sigma=prepared.normalized_sigma), None


def _companions(volumes: Sequence[Volume], config: DenoiseConfig) -> tuple[list[_Prepared], list[str]]:
    """Each companion scan checked and prepared as the volume is (its own noise fit and
    normalisation); a constant one is left out, and so is one the checks refuse (NaN, a label map,
    intensities the noise model cannot take), with a warning that says why: it only narrows the
    training."""
    prepared_ones, left_out = [], []
    for index, companion in enumerate(volumes, start=1):
        try:
            if _check(companion, config, np.ndim(companion.array) == 4).is_constant:
                continue
            prepared = _prepare(np.asarray(companion.array, dtype=np.float32), config)
        except InputError as error:
            name = companion.metadata.get("source_path", f"companion scan {index}")
            left_out.append(f"{name} was left out of the training: {error}")
            continue
        prepared_ones.append(prepared)
    return prepared_ones, left_out


def _error_estimate(
    model: TrainedModel,
    prepared: _Prepared,
    config: DenoiseConfig,
    checked_output: np.ndarray,
    cancel: Optional[CancelToken],
) -> ErrorEstimate:
    """SURE's estimate of the result's error in the tissue of the volume (the middle frame of a
    series), in the normalised stabilised domain where the network works (noise sigma
    ``prepared.normalized_sigma``); ``checked_output`` is the network's prediction there."""
    normalized = prepared.normalized if prepared.normalized.ndim == 3 else prepared.normalized[len(prepared.normalized) // 2]
    return check_error_estimate(
        lambda values: predict_volume(model, values, config.prediction, None, cancel).denoised,
        normalized,
        prepared.normalized_sigma,
        output=checked_output,
        colour=prepared.noise.colour,
        region=foreground(normalized),
    )


def _self_check_failure(residual_passed: bool, error_passed: bool, r2r_check: Optional[SelfCheck], method: str = "r2r") -> Optional[str]:
    """What to tell the user when the run's own checks reject its result (None when they pass); the
    advice follows the ``method``: MP-PCA has no budget to lengthen."""
    advice = "check the noise model (CT and other signed data: gaussian), or try a longer budget or another method"
    remover = "the network"
    if method in SERIES_ONLY_METHODS:
        advice = "check the noise model, or denoise this series with a network method (--method r2r), frame by frame"
        remover = "the local PCA"
    if r2r_check is not None and not r2r_check.passed:
        return (
            "self-check failed: on held-out patches the trained network did not beat returning its input, so the input "
            f"is returned unchanged; {advice}"
        )
    if not error_passed:
        return (
            "self-check failed: the estimated error of the result (SURE, from the noise level) is no lower than the "
            f"input's, so the input is returned unchanged; {advice}"
        )
    if not residual_passed:
        return (
            f"self-check failed: {remover} removed much more than the noise from the tissue (structure, not just noise), "
            f"so the input is returned unchanged; {advice}"
        )
    return None


def _noise_sigma(denoised: np.ndarray) -> float:
    if denoised.ndim == 4:
        return float(np.median([estimate_foreground_noise_sigma(frame) for frame in denoised]))
    return float(estimate_foreground_noise_sigma(denoised))


def _predict(
    model: TrainedModel,
    prepared: _Prepared,
    config: DenoiseConfig,
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    """The denoised volume (or series, frame by frame) in the input's units, the TTA spread, and the
    network's prediction of the (middle) frame in the normalised domain, which the self-check judges."""
    frames = prepared.normalized if prepared.normalized.ndim == 4 else prepared.normalized[np.newaxis]
    denoised = np.empty(frames.shape, dtype=np.float32)
    spread = np.empty(frames.shape, dtype=np.float32) if config.prediction.tta else None
    checked = frames[len(frames) // 2]
    for index, frame in enumerate(frames):
        frame_progress = _frame_progress(progress, index, len(frames)) if len(frames) > 1 else progress
        prediction = predict_volume(model, frame, config.prediction, frame_progress, cancel)
        if index == len(frames) // 2:
            checked = prediction.denoised
        stabilised = prepared.normalizer.inverse(prediction.denoised)
        denoised[index] = prepared.noise.inverse(stabilised)
        if spread is not None and prediction.spread is not None:
            spread[index] = prepared.noise.inverse_spread(stabilised, prediction.spread * np.float32(prepared.normalizer.scale))
    if prepared.normalized.ndim == 3:
        return denoised[0], None if spread is None else spread[0], checked
    return denoised, spread, checked


def _frame_progress(progress: Optional[ProgressCallback], index: int, count: int) -> Optional[ProgressCallback]:
    """Maps one frame's 0..1 onto its share of the prediction stage, naming the frame."""
    if progress is None:
        return None

    def forward(event: ProgressEvent) -> None:
        message = f"frame {index + 1}/{count}" + (f", {event.message}" if event.message else "")
        progress(dataclasses.replace(event, fraction=(index + event.fraction) / count, message=message))

    return forward

"""Supervised denoising: learn from (noisy, clean) pairs such as low-dose and full-dose CT or single
and many-average MRI (:func:`train_supervised`), then denoise new volumes (:func:`denoise_with_model`).
The model is a :class:`~DeepDenoiseLib.denoise.networks.TrainedModel`; with the configuration it was
trained with, that is everything needed to save it and apply it later.

>>> config = DenoiseConfig.for_method("supervised", training={"budget_seconds": 300})
>>> model = train_supervised([read_volume("low_dose.nii.gz")], [read_volume("full_dose.nii.gz")], config)
>>> result = denoise_with_model(read_volume("new_low_dose.nii.gz"), model, config)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Optional

import numpy as np

from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise import pairs
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.networks import TrainedModel
from DeepDenoiseLib.denoise.pair_training import train_pairs
from DeepDenoiseLib.denoise.result import DenoiseResult


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
    pairs.check_method(config, "supervised")
    if len(noisy) != len(clean) or not noisy:
        raise InputError(
            f"supervised training needs one clean volume per noisy volume, at least one pair; got {len(noisy)} noisy and {len(clean)} clean"
        )
    inputs, targets = [], []
    for index, (source, target) in enumerate(zip(noisy, clean), start=1):
        pairs.check_volume(source, f"noisy volume {index}", config.allow_label_map)
        pairs.check_volume(target, f"clean volume {index}", config.allow_label_map)
        pairs.check_same_grid(source, target, (f"noisy volume {index}", f"clean volume {index}"))
        if np.array_equal(source.array, target.array):
            raise InputError(
                f"noisy volume {index} and its clean partner are identical (one file given twice, or a copy): "
                "the network would learn to return its input unchanged"
            )
        source_array = np.asarray(source.array, dtype=np.float32)
        normalizer = PercentileNormalizer.fit(source_array, config.normalization.low_percentile, config.normalization.high_percentile)
        inputs.append(normalizer.forward(source_array))
        targets.append(normalizer.forward(np.asarray(target.array, dtype=np.float32)))
    return train_pairs(inputs, targets, config, pairs.spacing_zyx(noisy[0]), progress, cancel)


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
        constant = pairs.check_series(volume, config.allow_label_map, training=False)
    else:
        constant = pairs.check_volume(volume, "the volume", config.allow_label_map, training=False)
    start = time.perf_counter()
    array = np.asarray(volume.array, dtype=np.float32)
    if constant:
        zeros = volume.with_array(np.zeros_like(array))
        warning = "the volume is constant: there is no noise to remove, so it is returned unchanged"
        return DenoiseResult(volume.with_array(array.copy()), zeros, None, {"method": config.method, "warnings": [warning]})
    warnings = pairs.intensity_warnings(config, volume)
    frames = list(array) if array.ndim == 4 else [array]
    normalizer = PercentileNormalizer.fit(array, config.normalization.low_percentile, config.normalization.high_percentile)
    noise_sigma = pairs.correction_sigma(frames, config) if pairs.unbiases(config) or model.noise_variance is not None else None
    if model.noise_variance is not None and noise_sigma is not None:
        model = dataclasses.replace(model, noise_variance=(noise_sigma / normalizer.scale) ** 2)
    denoised, spread = pairs.predict_frames(model, frames, normalizer, config, progress, cancel)
    if array.ndim == 3:
        denoised, spread = denoised[0], None if spread is None else spread[0]
    extra = {"applied_model": True, "warnings": warnings}
    return pairs.paired_result(volume, array, denoised, spread, model, config, noise_sigma, (start, start), extra)

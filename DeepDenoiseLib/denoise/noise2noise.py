"""Noise2Noise (Lehtinen et al. 2018): a network learns to predict one noisy acquisition of an anatomy
from another with independent noise, which is learning to predict the clean signal.

* :func:`noise2noise_volumes`: two noisy acquisitions of the same anatomy on one grid (repeat scans,
  even and odd averages). The network learns to predict each from the other; the result is
  predicted from both (``prediction.noise2noise_input``).
* :func:`noise2noise_series`: a 4D ``[t, k, j, i]`` series (fMRI, dynamic scans). Neighbouring
  frames are the pairs (t to t+1 and back), one network serves the whole series, and each frame is
  denoised from itself alone, so the changes from frame to frame (the temporal signal) stay its own.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, check_cancelled
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise import pairs
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.pair_training import train_pairs
from DeepDenoiseLib.denoise.result import DenoiseResult


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
    pairs.check_method(config, "noise2noise")
    pairs.check_volume(first, "the first acquisition", config.allow_label_map)
    pairs.check_volume(second, "the second acquisition", config.allow_label_map)
    pairs.check_same_grid(first, second, ("first acquisition", "second acquisition"))
    if np.array_equal(first.array, second.array):
        raise InputError(
            "the two acquisitions are identical (one file given twice, or a copy): Noise2Noise learns from two "
            "acquisitions with independent noise, and from one it would learn to return its input unchanged"
        )
    warnings = pairs.intensity_warnings(config, first, second)
    start = time.perf_counter()
    arrays = [np.asarray(v.array, dtype=np.float32) for v in (first, second)]
    normalizer = PercentileNormalizer.fit(np.stack(arrays), config.normalization.low_percentile, config.normalization.high_percentile)
    normalized = [normalizer.forward(a) for a in arrays]
    model = train_pairs(normalized, normalized[::-1], config, pairs.spacing_zyx(first), progress, cancel)
    check_cancelled(cancel)
    predict_start = time.perf_counter()
    mean = (0.5 * (arrays[0].astype(np.float64) + arrays[1])).astype(np.float32)
    sources = arrays if config.prediction.noise2noise_input == "each" else [mean]
    denoised, spread = pairs.predict_frames(model, sources, normalizer, config, progress, cancel)
    combined_spread = None if spread is None else np.sqrt(np.mean(spread.astype(np.float64) ** 2, axis=0)).astype(np.float32)
    extra = {"acquisitions": 2, "noise2noise_input": config.prediction.noise2noise_input, "warnings": warnings}
    return pairs.paired_result(
        first.with_array(mean),
        mean,
        denoised.mean(axis=0),
        combined_spread,
        model,
        config,
        pairs.correction_sigma(arrays, config),
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
    pairs.check_method(config, "noise2noise")
    pairs.check_series(series, config.allow_label_map)
    warnings = pairs.intensity_warnings(config, series)
    start = time.perf_counter()
    array = np.asarray(series.array, dtype=np.float32)
    normalizer = PercentileNormalizer.fit(array, config.normalization.low_percentile, config.normalization.high_percentile)
    normalized = normalizer.forward(array)
    frames = list(normalized)
    model = train_pairs(frames[:-1] + frames[1:], frames[1:] + frames[:-1], config, pairs.spacing_zyx(series), progress, cancel)
    check_cancelled(cancel)
    predict_start = time.perf_counter()
    denoised, spread = pairs.predict_frames(model, list(array), normalizer, config, progress, cancel)
    noise_sigma = pairs.correction_sigma(list(array), config)
    extra = {"frames": int(array.shape[0]), "warnings": warnings}
    return pairs.paired_result(series, array, denoised, spread, model, config, noise_sigma, (start, predict_start), extra)

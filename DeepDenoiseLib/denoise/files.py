"""Denoising runs on files, as the command line runs them: every one checks its outputs (and the
inputs' sizes) before reading anything, reads, runs, and writes all its outputs or none
(core/run_files.py). An output equal to an input is refused unless ``force``.

>>> denoise_file("noisy.nii.gz", "denoised.nii.gz", DenoiseConfig.for_method("n2v2"), save_model_path="brain.safetensors")
>>> apply_file("brain.safetensors", "other.nii.gz", "other_denoised.nii.gz")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from DeepDenoiseLib.core.atomic_write import FileWriter
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.core.run_files import PathLike, check_outputs, load_volume, write_outputs_and_finish
from DeepDenoiseLib.core.validation import InputError, check_voxel_count
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_header
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.method_rules import check_saves_model, check_uncertainty_request
from DeepDenoiseLib.denoise.model_file import model_destination, model_writer
from DeepDenoiseLib.denoise.networks import TrainedModel
from DeepDenoiseLib.denoise.noise2noise import noise2noise_series, noise2noise_volumes
from DeepDenoiseLib.denoise.pipeline import denoise_series, denoise_volume
from DeepDenoiseLib.denoise.result import DenoiseResult
from DeepDenoiseLib.denoise.saved_model import load_model
from DeepDenoiseLib.denoise.supervised import denoise_with_model, train_supervised


def denoise_file(
    input_path: PathLike,
    output_path: PathLike,
    config: Optional[DenoiseConfig] = None,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    save_model_path: Optional[PathLike] = None,
    force: bool = False,
    companions: Sequence[Volume] = (),
) -> dict[str, Any]:
    """Reads ``input_path``, denoises it and writes the outputs; returns the run's summary.

    A 4D file (NIfTI series) is denoised with :func:`denoise_series` and written back as a series
    with the same geometry, time spacing and frame count. Without ``config`` the default method is
    the input's: MP-PCA for a series of at least 10 frames, R2R for one volume or a shorter series. With ``save_model_path`` the trained model
    is saved there too (model_file.py), to denoise other volumes with :func:`apply_file`; MP-PCA
    trains none, and is refused with it. ``companions``: other scans (already read) that the network
    learns from as well (method ``r2r``; a cohort's shared model, pipeline.denoise_volume).
    """
    _check_uncertainty_request(uncertainty_path, config or DenoiseConfig())
    if save_model_path is not None:
        if config is not None:
            check_saves_model(config.method)
        save_model_path = model_destination(save_model_path)
    check_outputs(input_path, output_path, residual_path, uncertainty_path, force, save_model_path)
    volume = load_volume(input_path, progress, outputs=(output_path, residual_path, uncertainty_path))
    config = config or DenoiseConfig.for_input(volume.is_4d, len(volume.array))
    if save_model_path is not None:
        check_saves_model(config.method)
    run = denoise_series if volume.is_4d else denoise_volume
    result = run(volume, config, progress, cancel, companions)
    model = None
    if save_model_path is not None:
        if result.model is None:
            raise InputError(f"'{input_path}' is constant: no model was trained, so there is none to save")
        noise_sigma = result.summary.get("noise_sigma_fused")
        model = model_writer(save_model_path, result.model, config, result.normalizer, noise_sigma, result.summary)
    return _write_result(result, output_path, residual_path, uncertainty_path, progress, cancel, model)


def apply_file(
    model_path: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    tta: Optional[bool] = None,
    device: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    force: bool = False,
) -> dict[str, Any]:
    """Denoises ``input_path`` (3D, or a 4D series frame by frame) with the saved model at
    ``model_path`` and writes the outputs as :func:`denoise_file` does; returns the run's summary.
    ``tta`` and ``device`` override the saved configuration's prediction settings."""
    check_outputs(input_path, output_path, residual_path, uncertainty_path, force)
    report(progress, ProgressEvent("loading", 0.0, message=str(model_path)))
    saved = load_model(model_path, device=device)
    if tta is not None:
        saved = saved.with_prediction(tta=tta)
    _check_uncertainty_request(uncertainty_path, saved.config)
    volume = load_volume(input_path, progress, outputs=(output_path, residual_path, uncertainty_path))
    result = saved.apply_series(volume, progress, cancel) if volume.is_4d else saved.apply(volume, progress, cancel)
    result.summary["model"] = str(saved.path)
    return _write_result(result, output_path, residual_path, uncertainty_path, progress, cancel)


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
    4D series (:func:`noise2noise_series`); returns the summary."""
    config = config or DenoiseConfig.for_method("noise2noise")
    _check_uncertainty_request(uncertainty_path, config)
    if len(input_paths) not in (1, 2):
        raise InputError(f"give two acquisitions or one 4D series; got {len(input_paths)} input files")
    check_outputs(list(input_paths), output_path, residual_path, uncertainty_path, force)
    if len(input_paths) == 1:
        result = noise2noise_series(
            load_volume(input_paths[0], progress, outputs=(output_path, residual_path, uncertainty_path)), config, progress, cancel
        )
    else:
        first, second = (
            load_volume(path, progress, allow_4d=False, outputs=(output_path, residual_path, uncertainty_path)) for path in input_paths
        )
        result = noise2noise_volumes(first, second, config, progress, cancel)
    return _write_result(result, output_path, residual_path, uncertainty_path, progress, cancel)


def supervised_files(
    noisy_paths: Sequence[PathLike],
    clean_paths: Sequence[PathLike],
    input_path: PathLike,
    output_path: PathLike,
    config: Optional[DenoiseConfig] = None,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    force: bool = False,
) -> dict[str, Any]:
    """Trains on the (noisy, clean) files (:func:`train_supervised_files`), then denoises
    ``input_path`` with the network (:func:`denoise_file_with_model`); every output is checked before
    the training, not after it. Returns the summary."""
    config = config or DenoiseConfig.for_method("supervised")
    _check_uncertainty_request(uncertainty_path, config)
    check_outputs([input_path, *noisy_paths, *clean_paths], output_path, residual_path, uncertainty_path, force)
    model = train_supervised_files(noisy_paths, clean_paths, config, progress, cancel)
    return denoise_file_with_model(input_path, output_path, model, config, residual_path, uncertainty_path, progress, cancel, force)


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
    noisy = [load_volume(path, progress, allow_4d=False) for path in noisy_paths]
    clean = [load_volume(path, progress, allow_4d=False) for path in clean_paths]
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
    """:func:`denoise_with_model` on a file (3D, or a 4D series); returns the summary."""
    _check_uncertainty_request(uncertainty_path, config)
    check_outputs(input_path, output_path, residual_path, uncertainty_path, force)
    result = denoise_with_model(
        load_volume(input_path, progress, outputs=(output_path, residual_path, uncertainty_path)), model, config, progress, cancel
    )
    return _write_result(result, output_path, residual_path, uncertainty_path, progress, cancel)


def _check_uncertainty_request(uncertainty_path: Optional[PathLike], config: DenoiseConfig) -> None:
    check_uncertainty_request(
        uncertainty_path is not None, config.prediction.tta, "prediction.tta / --tta", "leave out the uncertainty output (--uncertainty)"
    )


def _write_result(
    result: DenoiseResult,
    output_path: PathLike,
    residual_path: Optional[PathLike],
    uncertainty_path: Optional[PathLike],
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
    model: Optional[tuple[Path, FileWriter]] = None,
) -> dict[str, Any]:
    """Writes the result's volumes (and ``model``, a path and its writer) all or none; the summary."""
    check_cancelled(cancel)
    outputs: list[tuple[Volume, PathLike]] = [(result.denoised, output_path)]
    if residual_path is not None:
        outputs.append((result.residual, residual_path))
    if uncertainty_path is not None and result.uncertainty is not None:
        outputs.append((result.uncertainty, uncertainty_path))
    return write_outputs_and_finish(outputs, result.summary, progress, [model] if model is not None else None)

"""DeepDenoise: self-supervised (and paired: Noise2Noise, supervised) denoising of medical image
volumes, without Slicer or Qt.

>>> from DeepDenoiseLib import read_volume, denoise_volume, write_volume, DenoiseConfig
>>> noisy = read_volume("noisy.nii.gz")
>>> result = denoise_volume(noisy, DenoiseConfig.for_method("n2v2"))
>>> write_volume(result.denoised, "denoised.nii.gz")

Names are imported on first use, so ``import DeepDenoiseLib`` stays cheap and never loads torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Volume": "core.volume",
    "DenoiseConfig": "denoise.config",
    "ModelConfig": "denoise.config",
    "MaskingConfig": "denoise.config",
    "TrainingConfig": "denoise.config",
    "PredictionConfig": "denoise.config",
    "SeriesConfig": "denoise.series_config",
    "NormalizationConfig": "core.normalization",
    "CancelToken": "core.progress",
    "Cancelled": "core.progress",
    "ProgressEvent": "core.progress",
    "read_volume": "core.volume_io",
    "write_volume": "core.volume_io",
    "InputError": "core.validation",
    "denoise_volume": "denoise.pipeline",
    "denoise_series": "denoise.pipeline",
    "denoise_file": "denoise.files",
    "apply_file": "denoise.files",
    "DenoiseResult": "denoise.result",
    "save_model": "denoise.model_file",
    "load_model": "denoise.saved_model",
    "SavedModel": "denoise.saved_model",
    "list_models": "denoise.model_folder",
    "default_model_folder": "denoise.model_folder",
    "noise2noise_volumes": "denoise.noise2noise",
    "noise2noise_series": "denoise.noise2noise",
    "train_supervised": "denoise.supervised",
    "denoise_with_model": "denoise.supervised",
    "SuperResConfig": "superres.config",
    "superres_volume": "superres.pipeline",
    "superres_file": "superres.pipeline",
    "SuperResResult": "superres.pipeline",
    "batch_denoise": "cohort.api",
    "CohortReport": "cohort.report",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'DeepDenoiseLib' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), name)

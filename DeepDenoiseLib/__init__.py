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
    "Volume": "volume",
    "DenoiseConfig": "config",
    "ModelConfig": "config",
    "MaskingConfig": "config",
    "TrainingConfig": "config",
    "PredictionConfig": "config",
    "NormalizationConfig": "config",
    "CancelToken": "progress",
    "Cancelled": "progress",
    "ProgressEvent": "progress",
    "read_volume": "volume_io",
    "write_volume": "volume_io",
    "InputError": "validation",
    "denoise_volume": "pipeline",
    "denoise_series": "pipeline",
    "denoise_file": "pipeline",
    "apply_file": "pipeline",
    "DenoiseResult": "pipeline",
    "save_model": "model_file",
    "load_model": "model_file",
    "SavedModel": "model_file",
    "list_models": "model_folder",
    "default_model_folder": "model_folder",
    "noise2noise_volumes": "paired",
    "noise2noise_series": "paired",
    "train_supervised": "paired",
    "denoise_with_model": "paired",
    "SuperResConfig": "config",
    "superres_volume": "superres",
    "superres_file": "superres",
    "SuperResResult": "superres",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'DeepDenoiseLib' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), name)

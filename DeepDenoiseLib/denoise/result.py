"""What a denoising run returns: the denoised volume, what was removed, the uncertainty, the run's
summary and, after training, what saving the model takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.training_loop import TrainingHistory
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise import model_file
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.method_rules import check_saves_model
from DeepDenoiseLib.denoise.model_record import PathLike
from DeepDenoiseLib.denoise.networks import TrainedModel


@dataclass
class DenoiseResult:
    """The denoised volume on the input's grid, what was removed (input minus output), the spread
    across test-time augmentations when they ran, and the run's closing figures.

    After training, ``model``, ``normalizer`` (fitted on the training volume) and ``config`` are
    what :meth:`save_model` writes, so that the model can denoise other volumes later."""

    denoised: Volume
    residual: Volume
    uncertainty: Optional[Volume]
    summary: dict[str, Any] = field(default_factory=dict)
    history: Optional[TrainingHistory] = None
    model: Optional[TrainedModel] = None
    normalizer: Optional[PercentileNormalizer] = None
    config: Optional[DenoiseConfig] = None

    def save_model(self, path: PathLike) -> Path:
        """Writes the trained model to ``path`` (a ``.safetensors`` file, see model_file.py)."""
        if self.config is not None:
            check_saves_model(self.config.method)
        if self.model is None or self.config is None:
            raise ValueError("this result has no trained model to save (nothing was trained: a constant volume, or a saved model applied)")
        return model_file.save_model(
            path,
            self.model,
            self.config,
            normalizer=self.normalizer,
            noise_sigma=self.summary.get("noise_sigma_fused"),
            summary=self.summary,
        )

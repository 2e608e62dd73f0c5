"""A saved model loaded and ready to denoise other volumes: :func:`load_model` and :class:`SavedModel`
(the file format and its checks are model_file.py's).

>>> saved = load_model("brain_t1.safetensors")
>>> write_volume(saved.apply(read_volume("scan2.nii.gz")).denoised, "scan2_denoised.nii.gz")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback
from DeepDenoiseLib.core.settings import deep_merge
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.model_file import read_model_file
from DeepDenoiseLib.denoise.model_record import PathLike, model_name
from DeepDenoiseLib.denoise.networks import TrainedModel
from DeepDenoiseLib.denoise.pipeline import apply_trained_model
from DeepDenoiseLib.denoise.result import DenoiseResult


@dataclass
class SavedModel:
    """A model loaded from a file, ready to denoise other volumes with :meth:`apply` (3D) or
    :meth:`apply_series` (4D, frame by frame). ``record`` is the file's JSON record."""

    path: Path
    config: DenoiseConfig
    model: TrainedModel
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return model_name(self.path)

    def with_prediction(self, **settings: Any) -> SavedModel:
        """A copy whose prediction settings (``tta``, ``tile_size``...) are overridden."""
        config = DenoiseConfig.from_dict(deep_merge(self.config.to_dict(), {"prediction": settings}))
        return dataclasses.replace(self, config=config)

    def apply(self, volume: Volume, progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> DenoiseResult:
        """Denoises the 3D ``volume`` and returns a :class:`~DeepDenoiseLib.denoise.result.DenoiseResult` on its
        grid; normalisation and noise sigma are fitted on ``volume`` itself (see apply_trained_model)."""
        self._check_target(volume, series=False)
        return apply_trained_model(self.model, volume, self.config, progress, cancel, series=False)

    def apply_series(
        self, volume: Volume, progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None
    ) -> DenoiseResult:
        """Denoises every frame of the 4D series ``volume`` ``[t, k, j, i]`` with this one model."""
        self._check_target(volume, series=True)
        return apply_trained_model(self.model, volume, self.config, progress, cancel, series=True)

    def _check_target(self, volume: Volume, series: bool) -> None:
        components = int(volume.metadata.get("components", 1))
        if components > 1:
            raise InputError(
                f"the model '{self.name}' denoises scalar volumes (one value per voxel); this one has "
                f"{components} components per voxel: extract one component first"
            )
        ndim = np.ndim(volume.array)
        if series and ndim != 4:
            raise InputError(
                f"apply_series takes a 4D series [t, k, j, i]; got {ndim} dimensions {tuple(np.shape(volume.array))}: "
                "use apply for a 3D volume"
            )
        if not series and ndim == 4:
            raise InputError(
                f"got a 4D series of {np.shape(volume.array)[0]} frames where the model '{self.name}' expects one 3D "
                "volume: use apply_series to denoise every frame with it (the command line does so for 4D files)"
            )


def load_model(path: PathLike, device: Optional[str] = None) -> SavedModel:
    """Reads a model file written by :func:`~DeepDenoiseLib.denoise.model_file.save_model` and rebuilds
    its network, refusing (with an :class:`InputError`) anything pickled, changed, damaged or not
    matching the network.

    ``device`` overrides the saved ``training.device`` (auto: a GPU when there is one)."""
    path = Path(path).expanduser()
    config, model, record = read_model_file(path, device)
    return SavedModel(path=path, config=config, model=model, record=record)

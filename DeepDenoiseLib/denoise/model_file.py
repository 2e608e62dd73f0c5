"""Trained models saved in a file that runs no code when loaded: safetensors weights plus a JSON record.

One model is one ``NAME.safetensors`` file. The safetensors header's metadata holds a JSON record
(model_record.py): the format version, the full run configuration, the network's geometry (what
:func:`~DeepDenoiseLib.denoise.networks.build_network` needs to rebuild the same network), the
normalisation, the noise model, a training summary, the library version, and SHA-256 digests of
the weights and of the record itself. Pickle is never used: a pickled file (``torch.save``) can run
any code when it is loaded, so it is refused before anything is read from it.

Loading refuses, each with an :class:`~DeepDenoiseLib.core.validation.InputError` that says what is wrong:
pickles, files that are not safetensors or carry no DeepDenoise record, unknown format versions,
unknown keys, a configuration the library refuses, digests that do not match (the file was changed
or damaged), and weights whose names or shapes do not fit the rebuilt network. The digests detect
damage and edits made without recomputing them; they are not a signature, so only load model files
from people you trust.

>>> result = denoise_volume(read_volume("scan1.nii.gz"), config)
>>> save_model("brain_t1.safetensors", result.model, config, result.normalizer)  # or result.save_model(...)
>>> saved = load_model("brain_t1.safetensors")     # saved_model.py
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch

from DeepDenoiseLib.core.atomic_write import FileWriter, write_files
from DeepDenoiseLib.core.device import select_device
from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.training_loop import TrainingHistory
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.model_record import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_HEADER_BYTES,
    METADATA_KEY,
    MODEL_EXTENSION,
    PathLike,
    record_digest,
    record_from_bytes,
)
from DeepDenoiseLib.denoise.networks import TrainedModel, build_network

# --- Saving ----------------------------------------------------------------------------------------


def save_model(
    path: PathLike,
    model: TrainedModel,
    config: DenoiseConfig,
    normalizer: Optional[PercentileNormalizer] = None,
    noise_sigma: Optional[float] = None,
    summary: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Writes ``model`` with its configuration to ``path`` (``.safetensors``), atomically.

    ``normalizer`` (fitted on the training volume) and ``noise_sigma`` (estimated on it, in its
    units) are kept for the record: applying the model fits both again on each new volume.
    ``summary`` is the run's summary (frames and shape of the training data). Returns the path.
    """
    return write_files([model_writer(path, model, config, normalizer, noise_sigma, summary)])[0]


def model_writer(
    path: PathLike,
    model: TrainedModel,
    config: DenoiseConfig,
    normalizer: Optional[PercentileNormalizer] = None,
    noise_sigma: Optional[float] = None,
    summary: Optional[Mapping[str, Any]] = None,
) -> tuple[Path, FileWriter]:
    """``path`` (checked) and a writer of the model file, for writing it together with a run's other
    outputs, all or none (atomic_write.write_files); arguments as for :func:`save_model`."""
    path = model_destination(path)
    if min(model.volume_shape) <= 0:
        raise ValueError("the model does not record the grid it was trained on (TrainedModel.volume_shape)")
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.network.state_dict().items()}
    summary = dict(summary or {})
    history = model.history
    record: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": _library_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "network": {
            "kind": type(model.network).__name__,
            "spatial_dims": int(model.network.spatial_dims),
            "in_channels": int(model.geometry.channels),
            "patch_spatial": [int(n) for n in model.geometry.spatial],
            "slice_axes": [int(a) for a in model.slice_axes],
            "volume_shape_kji": [int(n) for n in model.volume_shape],
            "spacing_zyx": [float(s) for s in model.spacing_zyx],
        },
        "normalization": {
            "low_percentile": config.normalization.low_percentile,
            "high_percentile": config.normalization.high_percentile,
            "training_fit": None if normalizer is None else normalizer.to_dict(),
        },
        "noise": {
            "model": config.noise.model,
            "sigma": config.noise.sigma,
            "training_sigma": None if noise_sigma is None else float(noise_sigma),
            "fusion": model.noise_variance is not None,
        },
        "training": {
            "steps": int(history.steps),
            "seconds": round(float(history.seconds), 2),
            "stopped_by": history.stopped_by,
            "best_validation_loss": history.best_validation_loss,
            "device": str(model.device),
            "frames": int(summary.get("frames", 1)),
            "shape_kji": [int(n) for n in model.volume_shape],
        },
        "weights_sha256": weights_digest(tensors),
    }
    record["record_sha256"] = record_digest(record)
    from safetensors.torch import save

    data = save(tensors, metadata={METADATA_KEY: json.dumps(record, allow_nan=False), "format": "pt"})

    def write(target: Path) -> None:
        target.write_bytes(data)

    return path, write


def model_destination(path: PathLike) -> Path:
    """``path`` checked as a place to save a model (before a long training rather than after it)."""
    path = Path(path).expanduser()
    if not path.name.lower().endswith(MODEL_EXTENSION):
        raise InputError(f"model files are {MODEL_EXTENSION} files; got '{path.name}'")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder for the model does not exist; create it first: {path.parent}")
    return path


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, type, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --- Loading ---------------------------------------------------------------------------------------


def read_model_file(path: PathLike, device: Optional[str] = None) -> tuple[DenoiseConfig, TrainedModel, dict[str, Any]]:
    """The configuration, the rebuilt trained network and the JSON record of a model file written by
    :func:`save_model`, refusing (with an :class:`InputError`) anything pickled, changed, damaged or
    not matching the network (saved_model.load_model wraps them up, ready to apply).

    ``device`` overrides the saved ``training.device`` (auto: a GPU when there is one)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    data = path.read_bytes()
    record = record_from_bytes(data[: 8 + MAX_HEADER_BYTES], path, len(data))
    config = _config_from_record(record, path)
    tensors = _tensors(data, path)
    if weights_digest(tensors) != record["weights_sha256"]:
        raise InputError(
            f"'{path.name}': the weights do not match their SHA-256 digest: the file was changed or damaged "
            "after it was saved; save the model again"
        )
    network_record = record["network"]
    shape = tuple(int(n) for n in network_record["volume_shape_kji"])
    spacing = tuple(float(s) for s in network_record["spacing_zyx"])
    slice_axes = tuple(int(a) for a in network_record["slice_axes"])
    try:
        network, geometry = build_network(config, shape, spacing, slice_axes)  # type: ignore[arg-type]
    except ValueError as error:
        raise InputError(f"'{path.name}': its network cannot be rebuilt: {error}") from error
    _check_network(path, network, geometry, network_record, tensors)
    network.load_state_dict(tensors, strict=True)
    target = select_device(device or config.training.device)
    network.to(target).eval()
    training = record["training"]
    noise = record["noise"]
    noise_variance = None
    if noise["fusion"]:
        fit = record["normalization"]["training_fit"]
        scale = PercentileNormalizer.from_dict(fit).scale if fit else 1.0
        sigma = noise["training_sigma"] if noise["training_sigma"] is not None else 0.0
        noise_variance = (float(sigma) / scale) ** 2  # re-estimated on each volume the model is applied to
    history = TrainingHistory(
        steps=int(training["steps"]),
        seconds=float(training["seconds"]),
        best_validation_loss=training["best_validation_loss"],
        stopped_by=str(training["stopped_by"]),
    )
    model = TrainedModel(
        network=network,
        device=target,
        geometry=geometry,
        history=history,
        noise_variance=noise_variance,
        slice_axes=slice_axes,
        volume_shape=shape,  # type: ignore[arg-type]
        spacing_zyx=spacing,  # type: ignore[arg-type]
    )
    return config, model, record


def _config_from_record(record: dict[str, Any], path: Path) -> DenoiseConfig:
    try:
        return DenoiseConfig.from_dict(record["config"])
    except (TypeError, ValueError) as error:
        raise InputError(f"'{path.name}': its configuration is refused by this DeepDenoise: {error}") from error


def _tensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except SafetensorError as error:
        raise InputError(f"'{path.name}': its weights cannot be read ({error}); the file is damaged") from error


def _check_network(
    path: Path, network: torch.nn.Module, geometry: Any, record: dict[str, Any], tensors: Mapping[str, torch.Tensor]
) -> None:
    """The rebuilt network must be the saved one: same kind, channels, patch, tensor names and shapes."""
    saved = (record["kind"], record["spatial_dims"], record["in_channels"], list(record["patch_spatial"]))
    rebuilt = (type(network).__name__, network.spatial_dims, geometry.channels, list(geometry.spatial))
    if saved != rebuilt:
        raise InputError(
            f"'{path.name}': its network (kind, dimensions, input channels, patch) is {saved}, but its "
            f"configuration builds {rebuilt}; the file does not fit this DeepDenoise"
        )
    expected = {name: tuple(value.shape) for name, value in network.state_dict().items()}
    found = {name: tuple(value.shape) for name, value in tensors.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(name for name in set(expected) & set(found) if expected[name] != found[name])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{'...' if len(unexpected) > 3 else ''}")
        for name in wrong[:3]:
            parts.append(f"{name} has shape {found[name]} where the network needs {expected[name]}")
        raise InputError(f"'{path.name}': its weights do not fit the network its configuration builds: {'; '.join(parts)}")


def _library_version() -> str:
    from DeepDenoiseLib import __version__

    return __version__

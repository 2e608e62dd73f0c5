"""The pretrained prior shipped with the package: a noise-conditioned 2.5D UNet
(nets/conditioned.py) trained on procedural volumes (prior_training.py, synthetic_volumes.py).

It is what method ``r2r`` starts from, so that a volume is denoised well before any training on it.
The file is safetensors (no pickle: loading runs no code) with a JSON record in its metadata: the
network's architecture, how it was trained (the command, steps, seed, noise levels) and the SHA-256
of the weights, checked at every load. ``bench/train_prior.py`` makes it; anyone can rerun it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.nets.conditioned import NoiseConditionedUNet

PRIOR_FORMAT = "deepdenoise-prior"
PRIOR_VERSION = 1
#: The prior the package ships, beside the bundled sample.
SHIPPED_PRIOR = Path(__file__).resolve().parent.parent / "data" / "priors" / "noise_conditioned_2p5d.safetensors"


@dataclass(frozen=True)
class PriorArchitecture:
    """What a :class:`NoiseConditionedUNet` is built from."""

    context_slices: int = 2
    depth: int = 2
    base_channels: int = 32

    def build(self) -> NoiseConditionedUNet:
        return NoiseConditionedUNet(self.context_slices, self.depth, self.base_channels)


@dataclass
class Prior:
    """A loaded prior: its architecture, weights and the record of how it was trained."""

    architecture: PriorArchitecture
    state: dict[str, torch.Tensor]
    training: dict[str, Any]

    def network(self, device: Union[str, torch.device] = "cpu") -> NoiseConditionedUNet:
        """A fresh network holding the prior's weights, on ``device``."""
        network = self.architecture.build()
        network.load_state_dict(self.state)
        return network.to(device)


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of the weights' names, shapes and bytes, independent of the file's layout."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode() + str(tuple(tensor.shape)).encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


def save_prior(path: Union[str, Path], network: NoiseConditionedUNet, training: dict[str, Any]) -> Path:
    """Writes ``network`` with its architecture and ``training`` record to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in network.state_dict().items()}
    architecture = PriorArchitecture(network.context_slices, network.depth, network.base_channels)
    record = {
        "format": PRIOR_FORMAT,
        "version": PRIOR_VERSION,
        "architecture": architecture.__dict__,
        "training": training,
        "weights_sha256": weights_sha256(state),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    save_file(state, str(temporary), metadata={PRIOR_FORMAT: json.dumps(record)})
    temporary.replace(path)
    return path


def load_prior(path: Optional[Union[str, Path]] = None) -> Prior:
    """Reads a prior (default: the shipped one), refusing a file that is not one, was changed after
    it was written (digest mismatch) or does not fit its architecture."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path) if path is not None else SHIPPED_PRIOR
    if not path.is_file():
        raise InputError(f"the pretrained prior {path} is missing: reinstall DeepDenoise, or use model.init 'random'")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
        record = json.loads(metadata[PRIOR_FORMAT])
    except (SafetensorError, KeyError, ValueError, OSError) as error:
        raise InputError(f"{path} is not a DeepDenoise prior ({error})") from error
    if record.get("format") != PRIOR_FORMAT or record.get("version") != PRIOR_VERSION:
        raise InputError(f"{path} is a prior of another format or version than this library reads ({PRIOR_VERSION})")
    if weights_sha256(state) != record.get("weights_sha256"):
        raise InputError(f"the weights of the prior {path} do not match their digest: the file was changed or damaged")
    architecture = PriorArchitecture(**record["architecture"])
    try:
        architecture.build().load_state_dict(state)
    except RuntimeError as error:
        raise InputError(f"the weights of the prior {path} do not fit its architecture {architecture}") from error
    return Prior(architecture, state, record["training"])

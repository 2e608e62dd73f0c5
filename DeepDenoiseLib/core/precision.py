"""The arithmetic a network trains in: float32, or bfloat16 autocast where the device runs it faster.

bfloat16 convolutions with channels-last weights take about half the time of float32 ones on CPUs
with bfloat16 instructions (AVX512-BF16, AMX) and on recent GPUs: on the benchmark's 2-core CPU the
4-minute budget made 6269 to 8000 steps against 4500 to 4900 (bench/README.md). Elsewhere the CPU emulates bfloat16 and is slower, so ``auto`` times one
forward and backward pass in each arithmetic on the run's own batch and takes bfloat16 only when it
is clearly faster. Weights, optimiser state and the loss stay in float32 (autocast casts only the
convolutions' inputs), so the steps themselves change little: at 1500 steps the default scored within
0.01 dB of float32 on the benchmark. Prediction stays in float32: the self-check's divergence is a
difference of two nearly equal predictions, which bfloat16 rounding would swamp.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from DeepDenoiseLib.core.settings import PRECISIONS, choice

#: ``auto`` takes bfloat16 only when its timed step is at least this many times faster.
MIN_SPEEDUP = 1.2
#: Timed passes per arithmetic after one warm-up pass; the fastest counts.
PROBE_PASSES = 3


@dataclass(frozen=True)
class TrainingPrecision:
    """The arithmetic of a training run on ``device_type`` (``cpu``, ``cuda``, ``mps``)."""

    device_type: str
    bfloat16: bool = False

    @property
    def name(self) -> str:
        return "bfloat16" if self.bfloat16 else "float32"

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The context a forward pass runs in: bfloat16 autocast, or nothing for float32."""
        if not self.bfloat16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    @contextlib.contextmanager
    def training(self, network: torch.nn.Module) -> Iterator[None]:
        """Holds ``network``'s weights channels-last while it trains in bfloat16 (the layout the fast
        bfloat16 convolutions take), and gives them back in the standard layout afterwards, which
        prediction and saved model files expect."""
        if self.bfloat16:
            _lay_out(network, torch.channels_last)
        try:
            yield
        finally:
            if self.bfloat16:
                _lay_out(network, torch.contiguous_format)


def _lay_out(network: torch.nn.Module, memory_format: torch.memory_format) -> None:
    """Stores the 2D convolution weights of ``network`` in ``memory_format``, in place (what
    ``Module.to(memory_format=...)`` does)."""
    with torch.no_grad():
        for parameter in network.parameters():
            if parameter.ndim == 4:
                parameter.data = parameter.data.contiguous(memory_format=memory_format)


def bfloat16_available(device: torch.device) -> bool:
    """Whether bfloat16 autocast can run on ``device`` at all (fast or not): every CPU, CUDA GPUs that
    support it; not Apple's MPS, whose support depends on the macOS and torch versions."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu"


def choose_precision(requested: str, device: torch.device, probe: Callable[[TrainingPrecision], None]) -> TrainingPrecision:
    """The precision of a run: ``float32`` or ``bfloat16`` as asked (bfloat16 refused where it
    cannot run), or for ``auto`` whichever runs ``probe`` (one forward and backward pass, no
    optimiser step) faster, bfloat16 only by :data:`MIN_SPEEDUP` or more."""
    choice("training.precision", requested, PRECISIONS)
    single = TrainingPrecision(device.type)
    half = TrainingPrecision(device.type, bfloat16=True)
    if requested == "float32":
        return single
    if not bfloat16_available(device):
        if requested == "bfloat16":
            raise ValueError(f"training.precision bfloat16 cannot run on this {device.type.upper()} device: use float32 or auto")
        return single
    if requested == "bfloat16":
        return half
    speedup = probe_seconds(single, device, probe) / probe_seconds(half, device, probe)
    return half if speedup >= MIN_SPEEDUP else single


def loss_probe(network: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> Callable[[TrainingPrecision], None]:
    """A probe for :func:`choose_precision`: one forward and backward pass of ``loss()`` with
    ``network`` laid out and cast as each candidate would train it; no optimiser step, and the
    gradients are dropped."""

    def probe(candidate: TrainingPrecision) -> None:
        with candidate.training(network):
            with candidate.autocast():
                value = loss()
            value.backward()
        network.zero_grad(set_to_none=True)

    return probe


def probe_seconds(precision: TrainingPrecision, device: torch.device, probe: Callable[[TrainingPrecision], None]) -> float:
    """The fastest of :data:`PROBE_PASSES` timed runs of ``probe`` in ``precision``, after a warm-up."""
    fastest = float("inf")
    for attempt in range(PROBE_PASSES + 1):
        start = time.perf_counter()
        probe(precision)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if attempt:
            fastest = min(fastest, time.perf_counter() - start)
    return fastest

"""Choosing where torch runs: a GPU when there is one, the CPU otherwise, with a word when falling back."""

from __future__ import annotations

import warnings
from typing import Optional

import torch


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` takes CUDA, then Apple MPS, then the CPU; an unavailable ``cuda``/``mps`` falls back
    to the CPU with a warning rather than failing a long run."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if requested == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if requested == "cuda" and not cuda:
        warnings.warn("CUDA was requested but no CUDA GPU is available; running on the CPU", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    if requested == "mps" and not mps:
        warnings.warn("MPS was requested but Apple's MPS backend is not available; running on the CPU", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    if requested not in ("cuda", "mps", "cpu"):
        raise ValueError(f"device must be auto, cuda, mps or cpu; got {requested!r}")
    return torch.device(requested)


def fallback_warnings(requested: str, used: object) -> list[str]:
    """A warning for the run's summary when the device that ran is not the one asked for (an
    unavailable ``cuda`` or ``mps`` falls back to the CPU), saying how to choose."""
    used_type = getattr(used, "type", str(used))
    if requested in ("auto", used_type):
        return []
    return [
        (
            f"{requested.upper()} was requested but is not available, so the run used the {used_type.upper()}; "
            f"choose --device {used_type} (or install a PyTorch build with {requested.upper()} support) to silence this"
        )
    ]


def configure_threads(threads: Optional[int]) -> None:
    """Caps torch's CPU threads (``None`` keeps torch's own choice, one per core)."""
    if threads is not None:
        torch.set_num_threads(int(threads))

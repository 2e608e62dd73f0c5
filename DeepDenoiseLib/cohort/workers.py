"""How many workers the embedded cluster starts, with how many torch threads each, and which GPU each
one sees; decided without importing torch (a GPU is found from ``CUDA_VISIBLE_DEVICES`` or
``nvidia-smi``).

Each worker runs one scan at a time (one Dask thread); torch's threads do the parallel work inside
it. With GPUs, one worker per visible GPU, each seeing only its own (``CUDA_VISIBLE_DEVICES``) and
running on ``cuda``. On CPUs, half as many workers as cores with two torch threads each (at least
one worker): two scans side by side use a multi-core CPU better than one scan on every core, and
two threads per worker keep the cores busy while another worker reads or writes.

>>> plan_workers(cores=16, gpus=[], device="auto")
WorkerPlan(workers=8, threads=2, gpus=(None, None, None, None, None, None, None, None))
>>> plan_workers(cores=16, gpus=["0", "1"], device="auto").describe()
'2 workers on GPUs (CUDA devices 0, 1), 8 torch threads each'
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Optional

#: The devices for which GPUs are given to the workers (``cpu`` and ``mps`` run on the CPU plan).
GPU_DEVICES = ("auto", "cuda")
#: Torch threads per CPU worker by default.
CPU_THREADS_PER_WORKER = 2


@dataclass(frozen=True)
class WorkerPlan:
    """``workers`` processes, each running one scan at a time with ``threads`` torch threads; ``gpus``
    holds the CUDA device each worker sees (None: the CPU)."""

    workers: int
    threads: int
    gpus: tuple[Optional[str], ...]

    @property
    def uses_gpus(self) -> bool:
        return any(gpu is not None for gpu in self.gpus)

    def describe(self) -> str:
        threads = f"{self.threads} torch thread{'s' if self.threads > 1 else ''} each"
        if self.uses_gpus:
            devices = ", ".join(sorted({str(gpu) for gpu in self.gpus}))
            return f"{self.workers} worker{'s' if self.workers > 1 else ''} on GPUs (CUDA devices {devices}), {threads}"
        return f"{self.workers} worker{'s' if self.workers > 1 else ''} on the CPU, {threads}"


def plan_workers(cores: int, gpus: Sequence[str], device: str, workers: Optional[int] = None, threads: Optional[int] = None) -> WorkerPlan:
    """The plan for a machine with ``cores`` CPU cores and the visible ``gpus``, for runs on
    ``device``; ``workers`` and ``threads`` (torch threads per worker) override the defaults. More
    workers than GPUs share them in turn."""
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be at least 1; got {value}")
    cores = max(1, cores)
    if gpus and device in GPU_DEVICES:
        count = workers or len(gpus)
        return WorkerPlan(count, threads or max(1, cores // count), tuple(gpus[index % len(gpus)] for index in range(count)))
    count = workers or max(1, cores // (threads or CPU_THREADS_PER_WORKER))
    return WorkerPlan(count, threads or max(1, cores // count), (None,) * count)


def cpu_cores() -> int:
    """The CPU cores this process may use (its affinity, where the system says; else every core)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return len(affinity(0))
    return os.cpu_count() or 1


def visible_gpus(environ: Optional[Mapping[str, str]] = None, query: Optional[Callable[[], Optional[str]]] = None) -> list[str]:
    """The CUDA devices a process started here would see, by the ids ``CUDA_VISIBLE_DEVICES`` takes:
    that variable's list when it is set (CUDA stops at the first invalid entry, such as ``-1``), else
    the indices ``nvidia-smi`` lists (none without it)."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = []
        for entry in (part.strip() for part in listed.split(",")):
            if not entry or entry.startswith("-"):
                break
            devices.append(entry)
        return devices
    output = (query or _nvidia_smi_indices)()
    return [line.strip() for line in (output or "").splitlines() if line.strip().isdigit()]


def _nvidia_smi_indices() -> Optional[str]:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None

"""Tiny cohorts for the tests of DeepDenoiseLib.cohort: folders of small noisy volumes (and a corrupt
file), a BIDS-shaped tree, configurations that train in a blink or for long, and a task that kills
its worker (a stand-in for a scan that runs out of memory)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import write_volume
from Testing.support.phantoms import noisy_phantom, tiny_config

#: The shape of the cohorts' volumes, [k, j, i].
SHAPE = (16, 20, 20)
CORRUPT_NAME = "a_corrupt.nii.gz"


def write_scan(path: Path, seed: int, frames: int = 0) -> Path:
    """A small noisy phantom at ``path`` (a 4D series of ``frames`` frames when given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _, noisy = noisy_phantom(SHAPE, sigma=0.1, seed=seed)
    array = np.abs(noisy) if not frames else np.stack([np.abs(noisy_phantom(SHAPE, 0.1, seed + frame)[1]) for frame in range(frames)])
    write_volume(Volume(array.astype(np.float32), spacing=(1.0, 1.0, 2.0)), path)
    return path


def write_cohort(folder: Path, names: tuple[str, ...] = ("b.nii.gz", "c.nrrd", "sub/d.mha"), corrupt: bool = True) -> list[Path]:
    """Writes a volume at each of ``names`` in ``folder`` and, with ``corrupt``, a damaged NIfTI file
    that sorts first; returns the paths, sorted."""
    paths = [write_scan(folder / name, seed) for seed, name in enumerate(names)]
    if corrupt:
        (folder / CORRUPT_NAME).write_bytes(b"\x1f\x8b" + b"not a volume" * 8)
        paths.append(folder / CORRUPT_NAME)
    return sorted(paths)


def quick_config():
    """The default method (whatever it is) with settings that train 4 steps on one CPU thread."""
    from DeepDenoiseLib.denoise.config import DenoiseConfig

    return tiny_config(DenoiseConfig.method)


def slow_config():
    """The default method training for a minute (cancelled long before it ends)."""
    from DeepDenoiseLib.denoise.config import DenoiseConfig

    return tiny_config(DenoiseConfig.method, training={"max_epochs": 100000, "budget_seconds": 60.0, "min_steps": 0, "patience": None})


def files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden ones too), relative, sorted."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def task_that_kills_its_worker_on_corrupt_files(job):
    """Runs the scan as the cohort does, but ends its worker process at once on the corrupt file,
    as the nanny ends a worker past its memory limit."""
    from DeepDenoiseLib.cohort.task import run_scan

    if Path(job.source).name == CORRUPT_NAME:
        os._exit(1)
    return run_scan(job)

"""The command lines and the environment of the worker processes the Slicer jobs start: ``python -m
DeepDenoiseLib`` with the run's sub-command, files and configuration, and JSON progress on stdout.

>>> run = BackgroundRun(denoise_command("in.nrrd", "out.nrrd", "config.json"), environment=worker_environment(library_parent))
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def denoise_command(
    input_path: PathLike,
    output_path: PathLike,
    config_path: PathLike,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    python: Optional[str] = None,
    worker: Optional[Sequence[str]] = None,
    save_model_path: Optional[PathLike] = None,
) -> list[str]:
    """The command line that denoises ``input_path`` into ``output_path`` with JSON progress, also
    writing the residual and the uncertainty (the spread across test-time augmentations, which the
    configuration must switch on) where their paths are given, and saving the trained model to
    ``save_model_path`` if given.

    ``worker`` replaces ``[python, "-m", "DeepDenoiseLib"]`` (tests put a stand-in script there);
    ``python`` defaults to the running interpreter.
    """
    command = _prefix(python, worker) + ["denoise", str(input_path), str(output_path), "--config", str(config_path)]
    command += _output_options(residual_path, uncertainty_path)
    if save_model_path is not None:
        command += ["--save-model", str(save_model_path)]
    return command


def noise2noise_command(
    input_paths: Sequence[PathLike],
    output_path: PathLike,
    config_path: PathLike,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    python: Optional[str] = None,
    worker: Optional[Sequence[str]] = None,
) -> list[str]:
    """The command line of Noise2Noise (``deepdenoise n2n``) on two acquisitions of the same anatomy,
    or on one 4D series (neighbouring frames as the pairs); options as for :func:`denoise_command`."""
    if len(input_paths) not in (1, 2):
        raise ValueError(f"Noise2Noise takes two acquisitions or one 4D series; got {len(input_paths)} inputs")
    command = _prefix(python, worker) + ["n2n", *map(str, input_paths), str(output_path), "--config", str(config_path)]
    return command + _output_options(residual_path, uncertainty_path)


def supervised_command(
    noisy_path: PathLike,
    clean_path: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    config_path: PathLike,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    python: Optional[str] = None,
    worker: Optional[Sequence[str]] = None,
) -> list[str]:
    """The command line that trains on the (``noisy_path``, ``clean_path``) pair and denoises
    ``input_path`` with the result (``deepdenoise supervised``); options as for :func:`denoise_command`."""
    command = _prefix(python, worker) + ["supervised", "--noisy", str(noisy_path), "--clean", str(clean_path)]
    command += ["--apply-to", str(input_path), str(output_path), "--config", str(config_path)]
    return command + _output_options(residual_path, uncertainty_path)


def apply_command(
    model_path: PathLike,
    input_path: PathLike,
    output_path: PathLike,
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    tta: bool = False,
    device: Optional[str] = None,
    python: Optional[str] = None,
    worker: Optional[Sequence[str]] = None,
) -> list[str]:
    """The command line that denoises ``input_path`` with the saved model at ``model_path`` (no
    training), with JSON progress; ``tta`` and ``device`` override the model's saved settings.
    ``worker`` and ``python`` as for :func:`denoise_command`."""
    command = _prefix(python, worker) + ["apply", str(model_path), str(input_path), str(output_path)]
    command += _output_options(residual_path, uncertainty_path)
    if tta:
        command.append("--tta")
    if device is not None:
        command += ["--device", device]
    return command


def _prefix(python: Optional[str], worker: Optional[Sequence[str]]) -> list[str]:
    return list(worker) if worker is not None else [python or sys.executable, "-m", "DeepDenoiseLib"]


def _output_options(residual_path: Optional[PathLike], uncertainty_path: Optional[PathLike]) -> list[str]:
    options = ["--progress", "json"]
    if residual_path is not None:
        options += ["--residual", str(residual_path)]
    if uncertainty_path is not None:
        options += ["--uncertainty", str(uncertainty_path)]
    return options


def worker_environment(library_parent: Optional[PathLike] = None, base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment for a worker: ``base`` (default: this process's) with unbuffered UTF-8 output
    and ``library_parent`` (the folder holding ``DeepDenoiseLib``) first on ``PYTHONPATH``.

    OpenMP threads that wait passively (unless ``base`` says otherwise): the worker shares the CPU
    with Slicer and whatever else runs, and torch's spinning threads then fight for the cores. On a
    busy two-core machine a 2-second run of the tiny self-test volume took 40-60 s with spinning
    threads and 6-7 s with passive ones."""
    environment = dict(os.environ if base is None else base)
    environment["PYTHONUNBUFFERED"] = "1"
    environment["PYTHONIOENCODING"] = "utf-8"
    environment.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if library_parent is not None:
        paths = [str(library_parent)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
        environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


def superres_command(
    input_path: PathLike,
    output_path: PathLike,
    config_path: PathLike,
    training_paths: Sequence[PathLike] = (),
    uncertainty_path: Optional[PathLike] = None,
    python: Optional[str] = None,
    worker: Optional[Sequence[str]] = None,
) -> list[str]:
    """The command line of a super-resolution worker with JSON progress (``worker`` replaces
    ``[python, "-m", "DeepDenoiseLib"]``)."""
    command = _prefix(python, worker) + ["superres", str(input_path), str(output_path), "--config", str(config_path), "--progress", "json"]
    if training_paths:
        command += ["--train-on"] + [str(path) for path in training_paths]
    if uncertainty_path is not None:
        command += ["--uncertainty", str(uncertainty_path)]
    return command

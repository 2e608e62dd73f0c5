"""CAREamics' Noise2Void as a benchmark baseline, run in its own virtual environment.

CAREamics 0.3.5 pins a torch (2.11, with CUDA wheels, about 2.7 GB) that cannot be installed beside
DeepDenoise's torch 2.13, so it is not a ``bench`` extra: on first use the benchmark creates
``bench/.venv-careamics`` with ``python -m venv`` and pip, then runs careamics_runner.py with that
environment's Python in a subprocess, handing the volume over in temporary ``.npy`` files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".venv-careamics"
RUNNER = BENCH_DIR / "careamics_runner.py"
REQUIREMENTS = ("careamics==0.3.5", "torch==2.11.0")
CAREAMICS_VERSION = "0.3.5"
# Written into the environment once CAREamics imports there: an environment without it is unfinished.
READY_MARKER = ".deepdenoise-bench-ready"
# Beyond the training budget, time allowed for start-up and prediction before the runner is killed.
RUNNER_GRACE_SECONDS = 1800.0


class CareamicsUnavailable(RuntimeError):
    """CAREamics' environment could not be created or does not work; the message says why."""


@dataclass
class CareamicsSettings:
    """The reference configuration of the shared figures: N2V 3D, patch 32^3, UNet depth 2 with 16
    channels at the first level, trained for a wall-time budget."""

    budget_seconds: float = 540.0
    patch_size: int = 32
    depth: int = 2
    channels: int = 16
    batch_size: int = 4
    threads: int = 2


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_careamics_env(venv: Path = DEFAULT_VENV, log: Callable[[str], None] = print) -> Path:
    """The Python of a working CAREamics environment at ``venv``, created there on first use.

    An existing folder is used as it is when CAREamics 0.3.5 imports in it, and otherwise never
    touched (it may be someone's own environment). A creation that fails or is interrupted removes
    the half-made folder, so the next run starts afresh.
    """
    python = venv_python(venv)
    if (venv / READY_MARKER).is_file() and python.exists():
        return python
    if venv.exists():
        version = _careamics_version(python)
        if version != CAREAMICS_VERSION:
            raise CareamicsUnavailable(
                f"{venv} exists but is not a working CAREamics {CAREAMICS_VERSION} environment "
                f"(found {version or 'no careamics'}); delete it and the benchmark recreates it"
            )
        return python
    log(f"creating {venv} with {' '.join(REQUIREMENTS)} (a one-time download of about 2.7 GB)")
    try:
        _run_logged([sys.executable, "-m", "venv", str(venv)])
        _run_logged([str(python), "-m", "pip", "install", "--progress-bar", "off", *REQUIREMENTS])
        version = _careamics_version(python)
        if version != CAREAMICS_VERSION:
            raise CareamicsUnavailable(f"CAREamics does not import in the new environment {venv}")
        (venv / READY_MARKER).write_text(f"careamics {version}\n", encoding="utf-8")
    except BaseException as error:
        shutil.rmtree(venv, ignore_errors=True)
        if isinstance(error, subprocess.CalledProcessError):
            command = " ".join(str(part) for part in error.cmd[:4])
            raise CareamicsUnavailable(f"creating {venv} failed: {command} exited with {error.returncode}") from error
        raise
    return python


def run_careamics_n2v(noisy: np.ndarray, settings: CareamicsSettings, seed: int, python: Path) -> tuple[np.ndarray, float, str]:
    """Denoises ``noisy`` ([z, y, x]) with CAREamics' N2V 3D; returns the result, the runner's own wall
    time of training and prediction, and a note of what ran (epochs, steps, device)."""
    with tempfile.TemporaryDirectory(prefix="careamics-io-") as folder:
        work = Path(folder)
        np.save(work / "noisy.npy", np.asarray(noisy, dtype=np.float32))
        command = [
            str(python), "-I", str(RUNNER),
            "--input", str(work / "noisy.npy"),
            "--output", str(work / "denoised.npy"),
            "--report", str(work / "report.json"),
            "--budget-seconds", str(settings.budget_seconds),
            "--seed", str(seed),
            "--threads", str(settings.threads),
            "--patch-size", str(settings.patch_size),
            "--depth", str(settings.depth),
            "--channels", str(settings.channels),
            "--batch-size", str(settings.batch_size),
        ]  # fmt: skip
        completed = subprocess.run(
            command,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=settings.budget_seconds + RUNNER_GRACE_SECONDS,
            env=dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE")),
        )
        if completed.returncode != 0:
            lines = completed.stderr.strip().splitlines() or ["no error output"]
            details = "\n".join(lines[-15:])
            raise RuntimeError(f"the CAREamics runner exited with {completed.returncode} ({lines[-1]})\n{details}")
        report = json.loads((work / "report.json").read_text(encoding="utf-8"))
        denoised = np.load(work / "denoised.npy")
    note = (
        f"patch {report['patch_size']}, {report['epochs']} epochs, {report['steps']} steps on {report['device']} (torch {report['torch']})"
    )
    return denoised, float(report["seconds"]), note


def _careamics_version(python: Path) -> str:
    if not python.exists():
        return ""
    probe = subprocess.run([str(python), "-I", "-c", "import careamics; print(careamics.__version__)"], capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else ""


def _run_logged(command: list[str]) -> None:
    """Runs ``command`` with its output on our stderr (a long pip install shows its progress)."""
    subprocess.run(command, check=True, stdout=sys.stderr, stderr=sys.stderr)

"""What the tests of the Slicer side share: grids, a job run to its end, and the panel's state."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from DeepDenoiseLib.slicer.parameter_node import parameter_fields

#: An oblique, anisotropic grid's directions, with a rotation between the axes (right-handed), and a
#: left-handed one (Slicer flips K when it reads such a file).
OBLIQUE = np.array([[0.0, 0.0, -1.0], [0.8, -0.6, 0.0], [0.6, 0.8, 0.0]])
LEFT_HANDED = np.diag([1.0, 1.0, -1.0])


def run_job(job: Any, timeout: float = 60.0) -> Any:
    """Starts ``job``, polls it until its worker ended, and returns what ``finish`` puts in the scene."""
    job.start()
    deadline = time.monotonic() + timeout
    while not job.finished:
        assert time.monotonic() < deadline, "the worker did not finish in time"
        job.poll()
        time.sleep(0.02)
    return job.finish()


def panel_state(**values: Any) -> SimpleNamespace:
    """The module's parameter node as the panel reads it: every field at its default, then ``values``."""
    return SimpleNamespace(**{**{field.name: field.default for field in parameter_fields()}, **values})


def noisy_array(shape: tuple[int, ...] = (6, 7, 8), seed: int = 0) -> np.ndarray:
    """A volume of Gaussian noise around 100, seeded."""
    return np.random.default_rng(seed).normal(100.0, 10.0, shape).astype(np.float32)

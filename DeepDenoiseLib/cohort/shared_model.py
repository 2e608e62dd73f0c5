"""The shared model: a cohort of N scans costs one training and N predictions. The model is trained
on one scan of the cohort (``--train-scan``, else the first in sorted order; the library trains on one
volume or one 4D series, so not on several scans at once), written with that scan's outputs as
``deepdenoise_model.safetensors`` in the output folder (the saved-model format of ``apply``), and then
applied to every other scan. When the training fails on the first scan (an unreadable file), the next
ones are tried, up to ``TRAINING_TRIES``; an explicit ``--train-scan`` is the only one tried.

>>> order = training_order(sources, train_scan=None)      # [0, 1, 2]: the first three scans
>>> path = shared_model_path(Path("out"))                 # out/deepdenoise_model.safetensors
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from DeepDenoiseLib.core.validation import InputError

MODEL_FILE_NAME = "deepdenoise_model.safetensors"
#: How many scans the training is tried on, in order, before the cohort gives up on a shared model.
TRAINING_TRIES = 3


def shared_model_path(output_dir: Path) -> Path:
    return Path(output_dir) / MODEL_FILE_NAME


def training_order(sources: Sequence[Path], train_scan: Optional[Path] = None) -> list[int]:
    """The indices of the scans to train the shared model on, in the order to try them: ``train_scan``
    alone (refused unless it is one of the cohort's scans), else the first :data:`TRAINING_TRIES`."""
    if train_scan is None:
        return list(range(min(TRAINING_TRIES, len(sources))))
    wanted = Path(train_scan).expanduser().resolve()
    for index, source in enumerate(sources):
        if Path(source).resolve() == wanted:
            return [index]
    raise InputError(f"the training scan '{train_scan}' is not one of the cohort's scans; give one of them to --train-scan")

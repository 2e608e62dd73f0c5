"""The shared model: a cohort of N scans costs one training and N predictions. The model (method
``r2r``, the default) learns from a sample of the cohort's scans at once, each with its own noise
level and normalisation: up to :data:`SAMPLE_SIZE` scans spread evenly over the sorted cohort (so
over its sites, sessions and subjects when the folders are named so), or the scans given with
``--train-scan`` (repeatable). The blind-spot methods learn from one scan: the first of the sample.

The training task denoises the sample's first scan (its outputs are written with the model, as
``deepdenoise_model.safetensors`` in the output folder, the saved-model format of ``apply``); the
model is then applied to every other scan. When the first scan cannot be read, the next try starts
from the next scan of the sample, up to :data:`TRAINING_TRIES`; a companion that cannot be read is
left out of the training and said in the row's message.

>>> sample = training_sample(sources, eligible=range(10))   # [0, 3, 6, 9]: spread over the cohort
>>> tries = training_tries(sample)                          # [[0, 3, 6, 9], [3, 6, 9], [6, 9]]
>>> path = shared_model_path(Path("out"))                   # out/deepdenoise_model.safetensors
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from DeepDenoiseLib.core.validation import InputError

MODEL_FILE_NAME = "deepdenoise_model.safetensors"
#: How many scans the shared model learns from by default (their patches mixed in one training).
SAMPLE_SIZE = 4
#: How many times the training is started, each time one scan further into the sample, before the
#: cohort gives up on a shared model (the first scan of a try is the one that must be readable).
TRAINING_TRIES = 3
#: The methods whose network learns from several scans at once; the others learn from the first.
SAMPLE_METHODS = ("r2r",)


def shared_model_path(output_dir: Path) -> Path:
    return Path(output_dir) / MODEL_FILE_NAME


def training_sample(sources: Sequence[Path], eligible: Iterable[int], train_scans: Sequence[Path] = ()) -> list[int]:
    """The indices of the scans the shared model learns from: ``train_scans`` (refused unless each
    is one of the ``eligible`` scans, those that take the network), else up to :data:`SAMPLE_SIZE`
    eligible scans spread evenly over the cohort, first and last included."""
    eligible = list(eligible)
    if train_scans:
        chosen: list[int] = []
        for train_scan in train_scans:
            wanted = Path(train_scan).expanduser().resolve()
            matches = [index for index in eligible if Path(sources[index]).resolve() == wanted]
            if not matches:
                raise InputError(
                    f"the training scan '{train_scan}' is not one of the cohort's scans that the network denoises; "
                    "give one of them to --train-scan"
                )
            chosen.extend(index for index in matches if index not in chosen)
        return chosen
    if len(eligible) <= SAMPLE_SIZE:
        return eligible
    last = len(eligible) - 1
    return [eligible[round(place * last / (SAMPLE_SIZE - 1))] for place in range(SAMPLE_SIZE)]


def training_tries(sample: Sequence[int], method: str = "r2r") -> list[list[int]]:
    """The trainings to try in turn, each a list of scan indices whose first is denoised with the
    model (and must be readable): the sample, then the sample from its second scan, ... up to
    :data:`TRAINING_TRIES`. A method outside :data:`SAMPLE_METHODS` learns from the first alone."""
    tries = [list(sample[start:]) for start in range(min(TRAINING_TRIES, len(sample)))]
    return tries if method in SAMPLE_METHODS else [one[:1] for one in tries]

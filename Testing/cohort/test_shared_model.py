"""Which scans the cohort's shared model learns from (DeepDenoiseLib.cohort.shared_model): a sample
spread over the cohort, the scans the user names, and the tries when the first cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from DeepDenoiseLib.cohort.shared_model import SAMPLE_SIZE, training_sample, training_tries
from DeepDenoiseLib.core.validation import InputError


def test_the_sample_spreads_over_the_cohort_from_first_to_last() -> None:
    sources = [Path(f"/study/sub-{index:02d}.nii.gz") for index in range(10)]
    assert training_sample(sources, range(10)) == [0, 3, 6, 9]
    assert len(training_sample(sources, range(10))) == SAMPLE_SIZE
    assert training_sample(sources, [1, 2]) == [1, 2]  # fewer scans than the sample: all of them
    assert training_sample(sources, [0, 2, 4, 5, 7, 8, 9]) == [0, 4, 7, 9]  # only the scans the network denoises


def test_the_named_training_scans_are_taken_and_one_outside_the_cohort_is_refused(tmp_path) -> None:
    sources = [tmp_path / name for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz")]
    assert training_sample(sources, range(3), [tmp_path / "c.nii.gz", tmp_path / "a.nii.gz"]) == [2, 0]
    with pytest.raises(InputError, match="'.*elsewhere.nii.gz' is not one of the cohort's scans"):
        training_sample(sources, range(3), [tmp_path / "elsewhere.nii.gz"])
    with pytest.raises(InputError, match="that the network denoises"):
        training_sample(sources, [0, 1], [tmp_path / "c.nii.gz"])  # c takes MP-PCA, which trains nothing


def test_each_try_starts_one_scan_further_and_blind_spot_methods_learn_from_one_scan() -> None:
    assert training_tries([0, 3, 6, 9]) == [[0, 3, 6, 9], [3, 6, 9], [6, 9]]
    assert training_tries([4]) == [[4]]
    assert training_tries([0, 3, 6, 9], "n2v2") == [[0], [3], [6]]

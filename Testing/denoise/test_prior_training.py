"""Tests of the prior's pretraining (denoise/prior_training.py): it learns to denoise the procedural
patches in either arithmetic, records the one it ran in, refuses one the device cannot run, and
trains a prior further from its weights."""

from __future__ import annotations

from unittest import mock

import pytest

from DeepDenoiseLib.denoise.prior import Prior, PriorArchitecture
from DeepDenoiseLib.denoise.prior_training import PriorTrainingSettings, train_prior
from Testing.support.phantoms import single_thread  # noqa: F401


def tiny_settings(precision: str, steps: int = 60) -> PriorTrainingSettings:
    return PriorTrainingSettings(
        steps=steps,
        batch_size=4,
        patch_size=16,
        volume_size=20,
        pool_size=3,
        validation_patches=8,
        steps_per_epoch=20,
        learning_rate=3e-3,
        threads=1,
        device="cpu",
        precision=precision,
        architecture=PriorArchitecture(context_slices=1, depth=1, base_channels=8),
    )


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_pretraining_lowers_the_held_out_loss_and_records_its_arithmetic(precision: str) -> None:
    _, first = train_prior(tiny_settings(precision, steps=1))
    network, history = train_prior(tiny_settings(precision))
    assert history.precision == precision
    assert history.steps == 60
    assert first.best_validation_loss is not None and history.best_validation_loss is not None
    assert history.best_validation_loss < 0.9 * first.best_validation_loss
    # the weights come back in the standard layout, which saved files and prediction expect
    assert all(parameter.is_contiguous() for parameter in network.parameters())


def test_auto_takes_float32_where_bfloat16_is_not_faster() -> None:
    with mock.patch("DeepDenoiseLib.core.precision.probe_seconds", side_effect=lambda precision, device, probe: 1.0):
        _, history = train_prior(tiny_settings("auto", steps=2))
    assert history.precision == "float32"


def test_bfloat16_is_refused_where_the_device_cannot_run_it() -> None:
    with mock.patch("DeepDenoiseLib.core.precision.bfloat16_available", return_value=False):
        with pytest.raises(ValueError, match="bfloat16 cannot run"):
            train_prior(tiny_settings("bfloat16", steps=2))


def test_training_further_starts_from_the_given_prior_and_scores_it_first() -> None:
    trained, first = train_prior(tiny_settings("float32"))
    _, one_step = train_prior(tiny_settings("float32", steps=1))
    start = Prior(tiny_settings("float32").architecture, trained.state_dict(), {})
    _, further = train_prior(tiny_settings("float32", steps=20), start_from=start)
    # the same seed holds out the same patches: the starting weights score what they scored at the end
    # of their own run (batch normalisation recalibrated since), far below one step from random weights
    assert first.best_validation_loss is not None and one_step.best_validation_loss is not None
    assert further.initial_validation_loss == pytest.approx(first.best_validation_loss, rel=0.1)
    assert further.initial_validation_loss < 0.9 * one_step.best_validation_loss
    # the starting weights are candidates too: the result is never worse than them
    assert further.best_validation_loss is not None and further.best_validation_loss <= further.initial_validation_loss


def test_training_further_refuses_a_prior_of_another_architecture() -> None:
    other = PriorArchitecture(context_slices=1, depth=1, base_channels=4)
    start = Prior(other, other.build().state_dict(), {})
    with pytest.raises(ValueError, match="architecture"):
        train_prior(tiny_settings("float32", steps=2), start_from=start)

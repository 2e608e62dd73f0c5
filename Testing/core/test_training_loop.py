"""The one training loop (DeepDenoiseLib.core.training_loop): a budget that runs out early is stretched
to the floor of steps, the floor never exceeds the step limit nor holds back a fast machine, and the
learning-rate schedules decay smoothly whichever limit is in charge."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from DeepDenoiseLib.core.progress import ProgressEvent
from DeepDenoiseLib.core.training_loop import TrainingLimits, cosine_decay, fit, training_fraction
from DeepDenoiseLib.denoise.config import TrainingConfig


def _slow_fit(step_seconds: float, **training: object) -> tuple[object, list[float], list[ProgressEvent]]:
    """``fit`` on a one-weight network whose steps take ``step_seconds`` each (a slow machine)."""
    network = torch.nn.Linear(1, 1)
    rates: list[float] = []
    events: list[ProgressEvent] = []

    def train_step(batch: torch.Tensor, learning_rate: float) -> float:
        rates.append(learning_rate)
        time.sleep(step_seconds)
        return 1.0

    config = TrainingConfig(steps_per_epoch=10, **training)  # type: ignore[arg-type]
    limits = TrainingLimits.in_epochs(config.max_epochs, config.steps_per_epoch, config.budget_seconds, config.min_steps)
    history = fit(network, limits, lambda: torch.zeros(1), train_step, cosine_decay(config.learning_rate), lambda: None, events.append)
    return history, rates, events


def test_a_budget_that_runs_out_early_is_stretched_to_the_minimum_steps() -> None:
    # 0.05 s steps make at most 10 steps in 0.5 s: the budget runs out, training goes on to 25 steps
    history, rates, events = _slow_fit(0.05, budget_seconds=1.0, min_steps=25, max_epochs=100)
    assert history.steps == 25 and history.stopped_by == "min_steps" and history.seconds >= 1.0
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:]))  # the decay never jumps back up
    assert rates[-1] < 0.05 * rates[0]  # and it still ends settled
    assert any("training on to 25 steps" in event.message for event in events)
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_the_minimum_steps_never_exceed_the_step_limit_nor_hold_back_a_fast_machine() -> None:
    history, _, _ = _slow_fit(0.05, budget_seconds=1.0, min_steps=1000, max_epochs=2)
    assert history.steps == 20 and history.stopped_by == "epochs"
    history, _, _ = _slow_fit(0.01, budget_seconds=1.0, min_steps=5, max_epochs=1000)
    assert history.stopped_by == "budget" and history.steps > 5 and 1.0 <= history.seconds < 3.0


def test_training_fraction_follows_the_later_of_budget_and_minimum_steps() -> None:
    # fast: the time budget is in charge; slow: the minimum steps are; no budget: the step limit
    assert training_fraction(500, 60.0, TrainingLimits(50_000, 120.0, 100)) == pytest.approx(0.5)
    assert training_fraction(50, 200.0, TrainingLimits(50_000, 120.0, 100)) == pytest.approx(0.5)
    assert training_fraction(100, 200.0, TrainingLimits(50_000, 120.0, 100)) == pytest.approx(1.0)
    assert training_fraction(30, 200.0, TrainingLimits(60, None, 100)) == pytest.approx(0.5)
    assert training_fraction(30, 200.0, TrainingLimits(50_000, 120.0, 0)) == pytest.approx(200.0 / 120.0)


def test_learning_rate_decays_from_the_base_to_two_percent() -> None:
    learning_rate = cosine_decay(1e-3)
    rates = [learning_rate(f) for f in np.linspace(0, 1, 11)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(2e-5)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate(1.5) == pytest.approx(2e-5) and learning_rate(-1) == pytest.approx(1e-3)


def test_a_late_decay_holds_the_rate_then_falls_to_its_floor() -> None:
    learning_rate = cosine_decay(2e-3, floor=0.05, start=0.7)
    assert learning_rate(0.0) == learning_rate(0.7) == 2e-3
    assert learning_rate(0.85) == pytest.approx(2e-3 * (0.05 + 0.95 * 0.5))
    assert learning_rate(1.0) == pytest.approx(1e-4) and learning_rate(2.0) == pytest.approx(1e-4)

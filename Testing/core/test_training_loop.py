"""The one training loop (DeepDenoiseLib.core.training_loop): a budget that runs out early is stretched
to the floor of steps, the floor never exceeds the step limit nor holds back a fast machine, the
learning-rate schedules decay smoothly whichever limit is in charge, and early stopping keeps the best
weights, the starting ones included."""

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


def _scored_fit(scores: list[float], patience: int, validate_first: bool) -> tuple[object, torch.nn.Linear]:
    """``fit`` on a one-weight network whose weight counts the steps made, validated with ``scores``
    in turn (the first is the starting weights' when ``validate_first``), 5 steps per epoch."""
    network = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(network.weight)
    remaining = list(scores)

    def train_step(batch: torch.Tensor, learning_rate: float) -> float:
        with torch.no_grad():
            network.weight += 1.0
        return 1.0

    limits = TrainingLimits(1000, None, 0, 5, patience=patience, validate_first=validate_first)
    history = fit(network, limits, lambda: torch.zeros(1), train_step, cosine_decay(1e-3), lambda: remaining.pop(0))
    return history, network


def test_patience_stops_once_the_validation_loss_has_not_improved_for_that_many_epochs() -> None:
    history, network = _scored_fit([5.0, 4.0, 4.5, 4.2, 3.0, 3.5, 3.6, 3.9, 9.0], patience=3, validate_first=False)
    # two stale epochs (4.5, 4.2) do not stop it; best after epoch 5 (3.0); epochs 6, 7 and 8 are no
    # better: it stops after 8 epochs and keeps epoch 5's weights
    assert history.stopped_by == "patience" and history.steps == 40
    assert history.best_validation_loss == 3.0 and float(network.weight) == 25.0


def test_validating_the_starting_weights_keeps_them_when_training_never_improves_on_them() -> None:
    history, network = _scored_fit([1.0, 2.0, 3.0, 4.0], patience=3, validate_first=True)
    assert history.initial_validation_loss == history.best_validation_loss == 1.0
    assert history.stopped_by == "patience" and history.steps == 15 and float(network.weight) == 0.0

"""Noise2Void training (DeepDenoiseLib.denoise.n2v_training, networks, core.device): seeded reproducibility
on the CPU, the time budget, progress events, cancellation, device fallback and the network/geometry choices."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

from DeepDenoiseLib.core.device import configure_threads, select_device
from DeepDenoiseLib.core.progress import Cancelled, CancelToken, ProgressEvent
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.n2v_training import train_noise2void
from DeepDenoiseLib.denoise.networks import build_network, resolve_slice_axes
from DeepDenoiseLib.nets.blindspot import BlindSpotNet
from DeepDenoiseLib.nets.unet import UNet
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401

SHAPE = (8, 32, 32)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    _, noisy = noisy_phantom(SHAPE, sigma=0.1, seed=3)
    return noisy


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "method, sections",
    [
        ("n2v", {}),
        ("n2v2", {"model": {"dimensions": "3d"}, "training": {"patch_size": 8}}),
        ("blindspot", {}),
    ],
)
def test_same_seed_gives_identical_weights_and_another_seed_differs(volume: np.ndarray, method: str, sections: dict) -> None:
    def run(seed: int):
        config = tiny_config(
            method, training=dict(sections.get("training", {}), seed=seed, steps_per_epoch=3, max_epochs=2), model=sections.get("model", {})
        )
        return train_noise2void(volume, config, noise_sigma=0.1)

    first, second, other = run(0), run(0), run(1)
    assert first.history.steps == second.history.steps == 6
    assert same_weights(weights(first), weights(second))
    assert first.history.train_loss == second.history.train_loss
    assert not same_weights(weights(first), weights(other))
    # the outputs agree too
    probe = torch.from_numpy(np.random.default_rng(0).normal(size=(1, first.geometry.channels, *first.geometry.spatial)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(first.network(probe), second.network(probe))


def test_time_budget_stops_training(volume: np.ndarray) -> None:
    config = tiny_config("n2v", training={"budget_seconds": 1.0, "steps_per_epoch": 100000, "max_epochs": 1, "min_steps": 0})
    start = time.perf_counter()
    model = train_noise2void(volume, config)
    wall = time.perf_counter() - start
    history = model.history
    assert history.stopped_by == "budget"
    assert 1.0 <= history.seconds < 4.0  # the budget is checked before each (millisecond) step
    assert wall < 30.0  # (set-up and the final validation pass included, on a loaded machine)
    assert 0 < history.steps < 100000


def test_step_limit_stops_training_when_no_budget(volume: np.ndarray) -> None:
    model = train_noise2void(volume, tiny_config("n2v", training={"steps_per_epoch": 4, "max_epochs": 3}))
    assert model.history.stopped_by == "epochs"
    assert model.history.steps == 12
    assert len(model.history.train_loss) == 3
    assert model.history.best_validation_loss == min(model.history.validation_loss)
    assert not model.network.training  # handed back in eval mode


def test_progress_events_reach_one_with_loss_and_eta(volume: np.ndarray) -> None:
    events: list[ProgressEvent] = []
    config = tiny_config("n2v", training={"steps_per_epoch": 15, "max_epochs": 2})
    train_noise2void(volume, config, progress=events.append)
    assert events and all(e.stage == "training" for e in events)
    fractions = [e.fraction for e in events]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and all(0.0 <= f <= 1.0 for f in fractions)
    steps = [e for e in events[1:-1]]
    assert len(steps) == 3  # every 10 of the 30 steps
    assert all(e.loss is not None and np.isfinite(e.loss) and e.eta_seconds is not None and e.eta_seconds >= 0 for e in steps)
    assert events[-1].loss is not None and events[-1].eta_seconds == 0.0
    assert "30 steps" in events[-1].message
    for event in events:
        ProgressEvent.from_json(event.to_json())  # every event survives the JSON-lines protocol


def test_cancelling_from_the_progress_callback_stops_training(volume: np.ndarray) -> None:
    token = CancelToken()
    events: list[ProgressEvent] = []

    def progress(event: ProgressEvent) -> None:
        events.append(event)
        if event.message.startswith("step"):
            token.cancel()

    config = tiny_config("n2v", training={"steps_per_epoch": 1000, "max_epochs": 5})
    with pytest.raises(Cancelled):
        train_noise2void(volume, config, progress=progress, cancel=token)
    assert token.cancelled
    assert [e.message for e in events] == ["starting", "step 10"]  # stopped at the very next step


def test_a_run_cancelled_before_it_starts_trains_nothing() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        train_noise2void(np.random.default_rng(0).random(SHAPE, dtype=np.float32), tiny_config("n2v"), cancel=token)


def test_noise_fusion_needs_a_noise_sigma(volume: np.ndarray) -> None:
    with pytest.raises(ValueError, match="sigma"):
        train_noise2void(volume, tiny_config("blindspot"))
    model = train_noise2void(volume, tiny_config("blindspot", model={"noise_fusion": False}))
    assert model.noise_variance is None and isinstance(model.network, BlindSpotNet)
    fused = train_noise2void(volume, tiny_config("blindspot"), noise_sigma=0.2)
    assert fused.noise_variance == pytest.approx(0.04)


# --- devices ---------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_requested_without_a_gpu_falls_back_to_cpu_with_a_warning(volume: np.ndarray) -> None:
    with pytest.warns(RuntimeWarning, match="CUDA"):
        assert select_device("cuda") == torch.device("cpu")
    with pytest.warns(RuntimeWarning, match="CUDA"):
        model = train_noise2void(volume, tiny_config("n2v", training={"device": "cuda", "steps_per_epoch": 1, "max_epochs": 1}))
    assert model.device == torch.device("cpu")
    assert next(model.network.parameters()).device.type == "cpu"


def test_auto_takes_a_gpu_when_there_is_one_and_an_unknown_device_is_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cpu and auto never warn
        assert select_device("cpu") == torch.device("cpu")
        auto = select_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert auto == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        select_device("tpu")


def test_the_thread_count_is_set_and_none_keeps_the_current_one() -> None:
    before = torch.get_num_threads()
    try:
        configure_threads(1)
        assert torch.get_num_threads() == 1
        configure_threads(None)
        assert torch.get_num_threads() == 1  # None keeps the current setting
    finally:
        torch.set_num_threads(before)


# --- network and geometry choices ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sections, shape, spacing, expected",
    [
        ({}, (64, 80, 72), (1.0, 1.0, 1.0), (0, 1, 2)),  # auto: isotropic, every axis holds a 64 patch
        ({}, (64, 64, 64), (3.0, 1.0, 1.0), (0,)),  # auto: thick slices
        ({}, (48, 120, 104), (1.0, 1.0, 1.0), (0,)),  # auto: thinner than a patch keeps its own slices
        ({"training": {"patch_size": 32}}, (48, 120, 104), (1.0, 1.0, 1.0), (0, 1, 2)),
        ({"model": {"slice_axes": "kji"}}, (8, 64, 64), (3.0, 1.0, 1.0), (0, 1, 2)),
        ({"model": {"slice_axes": "k"}}, (40, 40, 40), (1.0, 1.0, 1.0), (0,)),
        ({"model": {"dimensions": "3d", "slice_axes": "kji"}}, (40, 40, 40), (1.0, 1.0, 1.0), (0,)),
    ],
)
def test_slice_orientations_follow_the_setting_and_auto_takes_all_three_for_isotropic_volumes(
    sections: dict, shape: tuple, spacing: tuple, expected: tuple
) -> None:
    config = DenoiseConfig.for_method("n2v", **sections)
    assert resolve_slice_axes(config, shape, spacing) == expected


def test_each_method_gets_its_network_and_patch_shape() -> None:
    spacing = (1.0, 1.0, 1.0)
    blind, geometry = build_network(tiny_config("blindspot", model={"context_slices": 2}), (8, 32, 32), spacing)
    assert isinstance(blind, BlindSpotNet) and blind.in_channels == 5 and geometry.spatial == (16, 16)
    assert blind.fusion[-1].out_channels == 2  # prior mean and log variance
    assert build_network(tiny_config("blindspot", model={"noise_fusion": False}), (8, 32, 32), spacing)[0].fusion[-1].out_channels == 1
    unet2d, geometry = build_network(tiny_config("n2v"), (8, 32, 32), spacing)
    assert isinstance(unet2d, UNet) and unet2d.spatial_dims == 2 and geometry.channels == 3
    unet3d, geometry = build_network(tiny_config("n2v", model={"dimensions": "3d"}), (8, 32, 32), spacing)
    assert unet3d.spatial_dims == 3 and geometry.spatial == (8, 16, 16) and geometry.channels == 1
    # several orientations: the patch fits the smallest axis
    _, geometry = build_network(tiny_config("n2v", training={"patch_size": 64}), (12, 40, 40), spacing, (0, 1, 2))
    assert geometry.spatial == (12, 12)

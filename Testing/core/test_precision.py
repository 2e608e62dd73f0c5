"""The training arithmetic: what each request gives, how ``auto`` decides, and the weights' layout."""

from __future__ import annotations

import time

import pytest
import torch

from DeepDenoiseLib.core.precision import MIN_SPEEDUP, TrainingPrecision, bfloat16_available, choose_precision

CPU = torch.device("cpu")


def timed_probe(seconds_float32: float, seconds_bfloat16: float, calls: list[str]):
    """A probe that takes the given time in each arithmetic and records what it was asked for."""

    def probe(precision: TrainingPrecision) -> None:
        calls.append(precision.name)
        time.sleep(seconds_bfloat16 if precision.bfloat16 else seconds_float32)

    return probe


def test_float32_and_bfloat16_are_taken_as_asked_without_timing_anything() -> None:
    calls: list[str] = []
    probe = timed_probe(0.01, 0.01, calls)
    assert choose_precision("float32", CPU, probe).name == "float32"
    assert choose_precision("bfloat16", CPU, probe).name == "bfloat16"
    assert calls == []


def test_auto_takes_bfloat16_only_when_it_is_clearly_faster() -> None:
    calls: list[str] = []
    assert choose_precision("auto", CPU, timed_probe(0.02, 0.005, calls)).name == "bfloat16"
    assert set(calls) == {"float32", "bfloat16"}
    assert choose_precision("auto", CPU, timed_probe(0.005, 0.02, [])).name == "float32"  # emulated bfloat16: slower
    assert choose_precision("auto", CPU, timed_probe(0.01, 0.01 / (0.8 * MIN_SPEEDUP), [])).name == "float32"  # not by enough


def test_bfloat16_is_refused_where_it_cannot_run_and_auto_falls_back_to_float32() -> None:
    mps = torch.device("mps")
    assert not bfloat16_available(mps)
    with pytest.raises(ValueError, match="bfloat16 cannot run"):
        choose_precision("bfloat16", mps, timed_probe(0.0, 0.0, []))
    calls: list[str] = []
    assert choose_precision("auto", mps, timed_probe(0.0, 0.0, calls)).name == "float32"
    assert calls == []
    with pytest.raises(ValueError, match="training.precision"):
        choose_precision("half", CPU, timed_probe(0.0, 0.0, []))


def test_bfloat16_training_holds_the_weights_channels_last_and_gives_them_back_in_the_standard_layout() -> None:
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 1, 3, padding=1))
    precision = TrainingPrecision("cpu", bfloat16=True)
    with pytest.raises(RuntimeError):
        with precision.training(network):
            assert network[0].weight.is_contiguous(memory_format=torch.channels_last)
            assert not network[0].weight.is_contiguous()
            with precision.autocast():
                assert network(torch.rand(2, 3, 8, 8)).dtype == torch.bfloat16
            raise RuntimeError("a failed run")
    assert all(parameter.is_contiguous() for parameter in network.parameters())  # restored even after the failure
    with TrainingPrecision("cpu").autocast():
        assert network(torch.rand(2, 3, 8, 8)).dtype == torch.float32

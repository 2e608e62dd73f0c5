"""Tests of bench/train_prior.py's flags: training further keeps the starting prior's architecture, so
a flag that would change it is refused rather than ignored."""

from __future__ import annotations

import pytest

from bench import train_prior
from DeepDenoiseLib.denoise.prior import PriorArchitecture


def test_start_from_refuses_an_architecture_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        train_prior.parse_args(["--start-from", "first.safetensors", "--channels", "48"])
    assert "drop --channels" in capsys.readouterr().err


def test_architecture_flags_change_the_default_architecture_without_start_from() -> None:
    args = train_prior.parse_args(["--depth", "3"])
    assert args.depth == 3 and args.start_from is None and args.channels is None
    assert train_prior.given_architecture(args) == PriorArchitecture(depth=3)

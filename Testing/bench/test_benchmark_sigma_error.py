"""Tests of bench/benchmark_sigma_error.py on a tiny stand-in for the shared data: a sigma told too
high reads a lower SURE than the true one, and every factor gets a row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.benchmark_sigma_error import main
from Testing.support.phantoms import single_thread  # noqa: F401
from Testing.support.shared_stand_in import write_shared_stand_in


def test_a_sigma_told_too_high_reads_a_lower_sure_and_every_factor_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sigma.json"
    arguments = ["--shared", str(write_shared_stand_in(tmp_path / "shared")), "--variants", "gaussian07", "--factors", "1.0", "2.0"]
    assert main(arguments + ["--steps", "50", "--output", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["factor"] for row in rows] == [None, 1.0, 2.0]  # the noisy input first
    assert rows[2]["sure_error_to_noise"] < rows[1]["sure_error_to_noise"]
    assert rows[1]["psnr"] > rows[0]["psnr"]
    assert "| gaussian07 | 2 |" in capsys.readouterr().out


def test_steps_that_are_not_whole_epochs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--shared", str(tmp_path), "--steps", "75"])

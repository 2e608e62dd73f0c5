"""The 4D series benchmark (bench/benchmark_series.py) end to end on a tiny stand-in for the shared
volume: every method scored in one run, the table printed and the rows written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from bench.benchmark_series import main as benchmark_main
from bench.variants import CLEAN_FILE
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import write_volume


def test_series_benchmark_scores_every_method_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("dipy")
    grid = np.indices((36, 36, 36), dtype=np.float32) - 17.5
    head = (np.sqrt((grid**2).sum(axis=0)) < 15).astype(np.float32) * (1.0 + 0.2 * np.sin(grid[0] / 3.0))
    write_volume(Volume(head), tmp_path / CLEAN_FILE)
    out = tmp_path / "series.json"
    benchmark_main(["--shared", str(tmp_path), "--variants", "0", "--threads", "1", "--mean-seconds", "1", "--json", str(out)])
    table = capsys.readouterr().out
    assert "| method | PSNR (dB) | changes' PSNR (dB) | BOLD time-course r | event time-course r | event kept | tSNR | seconds |" in table
    rows = json.loads(out.read_text())
    methods = [row["method"] for row in rows]
    assert methods[0] == "noisy input" and "dipy mppca (radius 2)" in methods
    # dipy's patch2self needs scikit-learn (the bench extra, not the test extra): without it the row is left out.
    assert ("dipy patch2self (OLS)" in methods) == (importlib.util.find_spec("sklearn") is not None)
    by_method = {row["method"]: row for row in rows}
    ours, noisy = by_method["MP-PCA, the 4D default (stride 2)"], by_method["noisy input"]
    assert ours["psnr"] > noisy["psnr"] + 3.0 and ours["seconds"] > 0
    # The ceiling keeps the true changes (exact: no changes' PSNR) on the noisy temporal mean, which local PCA
    # keeps too: it is above the methods, and its error is the mean's, sigma / sqrt(frames) (+10 log10 frames).
    ceiling = by_method["ceiling: the true changes on the noisy temporal mean"]
    assert ceiling["changes_psnr"] is None and ceiling["psnr"] > ours["psnr"]
    assert ceiling["psnr"] == pytest.approx(noisy["psnr"] + 10.0 * np.log10(40), abs=0.3)
    assert ours["changes_psnr"] > noisy["changes_psnr"] + 3.0
    assert any(method.startswith("ceiling: the true changes on the temporal mean denoised in 3D") for method in methods)
    # At stride 1 the library's MP-PCA is dipy's (plus the pipeline's normalisation, which changes nothing here).
    assert by_method["MP-PCA (stride 1)"]["psnr"] == pytest.approx(by_method["dipy mppca (radius 2)"]["psnr"], abs=0.05)

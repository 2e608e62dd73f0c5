"""The MONAI comparison benchmark on a tiny synthetic volume: it runs, writes its JSON, and the
agreements it reports hold (the same cosine schedule, the same DDIM and DDPM step, the same PSNR).
Skipped where MONAI is not installed: the library does not depend on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("monai")

from bench.compare_monai import main  # noqa: E402


def test_compare_monai_writes_rows_that_agree_where_the_maths_is_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "monai.json"
    argv = ["--shape", "16", "24", "16", "--tile", "16", "--overlaps", "4", "--width", "4", "--repeats", "1"]
    argv += ["--timesteps", "40", "--sampling-steps", "8", "--unet-patch", "16", "--shared", str(tmp_path / "none")]
    rows = main(argv + ["--output", str(output)])

    record = json.loads(output.read_text(encoding="utf-8"))
    assert record["data"].startswith("synthetic phantom")
    assert {row["part"] for row in record["rows"]} == {"tiling", "diffusion", "metrics", "unet"}
    by_what = {row.get("what", row.get("method")): row for row in rows}
    assert by_what["cosine betas (ours float64, MONAI float32)"]["max_diff"] < 1e-5
    assert by_what["one DDIM step, eta 0, v-prediction, 64^3"]["max_diff"] < 1e-5
    assert by_what["one DDIM step, eta 1, v-prediction, 64^3"]["max_diff"] < 1e-5
    assert by_what["one DDPM step, v-prediction, 64^3"]["max_diff"] < 1e-5
    assert by_what["PSNR, brain mask"]["max_diff"] < 1e-4
    tiled = [row for row in rows if row["part"] == "tiling" and row["overlap"] != "-"]
    assert len(tiled) == 3 and all(row["max_diff"] >= 0 for row in tiled)
    assert "| tiling |" in capsys.readouterr().out

"""Benchmark: real 4D fMRI denoised as a series, one model for all frames (nibabel's bundled data).

For each file (example4d.nii.gz: 2 frames of 128x96x24; functional.nii: 20 frames of 17x21x3) the
default method trains ONE model on patches of every frame for a fixed number of steps, then predicts
each frame. Reported: temporal SNR (each voxel's mean over time / its standard deviation over time,
median inside a mask from the mean image) before and after, the noise sigma estimated on the frames
(median over frames) before and after, and the wall time of the shared-model run against an
estimate for one model per frame: the frame count times the measured time of the same run on the
first frame alone (per-step cost does not depend on the frame count). Prints a Markdown table and
writes the raw rows as JSON::

    python bench/benchmark_fmri.py --steps 200 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from DeepDenoiseLib.core.metrics import mean_image_mask, temporal_snr
from DeepDenoiseLib.core.volume_io import read_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.pipeline import denoise_series, denoise_volume

FILES = ("example4d.nii.gz", "functional.nii")


def nibabel_data() -> Path:
    import nibabel

    return Path(os.path.dirname(nibabel.__file__)) / "tests" / "data"


def run_file(path: Path, config: DenoiseConfig) -> dict[str, Any]:
    series = read_volume(path, allow_4d=True)
    frames = series.array.shape[0]
    start = time.perf_counter()
    shared = denoise_series(series, config)
    shared_seconds = time.perf_counter() - start
    start = time.perf_counter()
    denoise_volume(series.with_array(series.array[0]), config)
    single_seconds = time.perf_counter() - start
    before = series.array.astype(np.float64)
    mask = mean_image_mask(before)
    return dict(
        file=path.name,
        shape_xyz=list(series.array.shape[1:][::-1]),
        frames=frames,
        mask_voxels=int(mask.sum()),
        tsnr_before=temporal_snr(before, mask),
        tsnr_after=temporal_snr(shared.denoised.array, mask),
        sigma_before=shared.summary["noise_sigma_before"],
        sigma_after=shared.summary["noise_sigma_after"],
        training_steps=shared.summary["training_steps"],
        shared_seconds=shared_seconds,
        shared_training_seconds=shared.summary["training_seconds"],
        shared_prediction_seconds=shared.summary["prediction_seconds"],
        single_frame_seconds=single_seconds,
        per_frame_estimate_seconds=frames * single_seconds,
    )


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (a multiple of 50), the same for every run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="auto, cuda, mps or cpu")
    parser.add_argument("--json", type=Path, default=Path("bench/results/fmri.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.steps % 50:
        parser.error("--steps must be a multiple of 50 (one epoch)")
    config = DenoiseConfig.for_method(
        "blindspot",
        training={"budget_seconds": None, "steps_per_epoch": 50, "max_epochs": args.steps // 50, "seed": 0, "device": args.device},
    )
    rows = []
    for name in FILES:
        path = nibabel_data() / name
        if not path.is_file():
            print(f"skipped {name}: not in nibabel's test data ({path.parent})", flush=True)
            continue
        rows.append(run_file(path, config))
        print(json.dumps(rows[-1]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print_table(rows, args.steps)


def print_table(rows: list[dict[str, Any]], steps: int) -> None:
    print(
        f"\n| file | voxels (x y z) | frames | tSNR before | tSNR after | noise sigma before → after | one shared model ({steps} steps) | one model per frame (estimate) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['file']} | {' x '.join(map(str, r['shape_xyz']))} | {r['frames']} | {r['tsnr_before']:.1f} | "
            f"{r['tsnr_after']:.1f} | {r['sigma_before']:.4g} → {r['sigma_after']:.4g} | "
            f"{r['shared_seconds']:.0f} s (training {r['shared_training_seconds']:.0f} s) | "
            f"{r['per_frame_estimate_seconds']:.0f} s ({r['frames']} x {r['single_frame_seconds']:.0f} s) |"
        )


if __name__ == "__main__":
    main()

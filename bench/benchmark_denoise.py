"""Benchmark: DeepDenoise against the filters users would pick instead, on the shared MNI152 volumes.

Scores follow ../shared/README.md: PSNR (data range 1) and 3D SSIM (win 7, no Gaussian weights)
inside the brain mask, outputs unclipped; wall time is the denoising call alone (no file I/O), on
the same machine in the same run. The default method runs ``--repeats`` times with different seeds
and the table quotes medians (the runs column says how many); the other learned methods run once
(``--repeats-baselines``) to keep the benchmark under an hour on 2 cores. Prints a Markdown table and writes the raw rows as JSON::

    python bench/benchmark_denoise.py --shared ../shared/data --levels 05 10 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk
import torch

from DeepDenoiseLib.config import DenoiseConfig, deep_merge
from DeepDenoiseLib.metrics import estimate_noise_sigma, psnr, ssim
from DeepDenoiseLib.pipeline import denoise_volume
from DeepDenoiseLib.volume import Volume
from DeepDenoiseLib.volume_io import read_volume

Method = Callable[[Volume, int], np.ndarray]


def slicer_anisotropic_diffusion(volume: Volume, seed: int) -> np.ndarray:
    """Slicer's "Curvature Anisotropic Diffusion" module with its defaults (conductance 1,
    1 iteration, time step 0.0625), through the same ITK filter."""
    image = sitk.GetImageFromArray(volume.array.astype(np.float32))
    image.SetSpacing(volume.spacing)
    filtered = sitk.CurvatureAnisotropicDiffusion(image, timeStep=0.0625, conductanceParameter=1.0, numberOfIterations=1)
    return sitk.GetArrayFromImage(filtered)


def skimage_nl_means(volume: Volume, seed: int) -> np.ndarray:
    """scikit-image non-local means with its own sigma estimate (fast mode, 5^3 patches, 13^3 search)."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    sigma = float(estimate_sigma(volume.array))
    return denoise_nl_means(volume.array, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)


def deepdenoise(overrides: dict[str, Any]) -> Method:
    def run(volume: Volume, seed: int) -> np.ndarray:
        settings = deep_merge({k: v for k, v in overrides.items() if k != "method"}, {"training": {"seed": seed}})
        config = DenoiseConfig.for_method(overrides.get("method", "blindspot"), **settings)
        return denoise_volume(volume, config).denoised.array

    return run


def methods(budget_seconds: float) -> dict[str, tuple[Method, bool]]:
    """Name -> (method, is it the default?). The default repeats with new seeds."""
    training = {"budget_seconds": budget_seconds}
    return {
        "Slicer CurvatureAnisotropicDiffusion, defaults": (slicer_anisotropic_diffusion, False),
        "scikit-image NL-means, estimated sigma": (skimage_nl_means, False),
        f"DeepDenoise N2V 2D (masking, {budget_seconds:.0f} s training)": (
            deepdenoise({"method": "n2v", "training": dict(training, batch_size=16)}),
            False,
        ),
        f"DeepDenoise N2V 3D (masking, {budget_seconds:.0f} s training)": (
            deepdenoise({"method": "n2v", "model": {"dimensions": "3d"}, "training": dict(training, patch_size=32, batch_size=4)}),
            False,
        ),
        f"DeepDenoise blind-spot N2V + fusion, default ({budget_seconds:.0f} s training)": (
            deepdenoise({"method": "blindspot", "training": training}),
            True,
        ),
    }


def score(clean: np.ndarray, mask: np.ndarray, output: np.ndarray) -> tuple[float, float]:
    return psnr(clean, output, data_range=1.0, mask=mask), ssim(clean, output, data_range=1.0, mask=mask)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--levels", nargs="+", default=["05", "10"], help="Rician levels (05, 10)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the default method (medians are quoted)")
    parser.add_argument("--repeats-baselines", type=int, default=1, help="runs of the other learned methods")
    parser.add_argument("--budget-seconds", type=float, default=180.0, help="training budget of the learned methods")
    parser.add_argument("--only", nargs="*", help="run only methods whose name contains one of these words")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=Path("bench/results/denoise.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    clean = read_volume(args.shared / "mni152_t1_128_clean.nii.gz").array
    mask = read_volume(args.shared / "mni152_t1_128_mask.nii.gz").array > 0
    rows: list[dict[str, Any]] = []
    for level in args.levels:
        noisy = read_volume(args.shared / f"mni152_t1_128_rician{level}.nii.gz")
        psnr_db, ssim_value = score(clean, mask, noisy.array)
        rows.append(dict(level=level, method="noisy input", psnr=psnr_db, ssim=ssim_value, seconds=0.0, runs=1))
        print(f"[{level}] noisy input: {psnr_db:.2f} dB, SSIM {ssim_value:.3f}; sigma estimate {estimate_noise_sigma(noisy.array):.4f}", flush=True)
        for name, (method, is_default) in methods(args.budget_seconds).items():
            if args.only and not any(word.lower() in name.lower() for word in args.only):
                continue
            learned = name.startswith("DeepDenoise")
            repeats = args.repeats if is_default else args.repeats_baselines if learned else 1
            runs = []
            for seed in range(repeats):
                start = time.perf_counter()
                output = method(noisy, seed)
                seconds = time.perf_counter() - start
                runs.append((*score(clean, mask, output), seconds))
                print(f"[{level}] {name} seed {seed}: {runs[-1][0]:.2f} dB, SSIM {runs[-1][1]:.3f}, {seconds:.0f} s", flush=True)
            rows.append(
                dict(
                    level=level,
                    method=name,
                    psnr=statistics.median(r[0] for r in runs),
                    ssim=statistics.median(r[1] for r in runs),
                    seconds=statistics.median(r[2] for r in runs),
                    runs=len(runs),
                    all_runs=runs,
                )
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print_table(rows, args.levels)


def print_table(rows: list[dict[str, Any]], levels: list[str]) -> None:
    names = list(dict.fromkeys(r["method"] for r in rows))
    header = "| method | " + " | ".join(f"Rician {int(level)} %: PSNR dB / SSIM / time" for level in levels) + " | runs |"
    print("\n" + header)
    print("|" + "---|" * (len(levels) + 2))
    for name in names:
        cells, runs = [], 1
        for level in levels:
            match = [r for r in rows if r["method"] == name and r["level"] == level]
            if match:
                r = match[0]
                runs = r["runs"]
                time_text = "—" if name == "noisy input" else f"{r['seconds']:.0f} s"
                cells.append(f"{r['psnr']:.2f} / {r['ssim']:.3f} / {time_text}")
            else:
                cells.append("—")
        print(f"| {name} | " + " | ".join(cells) + f" | {runs} |")


if __name__ == "__main__":
    main()

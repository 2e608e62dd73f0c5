"""Benchmark: what a noise level taken wrong costs the default, and what its self-check (SURE) reads then.

R2R learns the clean volume only when it is told the noise's true sigma: recorrupted with more noise
than the volume holds, its input and target noises are anti-correlated, and it learns to remove more
than noise. On real scans the sigma is estimated, and an estimate can read fine structure as noise
(docs/methods.md, Correlated noise, "Limit"). This script tells the default ``--factors`` times the
true sigma of a Gaussian or Rician variant (``noise.sigma``, white noise), trains a fixed number of
steps (no time budget, as benchmark_steps.py), and reports the PSNR / SSIM in the brain mask and
SURE's estimate of the error over the noise variance (``self_check.error_to_noise``: below zero no
result can be, which the run warns about), so that a rule that corrects the sigma by SURE can be
judged against the truth::

    python bench/benchmark_sigma_error.py --variants gaussian07 --crop 64 --steps 50
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before torch loads: spinning OpenMP threads make torch 10-30x slower on a busy machine (Testing/conftest.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib and bench
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any, Optional  # noqa: E402

from bench.variants import VARIANTS, centre_block, centre_crop, load_bench_data, make_noisy, variant_truth  # noqa: E402
from DeepDenoiseLib.core.metrics import psnr, ssim  # noqa: E402
from DeepDenoiseLib.denoise.config import DenoiseConfig, TrainingConfig  # noqa: E402
from DeepDenoiseLib.denoise.pipeline import denoise_volume  # noqa: E402

#: The variants whose noise is one known sigma (white Gaussian or Rician).
KNOWN_SIGMA = [name for name, variant in VARIANTS.items() if variant.model in ("gaussian", "rician") and not variant.correlation_width]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--variants", nargs="+", default=["gaussian07"], choices=KNOWN_SIGMA)
    parser.add_argument(
        "--factors", nargs="+", type=float, default=[0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5], help="sigma told, over the true one"
    )
    parser.add_argument("--steps", type=int, default=50, help="training steps from the prior (a multiple of 50)")
    parser.add_argument("--crop", type=int, help="denoise and score the central N^3 block only")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "results" / "sigma_error.json")
    args = parser.parse_args(argv)
    if args.steps < TrainingConfig.steps_per_epoch or args.steps % TrainingConfig.steps_per_epoch:
        parser.error(f"--steps must be a positive multiple of {TrainingConfig.steps_per_epoch}")
    data = load_bench_data(args.shared)
    rows: list[dict[str, Any]] = []
    for name in args.variants:
        variant = VARIANTS[name]
        truth = variant_truth(variant, data)
        clean, mask, noisy = truth.clean.array, truth.mask, make_noisy(variant, truth.clean, args.shared)
        if args.crop:
            block = centre_block(clean.shape, args.crop)
            clean, mask, noisy = clean[block], mask[block], centre_crop(noisy, args.crop)
        rows.append(
            {"variant": name, "factor": None, "psnr": psnr(clean, noisy.array, 1.0, mask), "ssim": ssim(clean, noisy.array, 1.0, mask=mask)}
        )
        for factor in args.factors:
            training = {"seed": 0, "budget_seconds": None, "max_epochs": args.steps // TrainingConfig.steps_per_epoch, "patience": None}
            noise = {"model": variant.model, "sigma": factor * variant.level, "correlation": "white"}
            start = time.perf_counter()
            result = denoise_volume(noisy, DenoiseConfig.for_method("r2r", training=training, noise=noise))
            row = {
                "variant": name,
                "factor": factor,
                "psnr": psnr(clean, result.denoised.array, 1.0, mask),
                "ssim": ssim(clean, result.denoised.array, 1.0, mask=mask),
                "sure_error_to_noise": result.summary["self_check"]["error_to_noise"],
                "passed": result.summary["self_check"]["passed"],
                "warned": any("below zero" in warning for warning in result.summary["warnings"]),
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"{args.steps} steps from the prior" + (f", central {args.crop}^3 block" if args.crop else ""))
    print("| variant | sigma told / true | PSNR dB / SSIM | SURE error / noise variance | self-check |")
    print("|---|---|---|---|---|")
    for row in rows:
        if row["factor"] is None:
            print(f"| {row['variant']} | noisy input | {row['psnr']:.2f} / {row['ssim']:.3f} | | |")
            continue
        verdict = ("passed" if row["passed"] else "FAILED: input returned") + ("; warned: below zero" if row["warned"] else "")
        print(
            f"| {row['variant']} | {row['factor']:g} | {row['psnr']:.2f} / {row['ssim']:.3f} | {row['sure_error_to_noise']} | {verdict} |"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"arguments": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

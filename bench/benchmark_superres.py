"""Benchmark: super-resolution x4 along Z on the shared MNI152 volume, against cubic-spline upsampling.

The clean 1.5 mm volume is degraded x4 along Z (cubic spline sampled at the 6 mm slice centres; see
DeepDenoiseLib/superres/grid.py) and restored to 1.5 mm by:

* cubic spline (order 3) along Z;
* the conditional UNet trained as a plain L1 regressor of the spline's residual (supervised);
* the DDPM (supervised), predict and refine: half the budget trains the L1 regression prior, half
  the diffusion model conditioned on the prior's estimate; the result is the mean of K DDIM samples;
* the same DDPM self-supervised: trained on the low-resolution volume's own in-plane detail only;
* the DDPM (supervised) conditioned on the spline alone (no prior), all the budget on diffusion.

Split: the template is exactly left-right symmetric, so a left/right split would test on the mirror
image of the training data. The supervised models train on the posterior half of the clean volume
(j < 64) and everything is scored on the anterior half (j >= 64) inside the brain mask; whole-mask
figures (which include the supervised models' training half) come second. PSNR with data range 1,
3D SSIM (win 7) averaged over the mask; outputs unclipped. Times are the training and the sampling
of the whole volume, on this machine. Prints a Markdown table and writes bench/results/superres.json::

    python bench/benchmark_superres.py --shared ../shared/data
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from DeepDenoiseLib.core.metrics import psnr, ssim  # noqa: E402
from DeepDenoiseLib.core.settings import deep_merge  # noqa: E402
from DeepDenoiseLib.core.volume import Volume  # noqa: E402
from DeepDenoiseLib.core.volume_io import read_volume  # noqa: E402
from DeepDenoiseLib.superres.config import SuperResConfig  # noqa: E402
from DeepDenoiseLib.superres.diffusion_schedule import cosine_schedule, design_alpha_bar  # noqa: E402
from DeepDenoiseLib.superres.grid import degrade_volume, upsample_spline  # noqa: E402
from DeepDenoiseLib.superres.pipeline import superres_volume  # noqa: E402

FACTOR = 4
SPLIT_J = 64


def score(clean: np.ndarray, result: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    test = mask.copy()
    test[:, :SPLIT_J, :] = False
    return {
        "psnr_test": psnr(clean, result, 1.0, test),
        "ssim_test": ssim(clean, result, 1.0, mask=test),
        "psnr_mask": psnr(clean, result, 1.0, mask),
        "ssim_mask": ssim(clean, result, 1.0, mask=mask),
    }


def run_model(low: Volume, overrides: dict[str, Any], training: Optional[list[Volume]]) -> tuple[np.ndarray, dict[str, Any]]:
    config = SuperResConfig.from_dict(deep_merge({"factor": FACTOR, "axis": "z"}, overrides))
    result = superres_volume(low, config, training)
    return result.volume.array, result.summary


def schedule_table() -> str:
    cosine = cosine_schedule(1000).alpha_bar
    design = design_alpha_bar(1000)
    lines = ["| step of 1000 | cosine alpha-bar (s = 0.008) | literal cos^2(pi t / 2T) product |", "|---|---|---|"]
    for step in (50, 100, 150, 200, 500, 900, 1000):
        lines.append(f"| {step} | {cosine[step - 1]:.3g} | {design[step - 1]:.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--budget-seconds", type=float, default=450.0, help="training budget of each learned method")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps")
    parser.add_argument("--samples", type=int, default=4, help="DDIM samples averaged per patch")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["spline", "regression", "ddpm", "ddpm-self"],
        choices=["spline", "regression", "ddpm", "ddpm-self", "ddpm-no-prior"],
        help="ddpm-no-prior (the diffusion model on the spline alone) is left out by default (it adds about 8 minutes to the 30)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", default="{}", help="JSON settings laid over every learned method's config")
    parser.add_argument("--output", type=Path, default=Path("bench/results/superres.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    clean = read_volume(args.shared / "mni152_t1_128_clean.nii.gz")
    mask = read_volume(args.shared / "mni152_t1_128_mask.nii.gz").array > 0
    low = degrade_volume(clean, FACTOR, "z", "spline")
    posterior = Volume(clean.array[:, :SPLIT_J, :].copy(), clean.spacing, clean.origin, clean.direction)
    common = deep_merge(
        {
            "training": {"budget_seconds": args.budget_seconds, "seed": args.seed, "threads": args.threads},
            "sampling": {"steps": args.steps, "samples": args.samples, "seed": args.seed},
        },
        json.loads(args.set),
    )
    runs = {
        "regression": ("UNet L1 regression (supervised)", {"method": "regression", "mode": "supervised"}, [posterior]),
        "ddpm": ("DDPM on a regression prior, mean of K samples (supervised)", {"method": "ddpm", "mode": "supervised"}, [posterior]),
        "ddpm-self": (
            "DDPM on a regression prior, mean of K samples (self-supervised)",
            {"method": "ddpm", "mode": "self-supervised"},
            None,
        ),
        "ddpm-no-prior": (
            "DDPM on the spline alone, mean of K samples (supervised)",
            {"method": "ddpm", "mode": "supervised", "diffusion": {"prior_share": 0.0}},
            [posterior],
        ),
    }
    rows = []
    for name in args.methods:
        start = time.perf_counter()
        if name == "spline":
            result = upsample_spline(low.array, FACTOR, 0)
            row = {"method": "cubic spline (order 3)", "train_s": 0.0, "sample_s": time.perf_counter() - start}
        else:
            label, overrides, training = runs[name]
            result, summary = run_model(low, deep_merge(common, overrides), training)
            row = {
                "method": label,
                "train_s": summary["training_seconds"],
                "sample_s": summary["prediction_seconds"],
                "steps": summary["training_steps"],
            }
        row.update(score(clean.array, result, mask))
        row["key"] = name
        rows.append(row)
        print(json.dumps(row), flush=True)

    print()
    print(f"DDIM steps {args.steps}, K = {args.samples} samples, training budget {args.budget_seconds:.0f} s per learned method")
    print()
    print("| method | PSNR dB (anterior half) | SSIM (anterior half) | PSNR dB (whole mask) | SSIM (whole mask) | train s | sample s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['method']} | {row['psnr_test']:.2f} | {row['ssim_test']:.3f} | {row['psnr_mask']:.2f} | "
            f"{row['ssim_mask']:.3f} | {row['train_s']:.0f} | {row['sample_s']:.0f} |"
        )
    print()
    print(schedule_table())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"arguments": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

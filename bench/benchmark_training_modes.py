"""Benchmark: the paired training modes on the shared MNI152 volume, and a synthetic fMRI series.

Supervised training (UNet and denoising autoencoder, each with and without the adversarial term)
learns from the left hemisphere (array columns i < 64; the direction matrix puts them on the
patient's left) of the noisy volume and its clean truth, then denoises the whole noisy volume;
everything is scored on the right hemisphere only, which training never saw. The template is
left-right symmetric, so the right hemisphere's anatomy is close to the mirror image of the left's
(flips are among the training augmentations); its noise is independent. Noise2Noise needs no clean
volume: it learns from the shared noisy volume and a second, independent Rician draw (seed
``--second-seed``), once predicting from each acquisition and averaging (``each``), once from their
mean (``mean``), and is scored on the same right hemisphere; the plain average of the two draws is
its baseline. Scores: PSNR (data range 1) and 3D SSIM (win 7) inside the brain mask, as in
``../shared/README.md``, and an edge-sharpness ratio: the mean gradient magnitude of the output over
the 10 % of mask voxels where the clean volume's gradient is strongest, divided by the clean
volume's there (1 = as sharp as the truth; blurring lowers it, leftover noise raises it).

Training runs a fixed number of steps (``--steps``; batch 8 of 48x48 axial patches, learning rate
3e-3, which did better than the library's defaults at so few steps), not a time budget, so that
results do not depend on the machine's load; the time column does. Then the synthetic fMRI series of the tests
(block design, 4 % activation) is denoised with Noise2Noise at two step counts. Prints Markdown
tables; 6.7 minutes of CPU time (about 5-6 minutes on an idle 2-core CPU; 16 on a loaded one)::

    python bench/benchmark_training_modes.py --shared ../shared/data
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from DeepDenoiseLib.core.metrics import psnr, ssim
from DeepDenoiseLib.core.noise_simulation import add_rician_noise
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.noise2noise import noise2noise_series, noise2noise_volumes
from DeepDenoiseLib.denoise.supervised import denoise_with_model, train_supervised

REPO_ROOT = Path(__file__).resolve().parents[1]
MIDLINE = 64  # the mid-sagittal plane of the 128-column grid


def edge_sharpness(clean: np.ndarray, output: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude of ``output`` over the mask's strongest clean edges (top 10 %) over
    the clean volume's own."""
    clean_gradient = np.linalg.norm(np.stack(np.gradient(clean.astype(np.float64))), axis=0)
    output_gradient = np.linalg.norm(np.stack(np.gradient(output.astype(np.float64))), axis=0)
    edges = mask & (clean_gradient >= np.percentile(clean_gradient[mask], 90))
    return float(output_gradient[edges].mean() / clean_gradient[edges].mean())


def left(volume: Volume) -> Volume:
    return Volume(np.ascontiguousarray(volume.array[:, :, :MIDLINE]), volume.spacing, volume.origin, volume.direction)


def config_for(method: str, steps: int, seed: int, **sections: dict) -> DenoiseConfig:
    training = dict(
        {"budget_seconds": None, "steps_per_epoch": 50, "max_epochs": max(1, steps // 50), "seed": seed}, **sections.pop("training", {})
    )
    return DenoiseConfig.for_method(method, training=training, **sections)


#: The MNI runs' settings beside the step count: axial slices only, to keep prediction short.
SHORT_RUN = {"batch_size": 8, "learning_rate": 0.003, "patch_size": 48}
AXIAL = {"slice_axes": "k"}


def supervised_run(architecture: str, adversarial_weight: float) -> Callable[[dict[str, Volume], int, int], np.ndarray]:
    def run(volumes: dict[str, Volume], steps: int, seed: int) -> np.ndarray:
        config = config_for(
            "supervised",
            steps,
            seed,
            model=dict(AXIAL, architecture=architecture),
            training=dict(SHORT_RUN, adversarial_weight=adversarial_weight),
        )
        model = train_supervised([left(volumes["noisy"])], [left(volumes["clean"])], config)
        return denoise_with_model(volumes["noisy"], model, config).denoised.array

    return run


def noise2noise_run(prediction_input: str) -> Callable[[dict[str, Volume], int, int], np.ndarray]:
    def run(volumes: dict[str, Volume], steps: int, seed: int) -> np.ndarray:
        config = config_for("noise2noise", steps, seed, model=AXIAL, training=SHORT_RUN, prediction={"noise2noise_input": prediction_input})
        return noise2noise_volumes(volumes["noisy"], volumes["second"], config).denoised.array

    return run


def mean_of_draws(volumes: dict[str, Volume], steps: int, seed: int) -> np.ndarray:
    return 0.5 * (volumes["noisy"].array + volumes["second"].array)


def runs(adversarial_weight: float) -> dict[str, Callable[[dict[str, Volume], int, int], np.ndarray]]:
    return {
        "supervised UNet": supervised_run("unet", 0.0),
        f"supervised UNet + adversarial {adversarial_weight:g}": supervised_run("unet", adversarial_weight),
        "supervised DAE": supervised_run("dae", 0.0),
        f"supervised DAE + adversarial {adversarial_weight:g}": supervised_run("dae", adversarial_weight),
        "average of the two draws (no learning)": mean_of_draws,
        "Noise2Noise, two draws, predict each and average": noise2noise_run("each"),
        "Noise2Noise, two draws, predict from their mean": noise2noise_run("mean"),
    }


def score_rows(
    shared: Path, levels: list[str], steps: int, seed: int, second_seed: int, adversarial_weight: float, only: Optional[list[str]]
) -> list[dict[str, Any]]:
    clean = read_volume(shared / "mni152_t1_128_clean.nii.gz")
    mask = read_volume(shared / "mni152_t1_128_mask.nii.gz").array > 0
    scored = mask.copy()
    scored[:, :, :MIDLINE] = False  # the right hemisphere only
    rows = []
    for level in levels:
        noisy = read_volume(shared / f"mni152_t1_128_rician{level}.nii.gz")
        second = noisy.with_array(add_rician_noise(clean.array, int(level) / 100.0, second_seed))
        volumes = {"clean": clean, "noisy": noisy, "second": second}
        outputs: list[tuple[str, np.ndarray, float]] = [("noisy input", noisy.array, 0.0)]
        for name, run in runs(adversarial_weight).items():
            if only and not any(word.lower() in name.lower() for word in only):
                continue
            start = time.perf_counter()
            output = run(volumes, steps, seed)
            outputs.append((name, output, time.perf_counter() - start))
        for name, output, seconds in outputs:
            row = dict(
                level=level,
                method=name,
                psnr=psnr(clean.array, output, data_range=1.0, mask=scored),
                ssim=ssim(clean.array, output, data_range=1.0, mask=scored),
                sharpness=edge_sharpness(clean.array, output, scored),
                seconds=seconds,
            )
            rows.append(row)
            print(
                f"[{level}] {name}: {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f}, sharpness {row['sharpness']:.2f}, {seconds:.0f} s",
                flush=True,
            )
    return rows


def fmri_rows(step_counts: list[int]) -> list[dict[str, Any]]:
    if str(REPO_ROOT) not in sys.path:  # the synthetic series of the tests: Testing/support/fmri_phantom.py
        sys.path.insert(0, str(REPO_ROOT))
    from Testing.support.fmri_phantom import activation_amplitude, block_design_series, design_correlation, temporal_snr

    data = block_design_series(frames=40, size=24, change=0.04, sigma=0.03, seed=0)
    brain = data.brain[None]

    def describe(name: str, series: np.ndarray, seconds: float) -> dict[str, Any]:
        return dict(
            series=name,
            correlation=design_correlation(series, data),
            tsnr=temporal_snr(series, data),
            amplitude=activation_amplitude(series, data) / activation_amplitude(data.clean, data),
            rmse=float(np.sqrt(np.mean(((series - data.clean) ** 2)[np.broadcast_to(brain, series.shape)]))),
            seconds=seconds,
        )

    rows = [describe("noisy series", data.noisy, 0.0)]
    for steps in step_counts:
        config = config_for(
            "noise2noise",
            steps,
            0,
            model={"depth": 2, "base_channels": 8, "context_slices": 1},
            training={"patch_size": 16, "batch_size": 8, "learning_rate": 0.003},
            noise={"model": "gaussian"},
        )
        start = time.perf_counter()
        denoised = noise2noise_series(Volume(data.noisy), config).denoised.array
        rows.append(describe(f"Noise2Noise, neighbouring frames, {steps} steps", denoised, time.perf_counter() - start))
        print(rows[-1], flush=True)
    return rows


def print_tables(rows: list[dict[str, Any]], levels: list[str], fmri: list[dict[str, Any]]) -> None:
    names = list(dict.fromkeys(r["method"] for r in rows))
    header = "| method | " + " | ".join(f"Rician {int(level)} %: PSNR dB / SSIM / sharpness / time" for level in levels) + " |"
    print("\n" + header)
    print("|" + "---|" * (len(levels) + 1))
    for name in names:
        cells = []
        for level in levels:
            match = [r for r in rows if r["method"] == name and r["level"] == level]
            if not match:
                cells.append("—")
                continue
            r = match[0]
            time_text = "—" if r["seconds"] < 0.5 else f"{r['seconds']:.0f} s"
            cells.append(f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['sharpness']:.2f} / {time_text}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if fmri:
        print(
            "\n| synthetic fMRI series (40 x 24³, 4 % block activation) | design correlation | temporal SNR | activation kept | RMSE in brain | time |"
        )
        print("|---|---|---|---|---|---|")
        for r in fmri:
            time_text = "—" if r["seconds"] < 0.5 else f"{r['seconds']:.0f} s"
            print(
                f"| {r['series']} | {r['correlation']:.3f} | {r['tsnr']:.1f} | {100 * r['amplitude']:.0f} % | {r['rmse']:.4f} | {time_text} |"
            )


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--levels", nargs="+", default=["05", "10"], help="Rician levels (05, 10)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of every learned method")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--second-seed", type=int, default=2024, help="seed of the second noise draw for Noise2Noise")
    parser.add_argument("--fmri-steps", type=int, nargs="*", default=[400, 1200], help="Noise2Noise steps on the fMRI series (none: skip)")
    parser.add_argument("--adversarial-weight", type=float, default=0.1, help="weight of the adversarial rows")
    parser.add_argument("--only", nargs="*", help="run only methods whose name contains one of these words")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = score_rows(args.shared, args.levels, args.steps, args.seed, args.second_seed, args.adversarial_weight, args.only)
    fmri = fmri_rows(args.fmri_steps) if args.fmri_steps else []
    print_tables(rows, args.levels, fmri)


if __name__ == "__main__":
    main()

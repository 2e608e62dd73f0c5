"""Benchmark: 4D series with a known truth (series_generator.py), scored in one run for the noisy
input, the library's 4D default (MP-PCA through the whole pipeline, ``denoise_series``), its Wiener
variant, dipy's ``mppca`` (patch radius 2, every patch position), dipy's ``patch2self`` (OLS, every
frame given b-value 1000) and, with ``--network-minutes`` above 0, the previous default (R2R, one
network for all frames, each frame denoised on its own) with that training budget; ``--skip`` leaves
methods out.

Besides the PSNR of the whole series, the PSNR of the changes over time alone (each voxel's time
course minus its temporal mean; series_generator.changes_psnr). Two ceiling rows
(temporal_mean_ceiling): the true changes over time on the noisy series' temporal mean, and on that
mean denoised as a 3D volume by the 3D default (``--mean-seconds`` of training, the true sigma over the
square root of the frame count). A method that keeps each voxel's temporal mean as measured, as local
PCA does, cannot pass the first (with Rician noise only roughly: that mean also carries the Rician
bias, which a method can correct); the second shows what denoising that mean in space adds.

The anatomy is the project's standard volume (the MNI152 T1 in ../shared/data, 1.5 mm) resampled to
3 mm and cropped to the head: 48 x 60 x 51 voxels. Each variant is one call of ``make_series``
(name: signal, noise, sigma, frames). Reported per method: PSNR over the brain (data range 1, tissue
about 0.7), mean time-course correlation with the truth in the three BOLD regions and in the
single-frame event's region, the share of that event's amplitude kept, median tSNR in the brain, and
seconds. Prints a Markdown table and writes the rows as JSON::

    OMP_WAIT_POLICY=PASSIVE python bench/benchmark_series.py --threads 2 --network-minutes 0.5

``--scale`` instead times the 4D default alone on a typical fMRI run's size (the anatomy resampled
to 64 x 64 x 36 voxels, 300 frames, 30 components, Gaussian 0.025), with the process's peak memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib and bench
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from bench.series_generator import (  # noqa: E402
    SyntheticSeries,
    changes_psnr,
    event_kept,
    make_series,
    series_psnr,
    temporal_snr,
    time_course_correlation,
)
from bench.variants import CLEAN_FILE  # noqa: E402
from DeepDenoiseLib.core.volume import Volume  # noqa: E402
from DeepDenoiseLib.core.volume_io import read_volume  # noqa: E402
from DeepDenoiseLib.denoise.config import DenoiseConfig  # noqa: E402
from DeepDenoiseLib.denoise.pipeline import denoise_series, denoise_volume  # noqa: E402

#: name -> make_series arguments.
VARIANTS: dict[str, dict[str, Any]] = {
    "low-rank, Gaussian 0.025, 40 frames": dict(frames=40, sigma=0.025, noise_model="gaussian", components=0, seed=1),
    "30 components, Gaussian 0.025, 40 frames": dict(frames=40, sigma=0.025, noise_model="gaussian", components=30, seed=2),
    "30 components, Rician 0.04, 40 frames": dict(frames=40, sigma=0.04, noise_model="rician", components=30, seed=3),
    "30 components, Gaussian 0.0125, 80 frames": dict(frames=80, sigma=0.0125, noise_model="gaussian", components=30, seed=4),
}


def anatomy(shared: Path) -> np.ndarray:
    """The standard volume at 3 mm, cropped to where it has signal."""
    clean = np.asarray(read_volume(shared / CLEAN_FILE).array, dtype=np.float32)
    coarse = ndimage.zoom(clean, 0.5, order=1)
    box = ndimage.find_objects((coarse > 0.1 * coarse.max()).astype(int))[0]
    return coarse[box]


def _ours(noise_model: str, device: str, threads: int, **series: Any) -> Callable[[np.ndarray], np.ndarray]:
    config = DenoiseConfig.for_method("mppca", noise={"model": noise_model}, training={"device": device, "threads": threads}, series=series)
    return lambda noisy: denoise_series(Volume(noisy), config).denoised.array


def _network(noise_model: str, device: str, threads: int, minutes: float) -> Callable[[np.ndarray], np.ndarray]:
    training = {"device": device, "threads": threads, "budget_seconds": 60.0 * minutes, "seed": 0}
    config = DenoiseConfig.for_method("r2r", noise={"model": noise_model}, training=training)
    return lambda noisy: denoise_series(Volume(noisy), config).denoised.array


def dipy_mppca(noisy: np.ndarray) -> np.ndarray:
    """dipy's ``mppca`` (patch radius 2) of a series ``[t, k, j, i]``, its warnings silenced."""
    from dipy.denoise.localpca import mppca

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.moveaxis(mppca(np.moveaxis(noisy, 0, -1), patch_radius=2), -1, 0)


def _dipy_patch2self(noisy: np.ndarray) -> np.ndarray:
    from dipy.denoise.patch2self import patch2self

    bvals = np.full(noisy.shape[0], 1000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = patch2self(np.moveaxis(noisy, 0, -1), bvals, model="ols", shift_intensity=True, clip_negative_vals=False)
    return np.moveaxis(np.asarray(result, dtype=np.float32), -1, 0)


def score(name: str, result: np.ndarray, truth: SyntheticSeries, seconds: Optional[float]) -> dict[str, Any]:
    return dict(
        method=name,
        psnr=series_psnr(result, truth),
        changes_psnr=changes_psnr(result, truth),
        bold_correlation=time_course_correlation(result, truth, truth.bold_regions),
        event_correlation=time_course_correlation(result, truth, truth.event_region),
        event_kept=event_kept(result, truth),
        tsnr=temporal_snr(result, truth.brain),
        seconds=seconds,
    )


def temporal_mean_ceiling(truth: SyntheticSeries, mean: Optional[np.ndarray] = None) -> np.ndarray:
    """The true changes over time on the noisy series' temporal mean (or on ``mean``, that mean
    denoised): what a method reaches that recovers every change exactly but keeps each voxel's mean
    over time as the frames measured it (noise sigma / sqrt(frames)). Local PCA is such a method: each
    voxel's loading on the components it keeps is its own, with no spatial prior."""
    return truth.clean - truth.clean.mean(axis=0) + (truth.noisy.mean(axis=0) if mean is None else mean)


def _denoised_mean(truth: SyntheticSeries, args: argparse.Namespace) -> np.ndarray:
    """The noisy temporal mean denoised as a volume by the 3D default (R2R), given its true sigma."""
    sigma = truth.sigma / np.sqrt(truth.noisy.shape[0])
    training = {"device": args.device, "threads": args.threads, "budget_seconds": args.mean_seconds, "seed": 0}
    config = DenoiseConfig.for_method("r2r", noise={"model": "gaussian", "sigma": float(sigma)}, training=training)
    return denoise_volume(Volume(truth.noisy.mean(axis=0)), config).denoised.array


def run_variant(name: str, spec: dict[str, Any], anatomy_array: np.ndarray, args: argparse.Namespace) -> list[dict[str, Any]]:
    truth = make_series(anatomy_array, **spec)
    noise_model = spec["noise_model"]
    methods: list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = [
        ("default", "MP-PCA, the 4D default (stride 2)", _ours(noise_model, args.device, args.threads)),
        ("wiener", "MP-PCA + Wiener pass (stride 2)", _ours(noise_model, args.device, args.threads, wiener=True)),
        ("stride1", "MP-PCA (stride 1)", _ours(noise_model, args.device, args.threads, patch_stride=1)),
        ("dipy-mppca", "dipy mppca (radius 2)", dipy_mppca),
    ]
    if importlib.util.find_spec("sklearn") is not None:  # dipy's patch2self fits with scikit-learn
        methods.append(("patch2self", "dipy patch2self (OLS)", _dipy_patch2self))
    else:
        print("dipy patch2self left out: it needs scikit-learn (pip install '.[bench]')", flush=True)
    if args.network_minutes > 0:
        network = _network(noise_model, args.device, args.threads, args.network_minutes)
        methods.append(("network", f"R2R per frame ({args.network_minutes:g} min)", network))
    rows = [dict(variant=name, **score("noisy input", truth.noisy, truth, None))]
    ceiling = "ceiling: the true changes on the noisy temporal mean"
    rows.append(dict(variant=name, **score(ceiling, temporal_mean_ceiling(truth), truth, None)))
    if args.mean_seconds > 0:
        start = time.perf_counter()
        mean = _denoised_mean(truth, args)
        label = f"ceiling: the true changes on the temporal mean denoised in 3D (R2R, {args.mean_seconds:g} s, true sigma)"
        rows.append(dict(variant=name, **score(label, temporal_mean_ceiling(truth, mean), truth, time.perf_counter() - start)))
    for key, method, run in methods:
        if args.skip and key in args.skip:
            continue
        start = time.perf_counter()
        result = run(truth.noisy.copy())
        rows.append(dict(variant=name, **score(method, result, truth, time.perf_counter() - start)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run_scale(anatomy_array: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    target = (36, 64, 64)
    resized = ndimage.zoom(anatomy_array, [t / n for t, n in zip(target, anatomy_array.shape)], order=1)
    truth = make_series(resized, frames=300, sigma=0.025, components=30, seed=5)
    start = time.perf_counter()
    result = _ours("gaussian", args.device, args.threads)(truth.noisy)
    row = dict(
        variant=f"scale: {'x'.join(map(str, resized.shape[::-1]))}, 300 frames",
        **score("MP-PCA, the 4D default (stride 2)", result, truth, time.perf_counter() - start),
    )
    row["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["noisy_psnr"] = series_psnr(truth.noisy, truth)
    print(json.dumps(row), flush=True)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    variant = None
    for row in rows:
        if row["variant"] != variant:
            variant = row["variant"]
            print(f"\n**{variant}**\n")
            print("| method | PSNR (dB) | changes' PSNR (dB) | BOLD time-course r | event time-course r | event kept | tSNR | seconds |")
            print("|---|---|---|---|---|---|---|---|")
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        changes = "exact" if row["changes_psnr"] is None else f"{row['changes_psnr']:.2f}"
        print(
            f"| {row['method']} | {row['psnr']:.2f} | {changes} | {row['bold_correlation']:.3f} | {row['event_correlation']:.3f} | "
            f"{row['event_kept']:.2f} | {row['tsnr']:.1f} | {seconds} |"
        )


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="auto, cuda, mps or cpu (the library's methods)")
    parser.add_argument("--network-minutes", type=float, default=0.0, help="also run the per-frame R2R network with this budget (0: skip)")
    parser.add_argument("--variants", nargs="*", type=int, help="indices of the variants to run (default: all)")
    parser.add_argument("--mean-seconds", type=float, default=30.0, help="the ceiling with a denoised temporal mean: its budget (0: skip)")
    parser.add_argument(
        "--skip", nargs="*", choices=["default", "wiener", "stride1", "dipy-mppca", "patch2self", "network"], help="methods to leave out"
    )
    parser.add_argument("--scale", action="store_true", help="time the 4D default on a 64x64x36 series of 300 frames instead")
    parser.add_argument("--json", type=Path, default=Path("bench/results/series.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    anatomy_array = anatomy(args.shared)
    print(f"anatomy {anatomy_array.shape}", flush=True)
    if args.scale:
        row = run_scale(anatomy_array, args)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.with_name("series_scale.json").write_text(json.dumps(row, indent=2))
        return
    chosen = [item for index, item in enumerate(VARIANTS.items()) if args.variants is None or index in args.variants]
    rows = [row for name, spec in chosen for row in run_variant(name, spec, anatomy_array, args)]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print_table(rows)


if __name__ == "__main__":
    main()

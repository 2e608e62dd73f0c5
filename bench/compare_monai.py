"""Benchmark: DeepDenoise's hand-written parts against MONAI's, on the same inputs in the same run.

Four comparisons (issue 13, "the field's own libraries where they already do what is hand-written"):

* **tiling**: :func:`DeepDenoiseLib.core.tiling.predict_tiled` (what 3D denoising and super-resolution
  sampling use) against ``monai.inferers.sliding_window_inference`` in its ``gaussian`` and ``constant``
  modes, with the same 3D UNet (random weights, eval mode), tile and overlap; each against the
  whole-volume prediction (no tiles), which a perfect blend would reproduce: max and RMS difference
  (the seams), and wall time.
* **diffusion**: the cosine schedule (:mod:`DeepDenoiseLib.superres.diffusion_schedule`) against
  ``monai.networks.schedulers`` (``schedule="cosine"``): betas and alpha_bar, where they differ; the
  respaced step sequences; one DDIM and one DDPM step from the same model output, sample and noise;
  a whole 50-step DDIM chain with the same starting noise and the same (analytic) model; time per step.
* **metrics**: masked PSNR and 3D SSIM (:mod:`DeepDenoiseLib.core.metrics`, the project's benchmark
  definition: data range 1, uniform 7-voxel window, mean over the brain mask) against
  ``monai.metrics.PSNRMetric`` / ``SSIMMetric`` (and scikit-image's ``structural_similarity``, which the
  definition names, when installed); whether MONAI can restrict them to a mask; time.
* **unet**: parameter count and forward+backward time of our 3D UNet against ``monai.networks.nets.UNet``
  at the same widths and depth.

Needs MONAI (``pip install monai``), which the library itself does not. Reads the project's standard
volume from ``--shared`` (``../shared/data``) when it is there, and uses a synthetic phantom otherwise.
Torch runs on one CPU thread. Prints a Markdown table and writes bench/results/monai.json::

    python bench/compare_monai.py
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from DeepDenoiseLib.core import metrics  # noqa: E402
from DeepDenoiseLib.core.noise_simulation import add_rician_noise  # noqa: E402
from DeepDenoiseLib.core.tiling import predict_tiled  # noqa: E402
from DeepDenoiseLib.nets.unet import UNet  # noqa: E402
from DeepDenoiseLib.superres.diffusion_sampler import ddim_step, ddpm_step, sample, split_prediction  # noqa: E402
from DeepDenoiseLib.superres.diffusion_schedule import cosine_schedule  # noqa: E402

Row = dict[str, Any]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 128, 96], help="the tiled volume's shape [k j i]")
    parser.add_argument("--tile", type=int, default=64, help="tile edge in voxels")
    parser.add_argument("--overlaps", type=int, nargs="+", default=[16, 32], help="tile overlaps in voxels")
    parser.add_argument("--width", type=int, default=16, help="the UNet's base channels")
    parser.add_argument("--depth", type=int, default=2, help="the UNet's pooling levels")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (the fastest counts)")
    parser.add_argument("--timesteps", type=int, default=1000, help="diffusion training steps")
    parser.add_argument("--sampling-steps", type=int, default=50, help="DDIM steps of the chain comparison")
    parser.add_argument("--unet-patch", type=int, default=64, help="patch edge for the UNet timing (0: skip the UNet part)")
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=Path("bench/results/monai.json"))
    return parser.parse_args(argv)


def best_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of ``repeats`` wall times of ``function()``, and its last result."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def load_volumes(shared: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(clean, noisy, mask), float32/float32/bool: the shared MNI152 volume with its 5 % Rician
    variant and brain mask, or a synthetic phantom of ``shape`` with 5 % Rician noise."""
    names = ("mni152_t1_128_clean.nii.gz", "mni152_t1_128_rician05.nii.gz", "mni152_t1_128_mask.nii.gz")
    if all((shared / name).is_file() for name in names):
        from DeepDenoiseLib.core.volume_io import read_volume

        clean, noisy, mask = (read_volume(shared / name).array for name in names)
        return clean.astype(np.float32), noisy.astype(np.float32), mask > 0, "MNI152 128^3, Rician 5 %, brain mask"
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    radius = np.sqrt(k**2 + j**2 + i**2)
    clean = (np.clip(1.1 - radius, 0, 1) * (0.7 + 0.3 * np.cos(6 * k) * np.sin(5 * j))).astype(np.float32)
    noisy = add_rician_noise(clean, 0.05, 1234).astype(np.float32)
    return clean, noisy, radius < 0.8, f"synthetic phantom {shape}, Rician 5 %, ball mask"


def centre_crop(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The centre ``shape`` block of ``array``, padded by reflection where ``array`` is smaller."""
    pad = [(max(0, (s - n + 1) // 2), max(0, (s - n) // 2)) for n, s in zip(array.shape, shape)]
    array = np.pad(array, pad, mode="reflect")
    starts = [(n - s) // 2 for n, s in zip(array.shape, shape)]
    return np.ascontiguousarray(array[tuple(slice(a, a + s) for a, s in zip(starts, shape))])


def compare_tiling(args: argparse.Namespace, volume: np.ndarray) -> list[Row]:
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    network = UNet(3, 1, 1, args.depth, args.width, "batch").eval()

    @torch.no_grad()
    def run_tensor(batch: torch.Tensor) -> torch.Tensor:
        return network(batch)

    def run_numpy(tiles: np.ndarray) -> np.ndarray:
        return run_tensor(torch.from_numpy(np.ascontiguousarray(tiles[:, None], dtype=np.float32)))[:, 0].numpy()

    tensor = torch.from_numpy(volume)[None, None]
    whole_seconds, whole = best_time(lambda: run_tensor(tensor)[0, 0].numpy(), args.repeats)
    scale = float(np.std(whole))
    rows: list[Row] = [
        {"part": "tiling", "method": "whole volume (reference)", "overlap": "-", "max_diff": 0.0, "rms_diff": 0.0, "seconds": whole_seconds}
    ]
    tile = (args.tile,) * 3
    for overlap in args.overlaps:
        candidates: dict[str, Callable[[], np.ndarray]] = {
            "DeepDenoise predict_tiled (raised cosine)": lambda overlap=overlap: predict_tiled(volume, run_numpy, tile, overlap),
        }
        for mode in ("gaussian", "constant"):
            candidates[f"MONAI sliding_window_inference ({mode})"] = lambda mode=mode, overlap=overlap: sliding_window_inference(
                tensor, tile, 1, run_tensor, overlap=overlap / args.tile, mode=mode
            )[0, 0].numpy()
        for name, function in candidates.items():
            seconds, prediction = best_time(function, args.repeats)
            difference = prediction.astype(np.float64) - whole
            rows.append(
                {
                    "part": "tiling",
                    "method": name,
                    "overlap": overlap,
                    "max_diff": float(np.abs(difference).max()),
                    "rms_diff": float(np.sqrt(np.mean(difference**2))),
                    "relative_rms": float(np.sqrt(np.mean(difference**2)) / scale),
                    "seconds": seconds,
                }
            )
    return rows


def _analytic_v_model(
    alpha_bar_of: Callable[[torch.Tensor], torch.Tensor], data_std: float
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The exact v-prediction for data ~ N(0, data_std^2), given ``alpha_bar`` of the time input: a
    model every sampler can share without training one."""

    def predict(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a = alpha_bar_of(timesteps).reshape((-1,) + (1,) * (x.dim() - 1)).to(x.dtype)
        x0 = a.sqrt() * data_std**2 / (a * data_std**2 + 1 - a) * x
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * x0

    return predict


def compare_diffusion(args: argparse.Namespace) -> list[Row]:
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    steps_total = args.timesteps
    ours = cosine_schedule(steps_total)
    monai_ddim = DDIMScheduler(steps_total, schedule="cosine", clip_sample=False, set_alpha_to_one=True, prediction_type="v_prediction")
    monai_ddpm = DDPMScheduler(
        steps_total, schedule="cosine", clip_sample=False, prediction_type="v_prediction", variance_type="fixed_small"
    )
    rows: list[Row] = []

    betas_monai = monai_ddim.betas.double().numpy()
    alpha_bar_monai = monai_ddim.alphas_cumprod.double().numpy()
    beta_diff = np.abs(ours.betas - betas_monai)
    alpha_diff = np.abs(ours.alpha_bar - alpha_bar_monai)
    clipped_ours = np.flatnonzero(ours.betas >= 0.999) + 1
    clipped_monai = np.flatnonzero(betas_monai >= 0.999 - 1e-7) + 1
    rows.append(
        {
            "part": "diffusion",
            "what": "cosine betas (ours float64, MONAI float32)",
            "max_diff": float(beta_diff.max()),
            "where": f"step {int(beta_diff.argmax()) + 1} of {steps_total}",
            "note": f"both clip at 0.999 (steps {clipped_ours.tolist()} / {clipped_monai.tolist()}), both offset s=0.008; "
            "ours floors betas at 1e-8, MONAI at 0",
        }
    )
    relative = alpha_diff / np.maximum(ours.alpha_bar, 1e-300)
    rows.append(
        {
            "part": "diffusion",
            "what": "cosine alpha_bar",
            "max_diff": float(alpha_diff.max()),
            "where": f"step {int(alpha_diff.argmax()) + 1}; largest relative {relative.max():.1e} at step {int(relative.argmax()) + 1}",
            "note": "MONAI timestep t is our step t+1 (its arrays start at 0, ours at step 1)",
        }
    )

    # The respaced sequences: ours, and MONAI's timesteps shifted to our numbering.
    n = args.sampling_steps
    ours_sequence = ours.sampling_steps(n)
    monai_ddim.set_timesteps(n)
    monai_sequence = monai_ddim.timesteps.numpy() + 1
    stride = steps_total // n
    monai_jumps = monai_sequence - stride  # where MONAI's step() actually goes next (our numbering)
    off_sequence = int(np.sum(~np.isin(monai_jumps[:-1], monai_sequence)))
    rows.append(
        {
            "part": "diffusion",
            "what": f"{n}-step respacing",
            "max_diff": float(np.abs(ours_sequence - monai_sequence).max()) if ours_sequence.size == monai_sequence.size else float("nan"),
            "where": f"ours {ours_sequence[:3].tolist()}...{ours_sequence[-2:].tolist()}, MONAI {monai_sequence[:3].tolist()}...{monai_sequence[-2:].tolist()}",
            "note": f"MONAI's step() goes from t to t - {stride} (T // n), which in {off_sequence} of {n - 1} steps is not the next "
            "timestep of its own sequence; ours goes to the next one",
        }
    )

    # One step from the same x_t, model output and noise, with the alpha_bar pair MONAI uses.
    generator = torch.Generator().manual_seed(0)
    shape = (1, 1, 64, 64, 64)
    x_t = torch.randn(shape, generator=generator)
    output = torch.randn(shape, generator=generator)
    timestep = int(monai_ddim.timesteps[1])
    current = float(ours.alpha_bar[timestep])  # MONAI timestep t = our step t + 1
    previous = float(ours.alpha_bar[timestep - stride])
    for eta in (0.0, 1.0):

        def ours_step(eta: float = eta) -> torch.Tensor:
            x0, eps = split_prediction(x_t, output, current, "v")
            return ddim_step(x0, eps, current, previous, eta, 1.0, torch.Generator().manual_seed(1))

        def monai_step(eta: float = eta) -> torch.Tensor:
            return monai_ddim.step(output, timestep, x_t, eta=eta, generator=torch.Generator().manual_seed(1))[0]

        ours_seconds, ours_result = best_time(ours_step, 5 * args.repeats)
        monai_seconds, monai_result = best_time(monai_step, 5 * args.repeats)
        rows.append(
            {
                "part": "diffusion",
                "what": f"one DDIM step, eta {eta:g}, v-prediction, 64^3",
                "max_diff": float((ours_result - monai_result).abs().max()),
                "where": f"timestep {timestep + 1}",
                "note": f"ours {ours_seconds * 1e3:.1f} ms, MONAI {monai_seconds * 1e3:.1f} ms per step",
                "ours_ms": ours_seconds * 1e3,
                "monai_ms": monai_seconds * 1e3,
            }
        )

    # MONAI's DDPM step() always goes from t to t - 1, respaced or not: compare on that pair.
    monai_ddpm.set_timesteps(n)
    ddpm_t = int(monai_ddpm.timesteps[1])
    ddpm_previous_index = ddpm_t - 1

    def ours_ddpm() -> torch.Tensor:
        a, a_prev = float(ours.alpha_bar[ddpm_t]), float(ours.alpha_bar[ddpm_previous_index])
        x0, _ = split_prediction(x_t, output, a, "v")
        return ddpm_step(x_t, x0, a, a_prev, 1.0, torch.Generator().manual_seed(1))

    def monai_ddpm_step() -> torch.Tensor:
        return monai_ddpm.step(output, ddpm_t, x_t, generator=torch.Generator().manual_seed(1))[0]

    ours_seconds, ours_result = best_time(ours_ddpm, 5 * args.repeats)
    monai_seconds, monai_result = best_time(monai_ddpm_step, 5 * args.repeats)
    rows.append(
        {
            "part": "diffusion",
            "what": "one DDPM step, v-prediction, 64^3",
            "max_diff": float((ours_result - monai_result).abs().max()),
            "where": f"timestep {ddpm_t + 1}",
            "note": f"ours {ours_seconds * 1e3:.1f} ms, MONAI {monai_seconds * 1e3:.1f} ms per step; MONAI's DDPM step() uses the "
            "one-step posterior t -> t - 1 even when set_timesteps(n) respaced the chain, ours the respaced chain's",
            "ours_ms": ours_seconds * 1e3,
            "monai_ms": monai_seconds * 1e3,
        }
    )

    # A whole deterministic chain with one analytic model (data ~ N(0, 0.5^2)), same starting noise.
    alpha_bar_table = torch.as_tensor(ours.alpha_bar)
    ours_model = _analytic_v_model(lambda t: alpha_bar_table[t.long() - 1], 0.5)
    monai_model = _analytic_v_model(lambda t: alpha_bar_table[t.long()], 0.5)
    chain_shape = (1, 1, 32, 32, 32)

    def ours_chain() -> torch.Tensor:
        return sample(ours_model, chain_shape, ours, n, "ddim", "v", 0.0, torch.Generator().manual_seed(2))

    def monai_chain() -> torch.Tensor:
        x = torch.randn(chain_shape, generator=torch.Generator().manual_seed(2))
        for t in monai_ddim.timesteps:
            x = monai_ddim.step(monai_model(x, t.reshape(1)), int(t), x)[0]
        return x

    ours_seconds, ours_result = best_time(ours_chain, args.repeats)
    monai_seconds, monai_result = best_time(monai_chain, args.repeats)
    rows.append(
        {
            "part": "diffusion",
            "what": f"{n}-step DDIM chain, analytic model, 32^3",
            "max_diff": float((ours_result - monai_result).abs().max()),
            "where": f"output std ours {float(ours_result.std()):.4f}, MONAI {float(monai_result.std()):.4f} (exact 0.5)",
            "note": f"ours {ours_seconds:.3f} s, MONAI {monai_seconds:.3f} s",
        }
    )
    return rows


def compare_metrics(args: argparse.Namespace, clean: np.ndarray, noisy: np.ndarray, mask: np.ndarray) -> list[Row]:
    from monai.metrics import PSNRMetric, SSIMMetric
    from monai.metrics.regression import compute_ssim_and_cs

    rows: list[Row] = []
    reference, test = torch.from_numpy(clean)[None, None], torch.from_numpy(noisy)[None, None]
    inside = torch.from_numpy(mask)

    def row(what: str, ours: tuple[float, float], monai: tuple[float, float], note: str, other: str = "MONAI") -> None:
        rows.append(
            {
                "part": "metrics",
                "what": what,
                "ours": ours[0],
                "monai": monai[0],
                "max_diff": abs(ours[0] - monai[0]),
                "note": f"{note}; ours {ours[1] * 1e3:.0f} ms, {other} {monai[1] * 1e3:.0f} ms",
                "ours_ms": ours[1] * 1e3,
                "monai_ms": monai[1] * 1e3,
            }
        )

    def timed(function: Callable[[], Any]) -> tuple[float, float]:
        seconds, value = best_time(function, args.repeats)
        return float(value), seconds

    row(
        "PSNR, whole volume",
        timed(lambda: metrics.psnr(clean, noisy, 1.0)),
        timed(lambda: PSNRMetric(1.0)(test, reference).item()),
        "MONAI computes in float32",
    )
    row(
        "PSNR, brain mask",
        timed(lambda: metrics.psnr(clean, noisy, 1.0, mask)),
        timed(lambda: PSNRMetric(1.0)(test[:, :, inside], reference[:, :, inside]).item()),
        "MONAI has no mask argument: the masked voxels are passed as a 1D image",
    )
    ssim_whole = timed(lambda: metrics.ssim(clean, noisy, 1.0))
    row(
        "SSIM 3D, uniform 7, whole volume",
        ssim_whole,
        timed(lambda: SSIMMetric(3, 1.0, "uniform", 7)(test, reference).item()),
        "MONAI: population covariances, no border padding (mean over the valid region)",
    )

    def monai_masked_ssim() -> float:
        local, _ = compute_ssim_and_cs(test, reference, 3, (7, 7, 7), (1.5, 1.5, 1.5), 1.0, "uniform")
        cropped = inside[3:-3, 3:-3, 3:-3]
        return float(local[0, 0][cropped].mean())

    row(
        "SSIM 3D, uniform 7, brain mask",
        timed(lambda: metrics.ssim(clean, noisy, 1.0, mask)),
        timed(monai_masked_ssim),
        "MONAI has no mask: its SSIM map (3 voxels smaller per side) averaged over the cropped mask",
    )
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return rows

    def skimage_masked() -> float:
        _, local = structural_similarity(clean.astype(np.float64), noisy.astype(np.float64), win_size=7, data_range=1.0, full=True)
        return float(local[mask].mean())

    row(
        "SSIM 3D, brain mask: ours vs scikit-image (the definition)",
        timed(lambda: metrics.ssim(clean, noisy, 1.0, mask)),
        timed(skimage_masked),
        "the other value is scikit-image's here, not MONAI's",
        "scikit-image",
    )
    return rows


def compare_unet(args: argparse.Namespace) -> list[Row]:
    """Our UNet against MONAI's two: ``UNet`` at the same widths and depth (a different design:
    strided-convolution downsampling and one convolution per level), and ``BasicUNet`` (two
    convolutions per level, max pooling, like ours, but always 4 levels) against ours at depth 4."""
    from monai.networks.nets import BasicUNet
    from monai.networks.nets import UNet as MonaiUNet

    widths = tuple(args.width * 2**level for level in range(args.depth + 1))
    deep = tuple(args.width * 2**level for level in range(5))
    networks = {
        f"DeepDenoise UNet (depth {args.depth}, base {args.width})": UNet(3, 1, 1, args.depth, args.width, "batch"),
        f"MONAI UNet (channels {widths}, strides 2, num_res_units 0)": MonaiUNet(
            3, 1, 1, widths, (2,) * args.depth, num_res_units=0, norm="batch"
        ),
        f"MONAI UNet (channels {widths}, strides 2, num_res_units 2)": MonaiUNet(
            3, 1, 1, widths, (2,) * args.depth, num_res_units=2, norm="batch"
        ),
        f"DeepDenoise UNet (depth 4, base {args.width})": UNet(3, 1, 1, 4, args.width, "batch"),
        f"MONAI BasicUNet (features {deep + (args.width,)})": BasicUNet(3, 1, 1, deep + (args.width,), norm="batch"),
    }
    patch = torch.randn(2, 1, *(args.unet_patch,) * 3, generator=torch.Generator().manual_seed(3))
    rows: list[Row] = []
    for name, network in networks.items():
        network.train()

        def step(network: torch.nn.Module = network) -> float:
            network.zero_grad()
            loss = network(patch).square().mean()
            loss.backward()
            return float(loss.detach())

        seconds, _ = best_time(step, args.repeats)
        rows.append(
            {
                "part": "unet",
                "what": name,
                "parameters": sum(p.numel() for p in network.parameters()),
                "seconds": seconds,
                "note": f"forward + backward, batch 2 x {args.unet_patch}^3, batch norm",
            }
        )
    return rows


def markdown(rows: list[Row]) -> str:
    lines = []
    tiling = [r for r in rows if r["part"] == "tiling"]
    if tiling:
        lines += [
            "| tiling | overlap | max diff | RMS diff (/ output std) | time |",
            "|---|---|---|---|---|",
        ]
        for r in tiling:
            relative = f" ({r['relative_rms']:.1e})" if "relative_rms" in r else ""
            lines.append(f"| {r['method']} | {r['overlap']} | {r['max_diff']:.2e} | {r['rms_diff']:.2e}{relative} | {r['seconds']:.2f} s |")
        lines.append("")
    others = [r for r in rows if r["part"] in ("diffusion", "metrics")]
    if others:
        lines += ["| part | compared | max diff | where / values | note |", "|---|---|---|---|---|"]
        for r in others:
            where = r.get("where") or f"ours {r['ours']:.4f}, other {r['monai']:.4f}"
            lines.append(f"| {r['part']} | {r['what']} | {r['max_diff']:.1e} | {where} | {r['note']} |")
        lines.append("")
    unet = [r for r in rows if r["part"] == "unet"]
    if unet:
        lines += ["| network (batch norm) | parameters | forward + backward, batch 2 |", "|---|---|---|"]
        lines += [f"| {r['what']} | {r['parameters']:,} | {r['seconds']:.2f} s |" for r in unet]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> list[Row]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    import monai

    load_before = os.getloadavg()
    clean, noisy, mask, data = load_volumes(args.shared, tuple(args.shape))
    started = time.perf_counter()
    rows = compare_tiling(args, centre_crop(noisy, tuple(args.shape)))
    rows += compare_diffusion(args)
    rows += compare_metrics(args, clean, noisy, mask)
    if args.unet_patch:
        rows += compare_unet(args)
    record = {
        "command": " ".join(["python", "bench/compare_monai.py", *(argv if argv is not None else sys.argv[1:])]),
        "data": data,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} (1 thread), MONAI {monai.__version__}",
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(markdown(rows))
    print(f"\n{record['machine']}; data: {data}; load {load_before[0]:.2f} -> {record['load_after'][0]:.2f}; {record['seconds']:.0f} s")
    return rows


if __name__ == "__main__":
    main()

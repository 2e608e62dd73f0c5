"""Benchmark: DeepDenoise side by side with the denoisers users would pick instead, on the shared MNI152 volume.

One run scores every method on the same noisy variants (variants.py): the shared Rician volumes at 5 %
and 10 %, Gaussian noise at 7 % and Poisson noise at 60 photons peak, both generated with fixed seeds.
Methods: Slicer's anisotropic diffusion, scikit-image and dipy non-local means, BM4D with an estimated
and with the true noise level (baselines.py), CAREamics' 3D Noise2Void in its own environment
(careamics_baseline.py) and DeepDenoise's methods with the noise model of each variant.

Scores follow ../shared/README.md: PSNR (data range 1) and 3D SSIM (win 7, no Gaussian weights)
inside the brain mask, outputs unclipped; wall time is the denoising call alone (no file I/O; for
CAREamics, training and prediction as its runner measures them), on the same machine in the same run.
The default method runs ``--repeats`` times with different seeds and the table quotes medians; the
other learned methods run ``--repeats-baselines`` times. Prints a Markdown table, one column per
variant, and writes every run to ``--json`` (rewritten after each method, so a stopped run keeps what
it finished). ``--only``/``--skip`` take words of a method's name or its key: slicer-cad, skimage-nlm,
dipy-nlm, dipy-nlm-b2, bm4d-est, bm4d-true, careamics-n2v3d, ours-n2v2d, ours-n2v3d, ours-blindspot,
ours-default (pretrained R2R). ``--device`` picks where DeepDenoise's methods run (auto: a GPU if any)::

    python bench/benchmark_denoise.py --shared ../shared/data --repeats 3
    python bench/benchmark_denoise.py --crop 48 --budget-seconds 5 --careamics-budget-seconds 15 --repeats 1
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
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import baselines  # noqa: E402
from bench.careamics_baseline import (  # noqa: E402
    DEFAULT_VENV,
    CareamicsSettings,
    CareamicsUnavailable,
    ensure_careamics_env,
    run_careamics_n2v,
)
from bench.variants import (  # noqa: E402
    HELD_OUT_VARIANTS,
    TUNING_VARIANTS,
    VARIANTS,
    SharedDataMissing,
    Variant,
    centre_block,
    centre_crop,
    load_bench_data,
    make_noisy,
    poisson_gain,
    variant_truth,
)
from DeepDenoiseLib.core.metrics import psnr, ssim  # noqa: E402
from DeepDenoiseLib.core.settings import deep_merge  # noqa: E402
from DeepDenoiseLib.core.volume import Volume  # noqa: E402
from DeepDenoiseLib.denoise.config import DenoiseConfig  # noqa: E402
from DeepDenoiseLib.denoise.pipeline import denoise_volume  # noqa: E402

DEFAULT_KEY = "ours-default"
REFERENCE_KEY = "bm4d-true"
#: The classical filters a user runs without knowing the noise level (issue 12's CPU target).
CLASSICAL_ESTIMATED_KEYS = ("dipy-nlm-b2", "bm4d-est")
# Import name -> what to pip install.
PACKAGES = {"skimage": "scikit-image", "dipy": "dipy", "bm4d": "bm4d"}


@dataclass
class Outcome:
    """One denoising run: the result, its wall time in seconds, and a note of the parameters it used."""

    array: np.ndarray
    seconds: float
    note: str = ""


class MethodSkipped(Exception):
    """The method cannot run on this variant here (a missing package or environment, an unsupported
    noise model); the message says why, and the table lists it under the rows."""


@dataclass
class MethodSpec:
    """A row of the table. ``kind``: ``default`` (repeats ``--repeats`` times), ``learned`` (repeats
    ``--repeats-baselines`` times) or ``fixed`` (deterministic: once)."""

    key: str
    name: str
    run: Callable[[Volume, Variant, int], Outcome]
    kind: str = "fixed"
    requires: tuple[str, ...] = ()

    def missing_packages(self) -> Optional[str]:
        missing = [PACKAGES[name] for name in self.requires if importlib.util.find_spec(name) is None]
        if not missing:
            return None
        return f"{', '.join(missing)} not installed (pip install '.[bench]')"


def timed(denoiser: Callable[..., baselines.Denoised], **options: Any) -> Callable[[Volume, Variant, int], Outcome]:
    """A classical denoiser as a method: timed around the call alone; the seed is unused (deterministic)."""

    def run(noisy: Volume, variant: Variant, seed: int) -> Outcome:
        start = time.perf_counter()
        array, note = denoiser(noisy, variant, **options)
        return Outcome(array, time.perf_counter() - start, note)

    return run


def deepdenoise(method: str, overrides: dict[str, Any]) -> Callable[[Volume, Variant, int], Outcome]:
    """A DeepDenoise method with ``overrides``, the seed, and the noise model of the variant."""

    def run(noisy: Volume, variant: Variant, seed: int) -> Outcome:
        settings = deep_merge(overrides, {"training": {"seed": seed}, "noise": {"model": variant.model}})
        try:
            config = DenoiseConfig.for_method(method, **settings)
        except ValueError as error:
            raise MethodSkipped(f"this DeepDenoiseLib refuses the settings: {error}") from error
        start = time.perf_counter()
        result = denoise_volume(noisy, config)
        seconds = time.perf_counter() - start
        summary = result.summary
        sigma = summary.get("noise_sigma_before", float("nan"))
        correlation = summary.get("noise_parameters", {}).get("neighbour_correlation_kji")
        alike = ""
        if correlation:  # the finest-scale sigma reads correlated noise low: say what the run took
            taken = summary["noise_sigma_fused"]
            alike = f" (correlated: taken as {taken:.4f}, neighbour correlation {', '.join(f'{value:.2f}' for value in correlation)} along k, j, i)"
        precision = f" in {summary['training_precision']}" if summary.get("training_precision") else ""
        note = f"{summary.get('training_steps')} steps{precision}, noise sigma {sigma:.4f}{alike}"
        return Outcome(result.denoised.array, seconds, note)

    return run


class Careamics:
    """CAREamics' N2V 3D; its environment is made (or found broken) once, on first use."""

    def __init__(self, settings: CareamicsSettings, venv: Path) -> None:
        self.settings = settings
        self.venv = venv
        self.python: Optional[Path] = None
        self.unavailable: Optional[str] = None

    def __call__(self, noisy: Volume, variant: Variant, seed: int) -> Outcome:
        if self.unavailable is None and self.python is None:
            try:
                self.python = ensure_careamics_env(self.venv, log=log)
            except CareamicsUnavailable as error:
                self.unavailable = str(error)
        if self.unavailable is not None:
            raise MethodSkipped(self.unavailable)
        array, seconds, note = run_careamics_n2v(noisy.array, self.settings, seed, self.python)
        return Outcome(array, seconds, note)


def methods(args: argparse.Namespace, clean: np.ndarray) -> list[MethodSpec]:
    """Every row of the table, in order; ``clean`` (the full clean volume) gives BM4D the true Poisson gain."""
    budget = args.budget_seconds
    training = {"budget_seconds": budget, "device": args.device}
    careamics = CareamicsSettings(args.careamics_budget_seconds, threads=args.threads)

    def true_gain(variant: Variant) -> float:
        return poisson_gain(variant, clean) if variant.is_poisson else 1.0

    def bm4d_true(noisy: Volume, variant: Variant, seed: int) -> Outcome:
        return timed(baselines.bm4d_true_sigma, true_gain=true_gain(variant))(noisy, variant, seed)

    return [
        MethodSpec("slicer-cad", "Slicer CurvatureAnisotropicDiffusion, defaults", timed(baselines.slicer_anisotropic_diffusion)),
        MethodSpec("skimage-nlm", "scikit-image NL-means, estimated sigma", timed(baselines.skimage_nl_means), requires=("skimage",)),
        MethodSpec(
            "dipy-nlm",
            "dipy NL-means, estimated sigma, block radius 5 (as the shared reference)",
            timed(baselines.dipy_nl_means, threads=args.threads, block_radius=5),
            requires=("dipy",),
        ),
        MethodSpec(
            "dipy-nlm-b2",
            "dipy NL-means, estimated sigma, block radius 2 (dipy 1.12's default)",
            timed(baselines.dipy_nl_means, threads=args.threads, block_radius=2),
            requires=("dipy",),
        ),
        MethodSpec("bm4d-est", "BM4D, estimated sigma", timed(baselines.bm4d_estimated_sigma), requires=("bm4d", "skimage")),
        MethodSpec("bm4d-true", "BM4D, true sigma", bm4d_true, requires=("bm4d",)),
        MethodSpec(
            "careamics-n2v3d",
            f"CAREamics 0.3.5 N2V 3D (patch {careamics.patch_size}³, depth {careamics.depth}, "
            f"{careamics.channels} channels, {careamics.budget_seconds:.0f} s training)",
            Careamics(careamics, args.careamics_venv),
            kind="learned",
        ),
        MethodSpec(
            "ours-n2v2d",
            f"DeepDenoise N2V 2D (masking, {budget:.0f} s training)",
            deepdenoise("n2v", {"training": dict(training, batch_size=16)}),
            kind="learned",
        ),
        MethodSpec(
            "ours-n2v3d",
            f"DeepDenoise N2V 3D (masking, {budget:.0f} s training)",
            deepdenoise("n2v", {"model": {"dimensions": "3d"}, "training": dict(training, patch_size=32, batch_size=4)}),
            kind="learned",
        ),
        MethodSpec(
            "ours-blindspot",
            f"DeepDenoise blind-spot N2V + fusion (the default before R2R; {budget:.0f} s training)",
            deepdenoise("blindspot", {"training": training}),
            kind="learned",
        ),
        MethodSpec(
            "ours-white",
            f"DeepDenoise pretrained R2R, noise taken as white (--noise-correlation white: the default before 2026-12-02; {budget:.0f} s)",
            deepdenoise("r2r", {"training": training, "noise": {"correlation": "white"}}),
            kind="learned",
        ),
        MethodSpec(
            DEFAULT_KEY,
            f"DeepDenoise pretrained R2R, default ({budget:.0f} s training, at most 8000 steps)",
            deepdenoise("r2r", {"training": training}),
            kind="default",
        ),
    ]


def selected(spec: MethodSpec, only: Optional[list[str]], skip: Optional[list[str]]) -> bool:
    """``--only``/``--skip`` words match a method's key or name, case-insensitively, as substrings."""

    def matches(words: list[str]) -> bool:
        return any(word.lower() in spec.key or word.lower() in spec.name.lower() for word in words)

    return (not only or matches(only)) and not (skip and matches(skip))


def score(clean: np.ndarray, mask: np.ndarray, output: np.ndarray) -> tuple[float, float]:
    return psnr(clean, output, data_range=1.0, mask=mask), ssim(clean, output, data_range=1.0, mask=mask)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared" / "data", help="shared benchmark data")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS) + ["held-out"],
        default=TUNING_VARIANTS,
        help="variants to score (default: the four tuned on; 'held-out': those never tuned on)",
    )
    parser.add_argument("--levels", nargs="+", help="Rician levels (05, 10): shorthand for --variants rician05 rician10")
    parser.add_argument("--only", nargs="+", help="run only methods whose key or name contains one of these words")
    parser.add_argument("--skip", nargs="+", help="leave out methods whose key or name contains one of these words")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the default method (the table quotes medians)")
    parser.add_argument("--repeats-baselines", type=int, default=1, help="runs of the other learned methods")
    parser.add_argument("--budget-seconds", type=float, default=240.0, help="training budget of DeepDenoise's methods (the default's)")
    parser.add_argument("--careamics-budget-seconds", type=float, default=540.0, help="training budget of CAREamics (reference: 540 s)")
    parser.add_argument("--careamics-venv", type=Path, default=DEFAULT_VENV, help="CAREamics' environment (made on first use)")
    parser.add_argument("--crop", type=int, help="score the central N^3 block only (a quick check of every method)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch, dipy and CAREamics")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="where DeepDenoise's methods run")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "denoise.json", help="every run, as JSON")
    args = parser.parse_args(argv)
    if "held-out" in args.variants:
        args.variants = [name for name in args.variants if name != "held-out"] + HELD_OUT_VARIANTS
    if args.levels:
        unknown = [level for level in args.levels if f"rician{level}" not in VARIANTS]
        if unknown:
            parser.error(f"--levels takes 05 and 10; got {' '.join(unknown)}")
        args.variants = [f"rician{level}" for level in args.levels]
    if args.crop is not None and args.crop < 16:
        parser.error("--crop needs at least 16 voxels per axis (the networks' smallest input)")
    if args.repeats < 1 or args.repeats_baselines < 1:
        parser.error("--repeats and --repeats-baselines must be at least 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        data = load_bench_data(args.shared)
    except SharedDataMissing as error:
        print(f"benchmark_denoise: {error}", file=sys.stderr)
        return 2
    specs = [spec for spec in methods(args, data.clean.array) if selected(spec, args.only, args.skip)]
    rows: list[dict[str, Any]] = []
    not_run: list[dict[str, str]] = []
    for variant in (VARIANTS[name] for name in args.variants):
        try:
            truth = variant_truth(variant, data)
            noisy = make_noisy(variant, truth.clean, args.shared)
        except SharedDataMissing as error:
            print(f"benchmark_denoise: {error}", file=sys.stderr)
            return 2
        clean, mask = truth.clean.array, truth.mask
        if args.crop is not None:
            block = centre_block(clean.shape, args.crop)
            noisy, clean, mask = centre_crop(noisy, args.crop), clean[block], mask[block]
        psnr_db, ssim_value = score(clean, mask, noisy.array)
        rows.append(dict(variant=variant.name, key="noisy", method="noisy input", psnr=psnr_db, ssim=ssim_value, seconds=None, runs=1))
        log(f"[{variant.name}] noisy input: {psnr_db:.2f} dB, SSIM {ssim_value:.3f}")
        for spec in specs:
            row, reason = run_method(spec, variant, noisy, clean, mask, args)
            if row is not None:
                rows.append(row)
            if reason is not None:
                not_run.append(dict(variant=variant.name, method=spec.name, reason=reason))
                log(f"[{variant.name}] {spec.name}: not run: {reason}")
            write_json(args, rows, not_run)
    print_table(rows, [VARIANTS[name] for name in args.variants], specs)
    print_not_run(not_run)
    write_json(args, rows, not_run)
    return 0


def run_method(
    spec: MethodSpec, variant: Variant, noisy: Volume, clean: np.ndarray, mask: np.ndarray, args: argparse.Namespace
) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """Runs ``spec`` on ``variant`` as many times as its kind asks; returns the row (medians over the
    runs) and, when it could not run or failed, why."""
    missing = spec.missing_packages()
    if missing:
        return None, missing
    repeats = {"default": args.repeats, "learned": args.repeats_baselines}.get(spec.kind, 1)
    runs: list[dict[str, Any]] = []
    for seed in range(repeats):
        try:
            outcome = spec.run(noisy, variant, seed)
        except MethodSkipped as error:
            return None, str(error)
        except Exception as error:  # one failing method must not lose an hour's run of the others
            traceback.print_exc(file=sys.stderr)
            reason = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            return summarise(spec, variant, runs), reason
        psnr_db, ssim_value = score(clean, mask, outcome.array)
        runs.append(dict(seed=seed, psnr=psnr_db, ssim=ssim_value, seconds=outcome.seconds, note=outcome.note))
        log(f"[{variant.name}] {spec.name} seed {seed}: {psnr_db:.2f} dB, SSIM {ssim_value:.3f}, {outcome.seconds:.1f} s ({outcome.note})")
    return summarise(spec, variant, runs), None


def summarise(spec: MethodSpec, variant: Variant, runs: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if not runs:
        return None
    return dict(
        variant=variant.name,
        key=spec.key,
        method=spec.name,
        psnr=statistics.median(run["psnr"] for run in runs),
        ssim=statistics.median(run["ssim"] for run in runs),
        seconds=statistics.median(run["seconds"] for run in runs),
        runs=len(runs),
        all_runs=runs,
    )


def write_json(args: argparse.Namespace, rows: list[dict[str, Any]], not_run: list[dict[str, str]]) -> None:
    """Writes the settings, the rows and what did not run, atomically (a temporary file renamed)."""
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    settings["torch_threads"] = torch.get_num_threads()
    settings["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    args.json.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.json.with_name(f".{args.json.name}.tmp")
    record = {"settings": settings, "rows": rows, "not_run": not_run}
    temporary.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(temporary, args.json)


def print_table(rows: list[dict[str, Any]], variants: list[Variant], specs: list[MethodSpec]) -> None:
    """The Markdown table: one row per method, one "PSNR dB / SSIM / time" column per variant, then
    the default method's gap to BM4D with the true noise level."""
    found = {(row["key"], row["variant"]): row for row in rows}
    print("\n| method | " + " | ".join(f"{v.title}: PSNR dB / SSIM / time" for v in variants) + " | runs |")
    print("|" + "---|" * (len(variants) + 2))
    for key, name in [("noisy", "noisy input")] + [(spec.key, spec.name) for spec in specs]:
        cells = [found.get((key, v.name)) for v in variants]
        if not any(cells):
            continue
        runs = max(row["runs"] for row in cells if row)
        print(f"| {name} | " + " | ".join(_cell(row) for row in cells) + f" | {runs} |")
    gaps = []
    for v in variants:
        ours, reference = found.get((DEFAULT_KEY, v.name)), found.get((REFERENCE_KEY, v.name))
        if ours and reference:
            gaps.append(f"{ours['psnr'] - reference['psnr']:+.2f} dB / {ours['ssim'] - reference['ssim']:+.3f}")
        else:
            gaps.append("—")
    if any(gap != "—" for gap in gaps):
        print("| gap to BM4D true sigma (default minus BM4D) | " + " | ".join(gaps) + " | |")
    margins = []
    for v in variants:
        ours = found.get((DEFAULT_KEY, v.name))
        classical = [found[(key, v.name)] for key in CLASSICAL_ESTIMATED_KEYS if (key, v.name) in found]
        margins.append(f"{ours['psnr'] - max(row['psnr'] for row in classical):+.2f} dB" if ours and classical else "—")
    if any(margin != "—" for margin in margins):
        print("| margin over the best of dipy NL-means (b2) and BM4D (estimated sigma) | " + " | ".join(margins) + " | |")


def print_not_run(not_run: list[dict[str, str]]) -> None:
    """One line per method and reason, naming the variants it concerns."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for entry in not_run:
        grouped.setdefault((entry["method"], entry["reason"]), []).append(entry["variant"])
    if grouped:
        print("\nNot run or failed:")
    for (method, reason), variant_names in grouped.items():
        print(f"- {method} ({', '.join(variant_names)}): {reason}")


def _cell(row: Optional[dict[str, Any]]) -> str:
    if row is None:
        return "—"
    time_text = "—" if row["seconds"] is None else f"{row['seconds']:.0f} s"
    return f"{row['psnr']:.2f} / {row['ssim']:.3f} / {time_text}"


if __name__ == "__main__":
    sys.exit(main())

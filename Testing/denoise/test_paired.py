"""Denoising from pairs (DeepDenoiseLib.denoise.noise2noise, supervised, pairs, files and the ``n2n``/``supervised`` commands):
each mode raises PSNR on a phantom by a stated margin with fixed seeds and step counts, a 4D series
keeps its block-design activation while its temporal SNR rises, grids are kept exactly, a trained
model applies to new volumes, and mismatched inputs are refused with clear messages."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.cli import commands as cli
from DeepDenoiseLib.core.metrics import psnr
from DeepDenoiseLib.core.noise_simulation import add_gaussian_noise
from DeepDenoiseLib.core.progress import Cancelled, CancelToken, ProgressEvent
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_volume, write_volume
from DeepDenoiseLib.denoise.n2v_training import train_noise2void
from DeepDenoiseLib.denoise.noise2noise import noise2noise_series, noise2noise_volumes
from DeepDenoiseLib.denoise.supervised import denoise_with_model, train_supervised
from Testing.support.fmri_phantom import activation_amplitude, block_design_series, design_correlation, temporal_snr
from Testing.support.phantoms import single_thread, smooth_phantom, tiny_config  # noqa: F401

SPACING = (0.9, 0.8, 2.5)
ORIGIN = (12.5, -7.25, 3.0)
DIRECTION = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
    [[1.0, 0.0, 0.0], [0.0, math.cos(0.3), -math.sin(0.3)], [0.0, math.sin(0.3), math.cos(0.3)]]
)


RANDOM = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)


def on_grid(array: np.ndarray, **changes) -> Volume:
    geometry = dict(spacing=SPACING, origin=ORIGIN, direction=DIRECTION)
    geometry.update(changes)
    return Volume(array, **geometry)


def same_grid(a: Volume, b: Volume) -> bool:
    return a.spacing == b.spacing and a.origin == b.origin and np.array_equal(a.direction, b.direction)


# --- quality: each mode raises PSNR by a stated margin ------------------------------------------------------


@pytest.fixture(scope="module")
def draws() -> dict[str, np.ndarray]:
    """A 16x48x48 phantom in [0, ~1] and three independent noise draws (sigma 0.1: 20.1 dB each)."""
    clean = smooth_phantom((16, 48, 48), 0)
    return {"clean": clean, **{name: add_gaussian_noise(clean, 0.1, seed) for seed, name in enumerate("abc", start=1)}}


QUICK = {
    "model": {"depth": 2, "base_channels": 8},
    "training": {"patch_size": 32, "batch_size": 8, "learning_rate": 0.01, "steps_per_epoch": 50, "max_epochs": 2},
    "noise": {"model": "gaussian"},
}


def quick_config(method: str, model: dict = {}, training: dict = {}):  # noqa: B006 - read only
    return tiny_config(method, model=dict(QUICK["model"], **model), training=dict(QUICK["training"], **training), noise=QUICK["noise"])


def test_noise2noise_on_two_acquisitions_beats_each_and_their_average(draws) -> None:
    """100 steps; measured with training seeds 0-3: 32.6-33.0 dB, i.e. +12.5..12.9 dB over one
    acquisition (20.1 dB) and +9.5..9.9 dB over the plain average of the two (23.0 dB)."""
    clean = draws["clean"]
    result = noise2noise_volumes(on_grid(draws["a"]), on_grid(draws["b"]), quick_config("noise2noise"))
    after = psnr(clean, result.denoised.array, data_range=1.0)
    assert psnr(clean, draws["a"], data_range=1.0) == pytest.approx(20.1, abs=0.1)
    average = 0.5 * (draws["a"] + draws["b"])
    assert after - psnr(clean, draws["a"], data_range=1.0) >= 8.0, after
    assert after - psnr(clean, average, data_range=1.0) >= 5.0, after
    assert result.summary["training_steps"] == 100 and result.summary["acquisitions"] == 2
    np.testing.assert_allclose(result.residual.array, average - result.denoised.array, atol=1e-6)


@pytest.mark.parametrize(
    "name, model, training, margin_db",
    [
        # measured with training seeds 0-3 on a new noise draw: unet +11.0..11.8 dB, dae +8.4..9.7 dB,
        # unet with the adversarial term +10.9..11.8 dB
        ("unet", {}, {}, 8.0),
        ("dae", {"architecture": "dae"}, {}, 5.0),
        ("unet + adversarial", {}, {"adversarial_weight": 0.1}, 6.0),
    ],
)
def test_supervised_model_denoises_a_new_noise_draw(draws, name: str, model: dict, training: dict, margin_db: float) -> None:
    """Trained on (draw a, clean) for 100 steps, applied to draw c, which it never saw."""
    clean = draws["clean"]
    config = quick_config("supervised", model, training)
    trained = train_supervised([on_grid(draws["a"])], [on_grid(clean)], config)
    result = denoise_with_model(on_grid(draws["c"]), trained, config)
    gain = psnr(clean, result.denoised.array, data_range=1.0) - psnr(clean, draws["c"], data_range=1.0)
    assert gain >= margin_db, f"{name}: +{gain:.2f} dB"
    assert same_grid(result.denoised, on_grid(clean)) and result.summary["architecture"] == config.model.architecture


def test_a_series_keeps_its_block_design_activation_while_temporal_snr_rises() -> None:
    """40 frames of 24³ with a 4 % activation in a 4x4x4 region (on/off blocks of 5 frames) and
    noise sigma 0.03 (temporal SNR about 14). After 400 steps, measured over noise and training
    seeds 0-3: design correlation 0.886-0.957 before and at most 0.004 lower after; temporal SNR up
    2.2-2.4 times; 75-89 % of the true activation amplitude kept (the noisy series shows 83-98 %);
    in-brain RMSE against the clean series 0.0153-0.0162 instead of 0.030. Asserted: correlation at
    least 0.8 and at most 0.02 below the noisy series', temporal SNR up at least 1.8 times, at
    least 60 % of the amplitude kept, RMSE down by at least 30 %."""
    data = block_design_series(frames=40, size=24, change=0.04, sigma=0.03, seed=0)
    series = Volume(data.noisy, spacing=(3.0, 3.0, 3.0), metadata={"time_spacing": 2.0})
    config = tiny_config(
        "noise2noise",
        model={"depth": 2, "base_channels": 8},
        training={"patch_size": 16, "batch_size": 8, "learning_rate": 0.003, "steps_per_epoch": 50, "max_epochs": 8},
        noise={"model": "gaussian"},
    )
    result = noise2noise_series(series, config)
    denoised = result.denoised.array
    assert denoised.shape == data.noisy.shape and result.denoised.metadata["time_spacing"] == 2.0
    before, after = design_correlation(data.noisy, data), design_correlation(denoised, data)
    assert after >= 0.8 and after >= before - 0.02, (before, after)
    assert temporal_snr(denoised, data) >= 1.8 * temporal_snr(data.noisy, data)
    assert activation_amplitude(denoised, data) >= 0.6 * activation_amplitude(data.clean, data)

    def rmse(values: np.ndarray) -> float:
        return float(np.sqrt(np.mean((values - data.clean)[:, data.brain] ** 2)))

    assert rmse(denoised) <= 0.7 * rmse(data.noisy)
    assert result.summary["frames"] == 40


# --- grids, outputs, models ----------------------------------------------------------------------------


def test_outputs_keep_the_grid_and_the_rician_correction_uses_one_acquisitions_noise(draws) -> None:
    first, second = on_grid(draws["a"][:8, :32, :32]), on_grid(draws["b"][:8, :32, :32])
    config = tiny_config("noise2noise", prediction={"tta": True, "noise2noise_input": "mean"})
    result = noise2noise_volumes(first, second, config)
    for output in (result.denoised, result.residual, result.uncertainty):
        assert output is not None and output.array.shape == first.array.shape and output.array.dtype == np.float32
        assert same_grid(output, first) and np.all(np.isfinite(output.array))
    summary = result.summary
    assert summary["noise2noise_input"] == "mean" and summary["noise_model"] == "rician"
    assert summary["noise_sigma_before"] == pytest.approx(0.1, rel=0.2)  # one acquisition's, not the average's
    assert np.all(result.denoised.array >= 0.0)  # the Rician correction maps the noise floor to zero


def test_denoise_with_model_applies_to_other_scales_series_and_noise2void_models(draws) -> None:
    clean, noisy = draws["clean"][:8, :32, :32], draws["a"][:8, :32, :32]
    config = tiny_config("supervised")
    model = train_supervised([on_grid(noisy)], [on_grid(clean)], config)
    plain = denoise_with_model(on_grid(noisy), model, config).denoised.array
    # intensities are normalised per volume, so the model serves a volume in other units alike
    scaled = denoise_with_model(on_grid(noisy * 1000.0 + 50.0), model, config).denoised.array
    np.testing.assert_allclose(scaled, plain * 1000.0 + 50.0, rtol=1e-3, atol=0.05)
    # a 4D series frame by frame, on the same grid
    series = denoise_with_model(on_grid(np.stack([noisy, noisy])), model, config)
    assert series.denoised.array.shape == (2, 8, 32, 32) and same_grid(series.denoised, on_grid(noisy))
    np.testing.assert_allclose(series.denoised.array[0], series.denoised.array[1])
    # constant volumes come back unchanged
    constant = denoise_with_model(on_grid(np.full((8, 32, 32), 3.0, np.float32)), model, config)
    assert np.all(constant.denoised.array == 3.0) and constant.summary["warnings"]
    # a blind-spot model gets the new volume's noise level for its fusion step
    blindspot = tiny_config("blindspot", noise={"model": "gaussian"})
    fused = train_noise2void(noisy, blindspot, noise_sigma=0.1)
    result = denoise_with_model(on_grid(noisy * 2.0), fused, blindspot)
    assert result.summary["noise_sigma_before"] == pytest.approx(0.2, rel=0.2)
    assert fused.noise_variance == pytest.approx(0.01)  # the model itself is left as it was


def test_noise2noise_reports_its_stages_in_order_and_stops_when_cancelled(draws) -> None:
    first, second = on_grid(draws["a"][:8, :32, :32]), on_grid(draws["b"][:8, :32, :32])
    events: list[ProgressEvent] = []
    noise2noise_volumes(first, second, tiny_config("noise2noise"), progress=events.append)
    assert list(dict.fromkeys(e.stage for e in events)) == ["training", "predicting"]
    predicting = [e.fraction for e in events if e.stage == "predicting"]
    assert predicting == sorted(predicting) and predicting[-1] == 1.0
    token = CancelToken()

    def cancel_when_predicting(event: ProgressEvent) -> None:
        if event.stage == "predicting":
            token.cancel()

    with pytest.raises(Cancelled):
        noise2noise_volumes(first, second, tiny_config("noise2noise"), progress=cancel_when_predicting, cancel=token)


# --- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "second, message",
    [
        (on_grid(RANDOM[:, :, :30]), r"same voxel grid \(shape"),
        (on_grid(RANDOM, spacing=(0.9, 0.8, 2.0)), "spacing"),
        (on_grid(RANDOM, origin=(0.0, 0.0, 0.0)), "origin"),
        (on_grid(RANDOM, direction=np.eye(3)), "direction"),
        (on_grid(np.full((8, 32, 32), 2.0, np.float32)), "second acquisition is constant"),
        (on_grid(np.full((8, 32, 32), np.nan, np.float32)), "second acquisition: the volume holds"),
    ],
)
def test_mismatched_or_unusable_acquisitions_are_refused(draws, second: Volume, message: str) -> None:
    with pytest.raises(InputError, match=message):
        noise2noise_volumes(on_grid(draws["a"][:8, :32, :32]), second, tiny_config("noise2noise"))


def test_refusals_of_series_pairs_and_configurations(draws) -> None:
    noisy, clean = on_grid(draws["a"][:8, :32, :32]), on_grid(draws["clean"][:8, :32, :32])
    with pytest.raises(InputError, match="4D"):
        noise2noise_series(noisy, tiny_config("noise2noise"))
    with pytest.raises(InputError, match="at least 2 frames"):
        noise2noise_series(on_grid(noisy.array[None]), tiny_config("noise2noise"))
    with pytest.raises(InputError, match="one clean volume per noisy volume"):
        train_supervised([noisy, noisy], [clean], tiny_config("supervised"))
    with pytest.raises(InputError, match="noisy volume 2 and the clean volume 2 must lie on the same voxel grid"):
        train_supervised([noisy, noisy], [clean, on_grid(clean.array, spacing=(1.0, 1.0, 1.0))], tiny_config("supervised"))
    with pytest.raises(ValueError, match="needs a 'supervised' configuration"):
        train_supervised([noisy], [clean], tiny_config("noise2noise"))
    with pytest.raises(ValueError, match="needs a 'noise2noise' configuration"):
        noise2noise_volumes(noisy, noisy, tiny_config("n2v"))


# --- command line ----------------------------------------------------------------------------------------------


@pytest.fixture()
def files(tmp_path: Path, draws) -> dict[str, Path]:
    crop = (slice(0, 6), slice(0, 24), slice(0, 24))
    paths = {}
    for name in ("a", "b", "c", "clean"):
        paths[name] = write_volume(on_grid(draws[name][crop]), tmp_path / f"{name}.nii.gz")
    paths["series"] = write_volume(on_grid(np.stack([draws[n][crop] for n in "abc"])), tmp_path / "series.nii.gz")
    paths["other_grid"] = write_volume(on_grid(draws["b"][crop], spacing=(1.0, 1.0, 1.0)), tmp_path / "other.nii.gz")
    for method in ("noise2noise", "supervised"):
        tiny_config(method).save(tmp_path / f"{method}.json")
    paths["dir"] = tmp_path
    return paths


def test_cli_n2n_on_two_acquisitions_and_on_a_series(files, capsys) -> None:
    folder = files["dir"]
    code = cli.main(
        [
            "n2n",
            str(files["a"]),
            str(files["b"]),
            str(folder / "out.nrrd"),
            "--config",
            str(folder / "noise2noise.json"),
            "--residual",
            str(folder / "res.nrrd"),
            "--tta",
            "--uncertainty",
            str(folder / "spread.nrrd"),
            "--progress",
            "json",
        ]
    )
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    stages = [ProgressEvent.from_json(line).stage for line in captured.out.splitlines()]
    assert list(dict.fromkeys(stages)) == ["loading", "training", "predicting", "writing", "done"]
    output, source = read_volume(folder / "out.nrrd"), read_volume(files["a"])
    assert output.array.shape == (6, 24, 24) and np.allclose(output.direction, source.direction, atol=1e-6)
    assert (folder / "res.nrrd").is_file() and read_volume(folder / "spread.nrrd").array.min() >= 0.0
    code = cli.main(
        [
            "n2n",
            str(files["series"]),
            str(folder / "series_out.nii.gz"),
            "--config",
            str(folder / "noise2noise.json"),
            "--architecture",
            "dae",
            "--progress",
            "none",
        ]
    )
    assert code == cli.EXIT_OK, capsys.readouterr().err
    assert read_volume(folder / "series_out.nii.gz", allow_4d=True).array.shape == (3, 6, 24, 24)


def test_cli_supervised_trains_and_applies(files, capsys) -> None:
    folder = files["dir"]
    code = cli.main(
        [
            "supervised",
            "--noisy",
            str(files["a"]),
            str(files["b"]),
            "--clean",
            str(files["clean"]),
            str(files["clean"]),
            "--apply-to",
            str(files["c"]),
            str(folder / "sup.nii.gz"),
            "--config",
            str(folder / "supervised.json"),
            "--adversarial-weight",
            "0.1",
            "--loss",
            "l1",
            "--progress",
            "json",
        ]
    )
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    done = ProgressEvent.from_json(captured.out.splitlines()[-1])
    assert done.stage == "done" and done.summary["method"] == "supervised" and done.summary["output"].endswith("sup.nii.gz")
    assert read_volume(folder / "sup.nii.gz").array.shape == (6, 24, 24)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["n2n", "{a}", "{other_grid}", "{dir}/x.nii.gz"], "same voxel grid"),
        (["n2n", "{a}", "{dir}/x.nii.gz"], "4D"),
        (["n2n", "{a}", "{b}", "{c}", "{dir}/x.nii.gz"], "two acquisitions or one 4D series"),
        (
            ["supervised", "--noisy", "{a}", "--clean", "{clean}", "{clean}", "--apply-to", "{c}", "{dir}/x.nii.gz"],
            "one clean file per noisy file",
        ),
        (["supervised", "--noisy", "{a}", "--clean", "{clean}"], "--apply-to"),
        (["n2n", "{a}", "{b}", "{dir}/x.nii.gz", "--uncertainty", "{dir}/u.nii.gz"], "test-time augmentation"),
        (
            [
                "supervised",
                "--noisy",
                "{a}",
                "--clean",
                "{clean}",
                "--apply-to",
                "{c}",
                "{dir}/x.nii.gz",
                "--uncertainty",
                "{dir}/u.nii.gz",
            ],
            "test-time augmentation",
        ),
        (["denoise", "{a}", "{dir}/x.nii.gz", "--config", "{dir}/supervised.json"], "pairs of volumes"),
    ],
)
def test_cli_refusals_exit_with_code_2_and_write_nothing(files, capsys, arguments: list[str], message: str) -> None:
    text = {key: str(value) for key, value in files.items()}
    code = cli.main([a.format(**text) for a in arguments] + ["--progress", "none"])
    assert code == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (files["dir"] / "x.nii.gz").exists()


def test_cli_refuses_the_adversarial_weight_for_noise2noise(files, capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["n2n", str(files["a"]), str(files["b"]), str(files["dir"] / "x.nii.gz"), "--adversarial-weight", "0.1"])
    assert "unrecognized arguments: --adversarial-weight" in capsys.readouterr().err

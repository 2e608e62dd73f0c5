"""4D series (DeepDenoiseLib.denoise.pipeline.denoise_series, the patch sampler on [t, k, j, i], the command
line on 4D NIfTI, ``apply`` and ``models``): one model per series whose training time does not grow
with the frame count, geometry, time spacing and frame count kept, saved models applied to 3D and 4D
files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.cli import commands as cli
from DeepDenoiseLib.core.progress import ProgressEvent
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_volume, write_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.model_folder import MODELS_FOLDER_VARIABLE
from DeepDenoiseLib.denoise.model_record import read_model_record
from DeepDenoiseLib.denoise.patches import PatchGeometry, PatchSampler
from DeepDenoiseLib.denoise.pipeline import denoise_series, denoise_volume
from Testing.support.jobs import OBLIQUE
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401

SPACING, ORIGIN = (0.9, 0.8, 2.5), (12.5, -7.25, 3.0)


def series(frames: int = 3, shape=(6, 24, 24)) -> Volume:
    arrays = [noisy_phantom(shape, sigma=0.1, seed=seed)[1] + 0.05 * seed for seed in range(frames)]
    return Volume(np.stack(arrays), SPACING, ORIGIN, OBLIQUE, {"time_spacing": 2.5, "time_origin": 10.0})


# --- Patches from every frame ----------------------------------------------------------------------------


def test_patches_come_from_every_frame_and_the_held_out_slab_of_each() -> None:
    shape = (4, 12, 40)
    frames = np.stack([np.full(shape, float(t), np.float32) for t in range(5)])
    frames[:, :, :, 30:] += 100.0  # the held-out slab: the last 25 % of the longest axis (i)
    sampler = PatchSampler(frames, PatchGeometry((8, 8), 0), 0.25, np.random.default_rng(0))
    training = sampler.training_batch(200)
    assert set(np.unique(training)) == {0.0, 1.0, 2.0, 3.0, 4.0}  # every frame, never the slab
    validation = sampler.validation_batch(40)
    assert set(np.unique(validation)) <= {100.0, 101.0, 102.0, 103.0, 104.0} and len(set(np.unique(validation))) > 1


def test_a_series_of_one_frame_samples_exactly_like_its_volume() -> None:
    volume = noisy_phantom((8, 24, 28), seed=2)[1]
    geometry = PatchGeometry((8, 8), 1)
    alone = PatchSampler(volume, geometry, 0.2, np.random.default_rng(7), (0, 1, 2))
    as_series = PatchSampler(volume[np.newaxis], geometry, 0.2, np.random.default_rng(7), (0, 1, 2))
    np.testing.assert_array_equal(alone.training_batch(6), as_series.training_batch(6))
    np.testing.assert_array_equal(alone.validation_batch(3), as_series.validation_batch(3))


# --- denoise_series --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, sections", [("blindspot", {}), ("n2v", {"model": {"dimensions": "3d"}, "training": {"patch_size": 8}})])
def test_denoise_series_keeps_grid_frames_and_metadata_with_one_training(method, sections) -> None:
    noisy = series()
    config = tiny_config(method, **sections)
    result = denoise_series(noisy, config)
    for output in (result.denoised, result.residual):
        assert output.array.shape == noisy.array.shape and output.array.dtype == np.float32
        assert output.same_geometry(noisy) and output.metadata["time_spacing"] == 2.5
        assert np.all(np.isfinite(output.array))
    np.testing.assert_array_equal(result.residual.array, noisy.array - result.denoised.array)
    # One model for the series: as many training steps as for one volume, not one training per frame.
    assert result.summary["frames"] == 3 and result.summary["training_steps"] == 4
    assert result.model is not None and result.model.volume_shape == (6, 24, 24)
    single = denoise_volume(noisy.with_array(noisy.array[0]), config)
    assert single.summary["training_steps"] == result.summary["training_steps"]


def test_frames_are_predicted_each_on_its_own(tmp_path) -> None:
    """The shared model denoises each frame from that frame alone: reordering the frames reorders
    the result exactly (normalisation and noise sigma are fitted on the whole series either way)."""
    from DeepDenoiseLib.denoise.saved_model import load_model

    noisy = series(4)
    saved = load_model(denoise_series(noisy, tiny_config("blindspot")).save_model(tmp_path / "m.safetensors"))
    order = [2, 0, 3, 1]
    straight = saved.apply_series(noisy).denoised.array
    shuffled = saved.apply_series(noisy.with_array(noisy.array[order])).denoised.array
    np.testing.assert_array_equal(shuffled, straight[order])
    assert not np.array_equal(straight[0], straight[1])


def test_denoise_series_reports_prediction_per_frame_and_tta_spread() -> None:
    events: list[ProgressEvent] = []
    result = denoise_series(series(2), tiny_config("n2v", prediction={"tta": True}), progress=events.append)
    predicting = [e for e in events if e.stage == "predicting"]
    frames = [e for e in predicting if "frame" in e.message]
    assert frames[-1].fraction == pytest.approx(1.0) and "frame 2/2" in frames[-1].message
    assert predicting[-1].message == "checking the result"  # the self-check's extra prediction follows
    fractions = [e.fraction for e in predicting]
    assert fractions == sorted(fractions)
    assert result.uncertainty is not None and result.uncertainty.array.shape == (2, 6, 24, 24)
    assert np.all(result.uncertainty.array >= 0)


def test_series_and_volume_entry_points_refuse_the_other_dimensionality() -> None:
    with pytest.raises(InputError, match="a series is a 4D array"):
        denoise_series(series().with_array(series().array[0]), tiny_config("n2v"))
    with pytest.raises(InputError, match="4D array.*denoise_series"):
        denoise_volume(series(), tiny_config("n2v"))
    constant = series().with_array(np.full((3, 6, 24, 24), 7.0, np.float32))
    result = denoise_series(constant, tiny_config("n2v"))
    np.testing.assert_array_equal(result.denoised.array, constant.array)
    assert result.summary["warnings"] and result.model is None
    labels = Volume(np.random.default_rng(0).integers(0, 3, (2, 4, 16, 16)).astype(np.int16))
    with pytest.raises(InputError, match="label map"):
        denoise_series(labels, tiny_config("n2v"))


# --- Command line -----------------------------------------------------------------------------------------


@pytest.fixture()
def files(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    monkeypatch.setenv(MODELS_FOLDER_VARIABLE, str(tmp_path / "models"))
    write_volume(series(), tmp_path / "series.nii.gz")
    write_volume(Volume(noisy_phantom((6, 24, 24), sigma=0.1, seed=9)[1] * 40.0, spacing=(1.0, 1.0, 3.0)), tmp_path / "one.nrrd")
    tiny_config("blindspot").save(tmp_path / "tiny.json")
    return {"series": tmp_path / "series.nii.gz", "one": tmp_path / "one.nrrd", "config": tmp_path / "tiny.json", "dir": tmp_path}


def test_cli_denoises_a_4d_nifti_into_a_4d_nifti_and_saves_the_model_by_name(files, capsys) -> None:
    output, residual = files["dir"] / "out.nii.gz", files["dir"] / "res.nii"
    argv = ["denoise", str(files["series"]), str(output), "--config", str(files["config"]), "--residual", str(residual)]
    code = cli.main(argv + ["--save-model", "fmri tiny", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_OK, err
    assert "3 frames" in err and "saved the model to" in err
    source = read_volume(files["series"], allow_4d=True)
    for path in (output, residual):
        back = read_volume(path, allow_4d=True)
        assert back.array.shape == (3, 6, 24, 24)
        assert back.metadata["time_spacing"] == 2.5 and back.metadata["time_origin"] == 10.0
        np.testing.assert_allclose(back.spacing, source.spacing, rtol=1e-6)
        np.testing.assert_allclose(back.origin, source.origin, atol=1e-5)
        np.testing.assert_allclose(back.direction, source.direction, atol=1e-6)
    saved = files["dir"] / "models" / "fmri tiny.safetensors"
    record = read_model_record(saved)
    assert record["training"]["frames"] == 3 and record["config"] == DenoiseConfig.load(files["config"]).to_dict()

    # The saved model, by name, on a 3D file and on the 4D series, with the uncertainty.
    applied = files["dir"] / "applied.nii.gz"
    spread = files["dir"] / "spread.nii.gz"
    code = cli.main(["apply", "fmri tiny", str(files["one"]), str(applied), "--tta", "--uncertainty", str(spread), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_OK, err
    assert f"model {saved}" in err
    one = read_volume(files["one"])
    for path in (applied, spread):
        back = read_volume(path)
        assert back.array.shape == one.array.shape and back.spacing == pytest.approx(one.spacing)
    code = cli.main(["apply", str(saved), str(files["series"]), str(files["dir"] / "applied4d.nii"), "--progress", "json"])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    events = [ProgressEvent.from_json(line) for line in out.splitlines()]
    assert [e.stage for e in events if e.stage != "predicting"][-1] == "done"
    assert "training" not in {e.stage for e in events}  # applying trains nothing
    assert events[-1].summary["frames"] == 3 and events[-1].summary["training_steps"] == 0
    assert read_volume(files["dir"] / "applied4d.nii", allow_4d=True).array.shape == (3, 6, 24, 24)

    assert cli.main(["models"]) == cli.EXIT_OK
    listing = capsys.readouterr().out
    assert "fmri tiny: blindspot 2d, rician noise, trained on 24x24x6, 3 frames" in listing


def test_cli_apply_and_save_model_refusals_exit_with_2_and_write_nothing(files, capsys) -> None:
    import torch

    folder = files["dir"]
    pickled = folder / "evil.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    before = sorted(folder.iterdir())
    cases = [
        (["apply", str(pickled), str(files["one"]), str(folder / "o.nii")], "pickle"),
        (["apply", "nobody", str(files["one"]), str(folder / "o.nii")], "no model named 'nobody'"),
        (
            ["denoise", str(files["one"]), str(folder / "o.nii"), "--config", str(files["config"]), "--save-model", str(folder / "x.pt")],
            "safetensors",
        ),
        (
            ["denoise", str(files["one"]), str(folder / "o.nii"), "--config", str(files["config"]), "--save-model", "bad:name"],
            "not a valid model name",
        ),
    ]
    for argv, words in cases:
        code = cli.main(argv + ["--progress", "json"])
        event = ProgressEvent.from_json(capsys.readouterr().out.splitlines()[-1])
        assert code == cli.EXIT_BAD_INPUT and event.stage == "error" and words in event.message, event.message
    assert sorted(folder.iterdir()) == before
    assert cli.main(["models", "--folder", str(folder / "none")]) == cli.EXIT_OK
    assert "no saved models in" in capsys.readouterr().out

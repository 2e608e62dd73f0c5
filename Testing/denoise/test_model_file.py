"""Saved models (DeepDenoiseLib.denoise.model_file, model_record, model_folder): a saved model reloads to
identical weights and identical output; pickled, tampered, damaged or mismatched files are refused
with clear messages, and loading them runs no code; the per-user model folder and its listing."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.model_file import save_model, weights_digest
from DeepDenoiseLib.denoise.model_folder import MODELS_FOLDER_VARIABLE, default_model_folder, list_models, resolve_model_path
from DeepDenoiseLib.denoise.model_record import FORMAT_VERSION, METADATA_KEY, read_model_record, record_digest
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from DeepDenoiseLib.denoise.saved_model import load_model
from Testing.support.jobs import OBLIQUE
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401

CASES = {
    "blindspot": ("blindspot", {}),  # the default method: noise fusion, so the noise sigma matters
    "n2v-3d": ("n2v", {"model": {"dimensions": "3d"}, "training": {"patch_size": 8}}),
}


def phantom(seed: int = 0, shape=(8, 24, 28), scale: float = 1.0) -> Volume:
    _, noisy = noisy_phantom(shape, sigma=0.1, seed=seed)
    return Volume(noisy * scale, spacing=(0.9, 0.8, 2.5), origin=(3.0, -4.0, 5.0), direction=OBLIQUE)


@pytest.fixture(scope="module", params=list(CASES))
def trained(request, tmp_path_factory):
    """A tiny trained model of each kind, saved once: (result, config, path)."""
    method, sections = CASES[request.param]
    config = tiny_config(method, **sections)
    result = denoise_volume(phantom(), config)
    path = tmp_path_factory.mktemp("models") / f"{request.param}.safetensors"
    assert result.save_model(path) == path
    return result, config, path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """One saved blind-spot model for the refusal tests."""
    result = denoise_volume(phantom(), tiny_config("blindspot"))
    return result.save_model(tmp_path_factory.mktemp("one") / "model.safetensors")


def copy_of(path: Path, folder: Path, name: str = "copy.safetensors") -> Path:
    target = folder / name
    target.write_bytes(path.read_bytes())
    return target


def rewrite_record(path: Path, target: Path, change, recompute_digest: bool = True) -> Path:
    """``path`` with its JSON record changed by ``change(record)``, the weights kept as they are."""
    from safetensors.torch import load, save

    data = path.read_bytes()
    record = read_model_record(path)
    change(record)
    if recompute_digest:
        record["record_sha256"] = record_digest(record)
    target.write_bytes(save(load(data), metadata={METADATA_KEY: json.dumps(record), "format": "pt"}))
    return target


# --- Round trips -----------------------------------------------------------------------------------


def test_a_saved_model_reloads_to_identical_weights_and_output(trained) -> None:
    result, config, path = trained
    saved = load_model(path)
    original = result.model.network.state_dict()
    reloaded = saved.model.network.state_dict()
    assert list(original) == list(reloaded)
    for name in original:
        assert torch.equal(original[name].cpu(), reloaded[name].cpu()), name
    assert saved.config == config
    assert saved.model.geometry == result.model.geometry and saved.model.slice_axes == result.model.slice_axes
    # Applied to the volume it was trained on, it gives exactly the training run's result.
    again = saved.apply(phantom())
    np.testing.assert_array_equal(again.denoised.array, result.denoised.array)
    np.testing.assert_array_equal(again.residual.array, result.residual.array)
    assert again.summary["training_steps"] == 0 and again.model is None


def test_a_saved_model_denoises_another_volume_on_that_volumes_grid(trained) -> None:
    _, _, path = trained
    other = Volume(phantom(seed=5, shape=(10, 20, 32)).array, spacing=(1.1, 1.0, 3.0), origin=(9.0, 8.0, 7.0))
    result = load_model(path).with_prediction(tta=True).apply(other)
    for output in (result.denoised, result.residual, result.uncertainty):
        assert output.same_geometry(other) and output.array.shape == other.array.shape
        assert np.all(np.isfinite(output.array))
    np.testing.assert_allclose(result.denoised.array + result.residual.array, other.array, atol=1e-5)


def test_a_saved_model_works_in_the_new_volumes_units(trained) -> None:
    """Normalisation and noise sigma are fitted on each new volume: 250 times the intensities give
    250 times the result."""
    _, _, path = trained
    saved = load_model(path)
    volume = phantom(seed=3)
    plain = saved.apply(volume).denoised.array
    brighter = saved.apply(volume.with_array(volume.array * 250.0)).denoised.array
    np.testing.assert_allclose(brighter, plain * 250.0, rtol=1e-3, atol=1e-3 * 250.0 * float(np.abs(plain).max()))


def test_the_record_holds_what_the_model_needs(model_file) -> None:
    record = read_model_record(model_file)
    assert record["format_version"] == FORMAT_VERSION
    assert record["config"]["method"] == "blindspot"
    assert record["network"]["kind"] == "BlindSpotNet" and record["network"]["volume_shape_kji"] == [8, 24, 28]
    assert record["network"]["spacing_zyx"] == [2.5, 0.8, 0.9]
    assert record["normalization"]["training_fit"]["high"] > record["normalization"]["training_fit"]["low"]
    assert record["noise"]["fusion"] is True and record["noise"]["training_sigma"] > 0
    assert record["training"]["steps"] == 4 and record["training"]["frames"] == 1
    from safetensors.torch import load

    assert record["weights_sha256"] == weights_digest(load(model_file.read_bytes()))


def test_saving_is_atomic_and_checks_the_destination(model_file, tmp_path) -> None:
    result = denoise_volume(phantom(), tiny_config("n2v"))
    with pytest.raises(InputError, match="safetensors"):
        result.save_model(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        result.save_model(tmp_path / "missing" / "model.safetensors")
    path = result.save_model(tmp_path / "model.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temporary left behind
    assert load_model(path).config.method == "n2v"
    constant = denoise_volume(Volume(np.ones((4, 16, 16), np.float32)), tiny_config("n2v"))
    with pytest.raises(ValueError, match="no trained model"):
        constant.save_model(tmp_path / "constant.safetensors")
    without_grid = dataclasses.replace(result.model, volume_shape=(0, 0, 0))
    with pytest.raises(ValueError, match="grid it was trained on"):
        save_model(tmp_path / "x.safetensors", without_grid, result.config)


# --- Refusals ----------------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this calls open(MARKER, "w"): proof that a loader ran code from the file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickled_file_is_refused_without_running_it(model_file, tmp_path, writer) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.safetensors"
    payload = {"weights": load_model(model_file).model.network.state_dict(), "hook": _RunsCode(str(marker))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(InputError, match="pickle file.*refused.*run any code"):
        load_model(path)
    with pytest.raises(InputError, match="pickle"):
        read_model_record(path)
    assert not marker.exists()


def test_a_header_whose_length_starts_with_the_pickle_byte_still_loads(model_file, tmp_path) -> None:
    """safetensors pads its JSON header with spaces; a header of 128 + 256 n bytes begins with 0x80, the
    first byte of a pickle, and must not be taken for one."""
    data = model_file.read_bytes()
    length = int.from_bytes(data[:8], "little")
    padded = length + (128 - length) % 256
    target = tmp_path / "padded.safetensors"
    target.write_bytes(padded.to_bytes(8, "little") + data[8 : 8 + length] + b" " * (padded - length) + data[8 + length :])
    assert target.read_bytes()[0] == 0x80
    assert read_model_record(target) == read_model_record(model_file)
    load_model(target)


def test_changed_weights_are_refused(model_file, tmp_path) -> None:
    data = bytearray(model_file.read_bytes())
    data[-5] ^= 0x40  # one bit of the last tensor
    path = tmp_path / "tampered.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="weights do not match their SHA-256"):
        load_model(path)


def test_an_edited_record_is_refused(model_file, tmp_path) -> None:
    def more_steps(record):
        record["training"]["steps"] = 1000

    path = rewrite_record(model_file, tmp_path / "edited.safetensors", more_steps, recompute_digest=False)
    with pytest.raises(InputError, match="record does not match its SHA-256"):
        load_model(path)
    assert "SHA-256" in list_models(tmp_path)[0].problem


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda r: r.update(format_version=FORMAT_VERSION + 1), "newer DeepDenoise"),
        (lambda r: r.update(format_version="1"), "unknown model format version"),
        (lambda r: r.update(extra=1), "unknown key.*extra"),
        (lambda r: r["network"].update(pool="max"), "unknown key.*network section.*pool"),
        (lambda r: r["noise"].pop("fusion"), "noise section lacks fusion"),
        (lambda r: r["config"]["training"].update(epochs=3), "configuration is refused.*unknown setting.*training.epochs"),
        (lambda r: r["config"].update(method="magic"), "configuration is refused.*method"),
        (lambda r: r["config"]["model"].update(base_channels=8), "weights do not fit the network.*shape"),
        (lambda r: r["config"]["model"].update(depth=2), "weights do not fit the network.*(missing|unexpected)"),
        (lambda r: r["config"]["model"].update(context_slices=2), "network .*input channels.*is .*but its configuration builds"),
        (lambda r: r["config"].update(method="n2v"), "network .*BlindSpotNet.*configuration builds .*UNet"),
    ],
    ids=[
        "newer",
        "version-type",
        "record-key",
        "section-key",
        "missing-key",
        "config-key",
        "config-value",
        "width",
        "depth",
        "channels",
        "kind",
    ],
)
def test_records_that_do_not_fit_are_refused_with_a_clear_message(model_file, tmp_path, change, words) -> None:
    path = rewrite_record(model_file, tmp_path / "changed.safetensors", change)
    with pytest.raises(InputError, match=words):
        load_model(path)


def test_files_that_are_not_deepdenoise_models_are_refused(model_file, tmp_path) -> None:
    from safetensors.torch import save

    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(save({"w": torch.zeros(3)}, metadata={"format": "pt"}))
    with pytest.raises(InputError, match="safetensors file but not a DeepDenoise model"):
        load_model(foreign)
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="not in the safetensors format"):
        load_model(noise)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(model_file.read_bytes()[:-100])
    with pytest.raises(InputError, match="damaged"):
        load_model(truncated)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="not in the safetensors format"):
        load_model(empty)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.safetensors")


def test_the_target_volume_must_match_the_models_dimensionality(model_file) -> None:
    saved = load_model(model_file)
    frames = np.stack([phantom(seed=s).array for s in range(3)])
    with pytest.raises(InputError, match="4D series of 3 frames.*apply_series"):
        saved.apply(Volume(frames))
    with pytest.raises(InputError, match="apply_series takes a 4D series.*use apply"):
        saved.apply_series(phantom())
    rgb = Volume(np.zeros((4, 16, 16, 3), np.float32), metadata={"components": 3})
    with pytest.raises(InputError, match="scalar volumes.*3 components"):
        saved.apply(rgb)
    with pytest.raises(InputError, match="2D image"):
        saved.apply(Volume(np.zeros((16, 16), np.float32)))
    series = saved.apply_series(Volume(frames, spacing=(0.9, 0.8, 2.5)))
    assert series.denoised.array.shape == frames.shape


# --- The per-user folder -------------------------------------------------------------------------------


def test_the_default_folder_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(MODELS_FOLDER_VARIABLE, str(tmp_path / "mine"))
    assert default_model_folder() == tmp_path / "mine"
    monkeypatch.delenv(MODELS_FOLDER_VARIABLE)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        assert default_model_folder() == tmp_path / "data" / "DeepDenoise" / "models"
        monkeypatch.delenv("XDG_DATA_HOME")
        assert default_model_folder() == Path.home() / ".local" / "share" / "DeepDenoise" / "models"


def test_names_resolve_in_the_folder_and_paths_stay_paths(model_file, tmp_path) -> None:
    folder = tmp_path / "models"
    assert resolve_model_path("brain t1", folder, for_writing=True) == folder / "brain t1.safetensors"
    assert folder.is_dir()
    assert resolve_model_path("other.safetensors", folder) == Path("other.safetensors")
    assert resolve_model_path(f"sub{os.sep}m", folder) == Path(f"sub{os.sep}m")
    with pytest.raises(FileNotFoundError, match="no model named 'brain t1'.*no saved models there yet"):
        resolve_model_path("brain t1", folder)
    copy_of(model_file, folder, "brain t1.safetensors")
    assert resolve_model_path("brain t1", folder) == folder / "brain t1.safetensors"
    with pytest.raises(FileNotFoundError, match="saved models there: brain t1"):
        resolve_model_path("brain", folder)
    for bad in ("..", ".hidden", "a:b", ""):
        with pytest.raises(InputError, match="not a valid model name"):
            resolve_model_path(bad, folder)


def test_list_models_reads_headers_and_flags_unusable_files(model_file, tmp_path) -> None:
    assert list_models(tmp_path / "absent") == []
    copy_of(model_file, tmp_path, "b model.safetensors")
    torch.save({"x": torch.zeros(2)}, tmp_path / "a pickle.safetensors")
    (tmp_path / "notes.txt").write_text("not a model")
    infos = list_models(tmp_path)
    assert [info.name for info in infos] == ["a pickle", "b model"]
    assert "pickle" in infos[0].problem and infos[0].method == ""
    model = infos[1]
    assert model.problem is None and (model.method, model.dimensions, model.noise_model) == ("blindspot", "2d", "rician")
    assert model.trained_on == "28x24x8" and model.created and model.library_version

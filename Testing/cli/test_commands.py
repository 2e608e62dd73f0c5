"""Tests of the command line (DeepDenoiseLib.cli.commands) and the run configuration (DeepDenoiseLib.denoise.config):
JSON-lines progress, exit codes, ``python -m DeepDenoiseLib``, config round trips and flags
overriding the --config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.cli import commands as cli
from DeepDenoiseLib.core.progress import STAGES, ProgressEvent
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_volume, write_volume
from DeepDenoiseLib.denoise.config import NETWORK_FROM_SCRATCH_MIN_STEPS, DenoiseConfig
from Testing.support import REPO
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    _, noisy = noisy_phantom((6, 24, 24), sigma=0.1, seed=4)
    write_volume(Volume(noisy, spacing=(0.8, 0.8, 2.0)), tmp_path / "in.nii.gz")
    tiny_config("n2v").save(tmp_path / "tiny.json")
    return {"input": tmp_path / "in.nii.gz", "config": tmp_path / "tiny.json", "dir": tmp_path}


def json_events(text: str) -> list[ProgressEvent]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no JSON lines printed"
    return [ProgressEvent.from_json(line) for line in lines]  # every line must be one event


def test_denoise_with_json_progress_prints_one_event_per_line(files, capsys) -> None:
    output, residual = files["dir"] / "out.nii.gz", files["dir"] / "res.nii.gz"
    code = cli.main(
        ["denoise", str(files["input"]), str(output), "--config", str(files["config"]), "--residual", str(residual), "--progress", "json"]
    )
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    events = json_events(captured.out)
    stages = [e.stage for e in events]
    order = list(dict.fromkeys(stages))
    assert order == ["loading", "training", "predicting", "writing", "done"]
    # stages never go back
    ranks = [STAGES.index(s) for s in stages]
    assert ranks == sorted(ranks)
    assert stages[-1] == "done" and stages.count("done") == 1
    done = events[-1]
    assert done.summary["output"] == str(output)
    assert done.summary["method"] == "n2v" and done.summary["training_steps"] == 4
    training = [e for e in events if e.stage == "training"]
    assert training[-1].fraction == 1.0 and training[-1].loss is not None
    assert output.is_file() and residual.is_file()
    assert read_volume(output).array.shape == (6, 24, 24)


def test_denoise_with_bar_progress_prints_a_summary(files, capsys) -> None:
    output = files["dir"] / "out.nii.gz"
    code = cli.main(["denoise", str(files["input"]), str(output), "--config", str(files["config"])])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == ""  # stdout stays clean; the bar and the summary go to stderr
    assert "training" in captured.err and "done in" in captured.err and f"wrote {output}" in captured.err


def test_the_summary_says_when_the_noise_was_found_correlated(capsys) -> None:
    summary = {"noise_sigma_before": 0.023, "noise_sigma_after": 0.01, "noise_sigma_fused": 0.052}
    cli._print_summary({**summary, "noise_parameters": {"sigma": 0.052, "neighbour_correlation_kji": [0.45, 0.44, 0.46]}})
    assert "noise correlated between neighbouring voxels (0.45, 0.44, 0.46 along k, j, i): its full sigma 0.052" in capsys.readouterr().err
    cli._print_summary({**summary, "noise_parameters": {"sigma": 0.023}})
    assert "correlated" not in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["missing", "unsupported", "label_map", "no_output_folder"])
def test_bad_input_exits_with_2_and_an_error_event(files, capsys, problem: str) -> None:
    folder = files["dir"]
    source, output = files["input"], folder / "out.nii.gz"
    if problem == "missing":
        source = folder / "nothing.nii.gz"
    elif problem == "unsupported":
        source = folder / "notes.txt"
        source.write_text("not an image")
    elif problem == "label_map":
        labels = np.zeros((4, 16, 16), dtype=np.uint8)
        labels[1:3, 4:12, 4:12] = 2
        source = folder / "labels.nrrd"
        write_volume(Volume(labels), source, dtype=np.uint8)
    else:
        output = folder / "missing" / "out.nii.gz"
    before = sorted(folder.iterdir())
    code = cli.main(["denoise", str(source), str(output), "--config", str(files["config"]), "--progress", "json"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT
    events = json_events(captured.out)
    assert events[-1].stage == "error" and events[-1].message
    assert "deepdenoise: error:" in captured.err
    if problem == "label_map":
        assert "label map" in events[-1].message and "--force" in events[-1].message
    assert sorted(folder.iterdir()) == before  # nothing written


def test_force_denoises_a_label_map(files, capsys) -> None:
    labels = np.zeros((4, 16, 16), dtype=np.uint8)
    labels[1:3, 4:12, 4:12] = 2
    source = files["dir"] / "labels.nrrd"
    write_volume(Volume(labels), source, dtype=np.uint8)
    code = cli.main(
        ["denoise", str(source), str(files["dir"] / "out.nrrd"), "--config", str(files["config"]), "--force", "--progress", "none"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: the volume looks like a label map" in err


@pytest.mark.parametrize(
    "raised, code, text",
    [(KeyboardInterrupt(), cli.EXIT_INTERRUPTED, "cancelled"), (RuntimeError("boom"), cli.EXIT_FAILED, "RuntimeError: boom")],
)
def test_interruptions_and_failures_have_their_own_exit_codes(files, capsys, monkeypatch, raised, code, text) -> None:
    import DeepDenoiseLib.denoise.files as files_module

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(files_module, "denoise_file", fail)
    result = cli.main(["denoise", str(files["input"]), str(files["dir"] / "o.nii.gz"), "--progress", "json"])
    assert result == code
    event = json_events(capsys.readouterr().out)[-1]
    assert event.stage == "error" and text in event.message


def test_bad_arguments_exit_with_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["denoise"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["denoise", "a.nii", "b.nii", "--method", "magic"])
    assert exit_info.value.code == 2


def test_python_m_help_works_in_a_subprocess() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "DeepDenoiseLib", "--help"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "usage: deepdenoise" in result.stdout and "denoise" in result.stdout and "demo" in result.stdout
    sub = subprocess.run(
        [sys.executable, "-m", "DeepDenoiseLib", "denoise", "--help"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert sub.returncode == 0 and "--progress" in sub.stdout and "--budget-minutes" in sub.stdout


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["blindspot", "n2v", "n2v2", "structn2v"])
def test_a_configuration_round_trips_through_json_and_its_file(method: str, tmp_path: Path) -> None:
    config = DenoiseConfig.for_method(method, training={"seed": 7, "budget_seconds": None}, prediction={"tta": True})
    assert DenoiseConfig.from_json(config.to_json()) == config
    config.save(tmp_path / "c.json")
    assert DenoiseConfig.load(tmp_path / "c.json") == config
    assert json.loads((tmp_path / "c.json").read_text())["method"] == method


def test_each_method_comes_with_its_own_defaults() -> None:
    default = DenoiseConfig()
    assert default.method == "r2r" and default.model.init == "auto"
    assert default.training.min_steps == 0 and default.training.patience is None  # started from the prior: no floor, trains to the budget
    assert default.training.max_epochs * default.training.steps_per_epoch == 8000
    for method in ("blindspot", "n2v", "n2v2", "structn2v", "noise2noise", "supervised"):  # from random weights
        config = DenoiseConfig.for_method(method)
        assert config.training.min_steps == NETWORK_FROM_SCRATCH_MIN_STEPS and config.training.patience is None
        assert config.training.max_epochs == 1000
    n2v2 = DenoiseConfig.for_method("n2v2")
    assert n2v2.model.blurpool and not n2v2.model.top_skip and n2v2.masking.replacement == "median"
    struct = DenoiseConfig.for_method("structn2v")
    assert struct.masking.struct_axis == "x" and struct.masking.struct_half_length > 0


@pytest.mark.parametrize(
    "method, model, training, words",
    [
        ("n2v", {"depth": 5, "base_channels": 64}, {}, "bottleneck of 2048 channels, more than 1024"),
        ("n2v", {"depth": 4}, {"patch_size": 8}, "training.patch_size 8 is too small for model.depth 4"),
        ("blindspot", {"dimensions": "3d"}, {}, "2D method"),
    ],
)
def test_networks_that_cannot_work_are_refused_before_any_volume_is_read(method, model, training, words) -> None:
    with pytest.raises(ValueError, match=words):
        DenoiseConfig.for_method(method, model=model, training=training)


@pytest.mark.parametrize(
    "data, name",
    [
        ({"methd": "n2v"}, "methd"),
        ({"training": {"epochs": 3}}, "training.epochs"),
        ({"model": {"depth": 2, "widht": 8}}, "model.widht"),
    ],
)
def test_unknown_keys_are_refused(data: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown setting.*{name.replace('.', '[.]')}"):
        DenoiseConfig.from_dict(data)
    with pytest.raises(ValueError, match="unknown"):
        DenoiseConfig.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "data, word",
    [
        ({"method": "n2x"}, "method"),
        ({"model": {"depth": 0}}, "depth"),
        ({"training": {"budget_seconds": 0.1}}, "budget_seconds"),
        ({"training": {"batch_size": True}}, "batch_size"),
        ({"prediction": {"tile_size": 32, "tile_overlap": 20}}, "tile_overlap"),
        ({"method": "structn2v"}, "struct_axis"),
        ({"method": "blindspot", "model": {"dimensions": "3d"}}, "blindspot"),
        ({"normalization": {"low_percentile": 40, "high_percentile": 40}}, "percentile"),
        ({"training": []}, "training"),
    ],
)
def test_invalid_settings_are_refused(data: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        DenoiseConfig.from_dict(data)


def parse(*argv: str):
    return cli.config_from_args(cli.build_parser().parse_args(["denoise", "in.nii", "out.nii", *argv]))


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    DenoiseConfig.for_method(
        "n2v", training={"seed": 5, "patch_size": 32, "batch_size": 3, "budget_seconds": 100.0}, model={"depth": 3}
    ).save(path)
    from_file = parse("--config", str(path))
    assert from_file.training.seed == 5 and from_file.training.patch_size == 32 and from_file.model.depth == 3
    config = parse(
        "--config",
        str(path),
        "--seed",
        "7",
        "--budget-minutes",
        "0.5",
        "--epochs",
        "9",
        "--tta",
        "--force",
        "--masked-fraction",
        "0.05",
        "--dims",
        "3d",
        "--device",
        "cpu",
        "--threads",
        "2",
        "--learning-rate",
        "0.002",
        "--min-steps",
        "300",
    )
    assert config.training.seed == 7 and config.training.budget_seconds == 30.0 and config.training.max_epochs == 9
    assert config.training.min_steps == 300 and from_file.training.min_steps == 1000
    assert config.prediction.tta and config.allow_label_map and config.masking.masked_fraction == 0.05
    assert config.model.dimensions == "3d" and config.training.device == "cpu" and config.training.threads == 2
    assert config.training.learning_rate == 0.002
    # what no flag touched comes from the file
    assert config.training.patch_size == 32 and config.training.batch_size == 3 and config.model.depth == 3


def test_method_flag_over_a_config_file_keeps_its_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    DenoiseConfig.for_method("n2v", training={"seed": 5, "patch_size": 32}, model={"depth": 3}).save(path)
    config = parse("--config", str(path), "--method", "n2v2")
    assert config.method == "n2v2"
    assert config.model.blurpool and not config.model.top_skip and config.masking.replacement == "median"
    assert config.training.seed == 5 and config.training.patch_size == 32 and config.model.depth == 3
    struct = parse("--config", str(path), "--method", "structn2v", "--struct-axis", "z")
    assert struct.masking.struct_axis == "z"


def test_without_a_config_file_the_library_defaults_apply() -> None:
    config = parse()
    assert config == DenoiseConfig.for_method(DenoiseConfig().method)
    assert parse("--method", "n2v2").model.blurpool
    with pytest.raises(ValueError, match="blindspot"):
        parse("--method", "blindspot", "--dims", "3d")


def test_noise_model_flags_set_the_noise_settings() -> None:
    config = parse("--noise-model", "poisson", "--noise-gain", "0.02", "--noise-sigma", "0.01")
    assert (config.noise.model, config.noise.gain, config.noise.sigma) == ("poisson", 0.02, 0.01)
    assert parse("--noise-model", "speckle").noise.model == "speckle"
    with pytest.raises(ValueError, match="gain"):
        parse("--noise-model", "gaussian", "--noise-gain", "0.02")
    assert parse().noise.correlation == "auto"
    assert parse("--noise-correlation", "white").noise.correlation == "white"


def test_the_summary_says_when_training_ran_in_bfloat16(capsys) -> None:
    summary = {"training_seconds": 240.0, "training_steps": 7000, "device": "cpu"}
    cli._print_summary({**summary, "training_precision": "bfloat16"})
    assert "7000 steps in bfloat16 on cpu" in capsys.readouterr().err
    cli._print_summary({**summary, "training_precision": "float32"})
    assert "7000 steps on cpu" in capsys.readouterr().err

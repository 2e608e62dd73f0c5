"""The panel's decisions (DeepDenoiseLib.slicer.panel) in real MRML (the slicer-core wheel): the saved-model
list and the save-as name, which controls are editable, the run Apply starts for a volume, a sequence
frame or a saved model (and the refusals before anything starts), the parameters set afterwards; and
those runs carried out by the bridge jobs with the scripted worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise.config import METHOD_NAMES
from DeepDenoiseLib.denoise.model_folder import ModelInfo, check_model_name, list_models
from DeepDenoiseLib.slicer.panel import (
    APPLY_SAVED_MODEL,
    NOISE2NOISE,
    PAIR_VOLUMES,
    SUPERVISED,
    TRAINING_SETTINGS,
    apply_tooltip,
    chosen_model,
    enabled_settings,
    model_choices,
    parameters_after_run,
    parameters_for_method,
    plan_run,
    sequence_option_text,
    suggested_model_name,
    summary_text,
    updated_model_name,
    visible_settings,
)
from DeepDenoiseLib.slicer.sequences import add_browser, make_job, sequence_of_proxy
from DeepDenoiseLib.slicer.settings import PANEL_METHODS_2D_ONLY, PanelSettings
from DeepDenoiseLib.slicer.worker_job import JobResult
from Testing.support import fake_worker_command
from Testing.support.jobs import panel_state, run_job
from Testing.support.slicer_scene import add_volume, ijk_to_ras_array, slicer


def volume_array(seed: int = 0, shape=(5, 6, 7)) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 10.0, shape).astype(np.float32)


def add_sequence(scene, name: str, frame_count: int = 3):
    """A sequence of scalar volumes shown by a browser, as Slicer loads a 4D file; returns (sequence, proxy)."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    for index in range(frame_count):
        frame = slicer.vtkMRMLScalarVolumeNode()
        slicer.util.updateVolumeFromArray(frame, volume_array(index))
        frame.SetSpacing(0.8, 0.8, 2.0)
        sequence.SetDataNodeAtValue(frame, str(index))
    browser = add_browser(scene, [sequence], f"{name} browser")
    return sequence, browser.GetProxyNode(sequence)


def info(name: str, folder: Path, problem=None, **fields) -> ModelInfo:
    return ModelInfo(name=name, path=folder / f"{name}.safetensors", problem=problem, **fields)


# --- Sequences behind a frame ------------------------------------------------------------------------


def test_sequence_of_proxy_finds_the_sequence_a_frame_in_view_belongs_to(scene) -> None:
    sequence, proxy = add_sequence(scene, "fMRI")
    assert proxy is not None and proxy.IsA("vtkMRMLScalarVolumeNode")
    assert sequence_of_proxy(proxy) is sequence
    # A browser that shows two sequences together: each proxy leads to its own sequence.
    other = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "fMRI mask")
    for index in range(3):
        frame = slicer.vtkMRMLScalarVolumeNode()
        slicer.util.updateVolumeFromArray(frame, volume_array(10 + index))
        other.SetDataNodeAtValue(frame, str(index))
    browser = add_browser(scene, [sequence, other], "both")
    assert sequence_of_proxy(browser.GetProxyNode(other)) is other
    assert sequence_of_proxy(browser.GetProxyNode(sequence)) is sequence
    # Volumes that no browser shows, no node, and nodes outside a scene have none.
    assert sequence_of_proxy(add_volume(scene, "plain", volume_array())) is None
    assert sequence_of_proxy(None) is None
    assert sequence_of_proxy(slicer.vtkMRMLScalarVolumeNode()) is None
    assert sequence_option_text(sequence) == "Denoise every frame of 'fMRI' (3 frames, together)"
    single, _ = add_sequence(scene, "one", frame_count=1)
    assert sequence_option_text(single) == "Denoise every frame of 'one' (1 frame, together)"


# --- Saved models and names ----------------------------------------------------------------------------


def test_model_list_labels_say_method_noise_and_training_volume_and_why_a_file_is_unusable(tmp_path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"not a model")
    broken = list_models(tmp_path)
    assert [m.name for m in broken] == ["broken"] and broken[0].problem
    models = [
        info("brain t1", tmp_path, method="blindspot", dimensions="2d", noise_model="rician", trained_on="128x128x24",
             created="2025-01-02T03:04:05+00:00", library_version="0.1.0"),
        info("fmri", tmp_path, method="n2v2", dimensions="3d", noise_model="gaussian", trained_on="64x64x30, 20 frames"),
        broken[0],
    ]  # fmt: skip
    choices = model_choices(models, tmp_path)
    assert [c.name for c in choices] == ["brain t1", "fmri", "broken"]
    assert choices[0].label == "brain t1: Blind-spot N2V 2D, rician noise, trained on 128x128x24"
    assert choices[1].label == "fmri: N2V2 3D, gaussian noise, trained on 64x64x30, 20 frames"
    assert str(tmp_path / "brain t1.safetensors") in choices[0].tooltip and "0.1.0" in choices[0].tooltip
    assert choices[2].label == "broken (cannot be used)" and not choices[2].usable
    assert broken[0].problem in choices[2].tooltip
    # A method the panel does not name is shown as the file records it.
    assert model_choices([info("x", tmp_path, method="future", dimensions="2d")])[0].label.startswith("x: future 2D")

    empty = model_choices([], tmp_path)
    assert len(empty) == 1 and not empty[0].usable and empty[0].name == ""
    assert str(tmp_path) in empty[0].tooltip and "Save the trained model as" in empty[0].tooltip

    assert chosen_model(choices, "fmri") == "fmri"
    assert chosen_model(choices, "broken") == "brain t1"  # an unusable or vanished model is not kept
    assert chosen_model(choices, "") == "brain t1"
    assert chosen_model(empty, "gone") == ""


@pytest.mark.parametrize(
    "input_name, method, expected",
    [
        ("MRHead", "Blind-spot N2V", "MRHead Blind-spot N2V"),
        ("T1/FLAIR: scan*2", "N2V2", "T1_FLAIR_ scan_2 N2V2"),
        ("  __brain  ", "N2V", "brain N2V"),
        ("", "structN2V", "structN2V"),
        ("***", "", "model"),
        ("fMRI", "x.safetensors", "fMRI x"),
    ],
)
def test_suggested_model_names_are_valid_names(input_name, method, expected) -> None:
    name = suggested_model_name(input_name, method)
    assert name == expected
    check_model_name(name)


def test_the_suggested_name_follows_the_input_until_the_user_types_one() -> None:
    assert updated_model_name("", "", "MRHead N2V") == "MRHead N2V"
    assert updated_model_name("MRHead N2V", "MRHead N2V", "CT N2V") == "CT N2V"
    assert updated_model_name("my model", "MRHead N2V", "CT N2V") == "my model"
    assert updated_model_name("   ", "MRHead N2V", "CT N2V") == "CT N2V"


# --- Controls ------------------------------------------------------------------------------------------


def test_applying_a_saved_model_locks_every_training_setting(scene) -> None:
    node = add_volume(scene, "MRHead", volume_array())
    training = enabled_settings(panel_state(inputVolume=node, method="N2V", dimensions="3D", saveModel=True))
    # Every training setting the method uses (N2V has no architecture choice nor adversarial term).
    assert all(training[name] for name in TRAINING_SETTINGS if name not in ("architecture", "adversarialWeight"))
    assert training["savedModel"] is False and training["testTimeAugmentation"] and training["outputVolume"]
    applying = enabled_settings(panel_state(inputVolume=node, modelSource=APPLY_SAVED_MODEL, saveModel=True))
    assert not any(applying[name] for name in TRAINING_SETTINGS)
    assert applying["savedModel"] is True
    # What still matters when applying: outputs, test-time augmentation (the device is not a training setting).
    assert applying["outputVolume"] and applying["testTimeAugmentation"] and "device" not in TRAINING_SETTINGS
    assert enabled_settings(panel_state(saveModel=False))["saveModelName"] is False


@pytest.mark.parametrize("method", list(METHOD_NAMES))
def test_method_locks_hold_only_while_their_reason_does(method) -> None:
    two_d_only = method in PANEL_METHODS_2D_ONLY
    assert enabled_settings(panel_state(method=method, dimensions="2D"))["dimensions"] is not two_d_only
    # A scene saved with a 2D-only method in 3D keeps the dimensions editable, so it can be mended.
    assert enabled_settings(panel_state(method=method, dimensions="3D"))["dimensions"] is True
    masks = METHOD_NAMES[method] in ("n2v", "n2v2", "structn2v")
    assert enabled_settings(panel_state(method=method))["maskedFraction"] is masks


def test_uncertainty_locks_test_time_augmentation_and_outputs_follow_their_checkboxes(scene) -> None:
    assert enabled_settings(panel_state(computeUncertainty=True, testTimeAugmentation=True))["testTimeAugmentation"] is False
    assert enabled_settings(panel_state(computeUncertainty=True, testTimeAugmentation=False))["testTimeAugmentation"] is True
    state = panel_state(computeResidual=True)
    assert enabled_settings(state)["residualVolume"] is True and enabled_settings(state)["uncertaintyVolume"] is False
    # A whole sequence fills no volume node: its selectors are off.
    _, proxy = add_sequence(scene, "fMRI")
    on_sequence = enabled_settings(panel_state(inputVolume=proxy, computeResidual=True, computeUncertainty=True))
    assert not (on_sequence["outputVolume"] or on_sequence["residualVolume"] or on_sequence["uncertaintyVolume"])
    frame_only = enabled_settings(panel_state(inputVolume=proxy, denoiseSequence=False, computeResidual=True))
    assert frame_only["outputVolume"] and frame_only["residualVolume"]


def test_apply_tooltip_says_what_apply_will_do(scene) -> None:
    node = add_volume(scene, "MRHead", volume_array())
    _, proxy = add_sequence(scene, "fMRI")
    assert apply_tooltip(panel_state()) == "Select an input volume"
    assert apply_tooltip(panel_state(inputVolume=node)) == "Train on the input volume and denoise it in the background"
    assert "every frame of 'fMRI'" in apply_tooltip(panel_state(inputVolume=proxy))
    assert "with the saved model" in apply_tooltip(panel_state(inputVolume=node, modelSource=APPLY_SAVED_MODEL))


# --- The run Apply starts ------------------------------------------------------------------------------


def test_a_volume_run_passes_output_nodes_only_when_asked_for(scene) -> None:
    node = add_volume(scene, "MRHead", volume_array())
    output, residual, spread = (add_volume(scene, name, volume_array()) for name in ("out", "res", "spread"))
    state = panel_state(inputVolume=node, outputVolume=output, residualVolume=residual, uncertaintyVolume=spread,
                        method="N2V2", dimensions="3D", budgetMinutes=1.5)  # fmt: skip
    run = plan_run(state)
    assert run.input_node is node and run.output_node is output
    assert run.residual_node is None and run.uncertainty_node is None  # chosen, but not asked for
    assert run.model_path is None and run.save_model_path is None and not run.on_sequence
    config = run.parameters.to_config()
    assert config.method == "n2v2" and config.model.dimensions == "3d" and config.training.budget_seconds == 90.0

    state.computeResidual = state.computeUncertainty = state.testTimeAugmentation = True
    run = plan_run(state)
    assert (run.residual_node, run.uncertainty_node, run.compute_residual, run.compute_uncertainty) == (residual, spread, True, True)

    state.testTimeAugmentation = False
    with pytest.raises(ValueError, match="test-time augmentation"):
        plan_run(state)
    with pytest.raises(ValueError, match="2D method"):
        plan_run(panel_state(inputVolume=node, method=PANEL_METHODS_2D_ONLY[0], dimensions="3D"))
    with pytest.raises(InputError, match="Select an input volume"):
        plan_run(panel_state())


def test_a_frame_in_view_runs_its_whole_sequence_or_is_refused_with_advice(scene) -> None:
    sequence, proxy = add_sequence(scene, "fMRI")
    output = add_volume(scene, "out", volume_array())
    state = panel_state(inputVolume=proxy, outputVolume=output, computeResidual=True, residualVolume=output)
    run = plan_run(state)
    assert run.input_node is sequence and run.on_sequence
    assert run.output_node is None and run.residual_node is None and run.compute_residual is True

    state.denoiseSequence = False
    with pytest.raises(InputError, match="current frame of the sequence 'fMRI'.*Tick 'Denoise every frame of 'fMRI''.*clone"):
        plan_run(state)


def test_a_sequence_takes_mp_pca_by_default_and_a_volume_refuses_it(scene) -> None:
    from DeepDenoiseLib.slicer.logic import denoise_config
    from DeepDenoiseLib.slicer.panel_view import panel_view

    _, short = add_sequence(scene, "short", frame_count=9)  # too short for MP-PCA: the default stays
    assert panel_view(panel_state(inputVolume=short), "", was_series=False).parameters == {}
    sequence, proxy = add_sequence(scene, "fMRI", frame_count=12)
    state = panel_state(inputVolume=proxy, saveModel=True)
    view = panel_view(state, "", was_series=False)
    assert view.series and view.parameters == {"method": "MP-PCA (series)", **parameters_for_method("MP-PCA (series)")}
    assert view.parameters["saveModel"] is False and view.parameters["testTimeAugmentation"] is False
    for name, value in view.parameters.items():
        setattr(state, name, value)
    run = plan_run(state)
    assert run.on_sequence and run.parameters.to_config().method == "mppca" and run.save_model_path is None
    assert panel_view(state, view.suggestion, was_series=True).parameters == {}  # no change while it holds
    state.saveModel = True
    with pytest.raises(InputError, match="keeps no model"):
        plan_run(state)
    volume = add_volume(scene, "MRHead", volume_array())
    state = panel_state(inputVolume=volume, method="MP-PCA (series)")
    with pytest.raises(InputError, match="MP-PCA \\(series\\) denoises a whole sequence"):
        plan_run(state)
    assert panel_view(state, "", was_series=True).parameters == {"method": "Pretrained R2R", **parameters_for_method("Pretrained R2R")}
    assert summary_text({"frames": 12, "method": "mppca"}) == "12 frames, MP-PCA."
    # Scripts: a sequence without a method in the parameters takes MP-PCA too.
    assert denoise_config(None, series=True, frames=12).method == "mppca" and denoise_config(None).method == "r2r"
    assert denoise_config(None, series=True, frames=9).method == "r2r"
    assert denoise_config({"method": "N2V"}, series=True).method == "n2v"


def test_applying_a_saved_model_takes_its_file_and_only_device_and_tta(scene, tmp_path) -> None:
    node = add_volume(scene, "MRHead", volume_array())
    models = [info("brain", tmp_path, method="blindspot"), info("bad", tmp_path, problem="the weights' digest does not match")]
    # The (locked) training settings may even be ones that do not go together: they are not used.
    state = panel_state(inputVolume=node, modelSource=APPLY_SAVED_MODEL, savedModel="brain", method=PANEL_METHODS_2D_ONLY[0],
                        dimensions="3D", device="CPU", testTimeAugmentation=True, saveModel=True, saveModelName="x")  # fmt: skip
    run = plan_run(state, models, tmp_path)
    assert run.model_path == tmp_path / "brain.safetensors" and run.save_model_path is None
    assert run.parameters == PanelSettings(device="CPU", test_time_augmentation=True)

    for name, words in [
        ("bad", "'bad' cannot be used: the weights' digest does not match"),
        ("gone", f"'gone' is no longer in {tmp_path}; press Refresh"),
        ("", "Choose the saved model to apply"),
    ]:
        state.savedModel = name
        with pytest.raises(InputError, match=words):
            plan_run(state, models, tmp_path)
    with pytest.raises(InputError, match=f"no saved models in {tmp_path} yet.*Save the trained model as"):
        plan_run(state, [], tmp_path)


def test_saving_takes_a_name_or_a_path_and_says_what_it_replaces(scene, tmp_path) -> None:
    node = add_volume(scene, "MRHead", volume_array())
    state = panel_state(inputVolume=node, saveModel=True, saveModelName="  MRHead N2V  ")
    run = plan_run(state, [], tmp_path)
    assert run.save_model_path == "MRHead N2V" and run.replaces_model is None and run.model_path is None
    (tmp_path / "MRHead N2V.safetensors").write_bytes(b"an earlier model")
    assert plan_run(state, [], tmp_path).replaces_model == tmp_path / "MRHead N2V.safetensors"
    state.saveModelName = str(tmp_path / "elsewhere.safetensors")
    run = plan_run(state, [], tmp_path)
    assert run.save_model_path == str(tmp_path / "elsewhere.safetensors") and run.replaces_model is None
    for name, words in [("", "Give a name"), ("bad:name", "not a valid model name")]:
        state.saveModelName = name
        with pytest.raises(InputError, match=words):
            plan_run(state, [], tmp_path)
    state.saveModel = False
    assert plan_run(state, [], tmp_path).save_model_path is None


def test_parameters_after_a_run_show_its_nodes_and_offer_the_saved_model(scene) -> None:
    node = add_volume(scene, "MRHead", volume_array())
    denoised, residual = (add_volume(scene, name, volume_array()) for name in ("denoised", "residual"))
    run = plan_run(panel_state(inputVolume=node, computeResidual=True, saveModel=True, saveModelName="brain"))
    updates = parameters_after_run(run, JobResult(denoised, residual_node=residual))
    assert updates == {"outputVolume": denoised, "residualVolume": residual, "savedModel": "brain"}
    # A path is not a name in the model folder; a sequence's results are sequences, for no selector.
    run.save_model_path = "/somewhere/model.safetensors"
    assert "savedModel" not in parameters_after_run(run, JobResult(denoised))
    sequence, proxy = add_sequence(scene, "fMRI")
    run = plan_run(panel_state(inputVolume=proxy))
    assert parameters_after_run(run, JobResult(scene.AddNewNodeByClass("vtkMRMLSequenceNode", "new"))) == {}


def test_the_status_line_sums_up_a_finished_run() -> None:
    assert summary_text({}) == "Done."
    text = summary_text({"seconds": 12.4, "frames": 20, "noise_sigma_before": 0.1, "noise_sigma_after": 0.02,
                         "noise_model": "rician", "saved_model": "/m/brain.safetensors"})  # fmt: skip
    assert text == (
        "Done in 12 s. 20 frames, one model. Estimated noise 0.1 -> 0.02. Noise model: rician. Model saved to /m/brain.safetensors."
    )
    stretched = summary_text({"seconds": 300.0, "stopped_by": "min_steps", "training_steps": 1000})
    assert stretched == "Done in 300 s. The time budget was stretched to train the minimum of 1000 steps."
    assert "stretched" not in summary_text({"stopped_by": "budget", "training_steps": 1400})
    correlated = summary_text(
        {"noise_parameters": {"sigma": 0.05, "neighbour_correlation_kji": [0.45, 0.3, 0.5]}, "noise_sigma_fused": 0.05}
    )
    assert correlated == "Noise correlated between neighbouring voxels (up to 0.50), sigma 0.05."


# --- Methods that learn from pairs of volumes ----------------------------------------------------------


def test_paired_methods_show_their_volumes_and_settings_and_keep_no_model(scene) -> None:
    _, proxy = add_sequence(scene, "fMRI")
    assert visible_settings(panel_state(method=NOISE2NOISE)) == {
        "secondVolume": True, "trainingNoisyVolume": False, "trainingCleanVolume": False,
    }  # fmt: skip
    assert visible_settings(panel_state(method=SUPERVISED)) == {
        "secondVolume": False, "trainingNoisyVolume": True, "trainingCleanVolume": True,
    }  # fmt: skip
    # A sequence's neighbouring frames are Noise2Noise's pairs; a saved model needs no volumes.
    assert not any(visible_settings(panel_state(method=NOISE2NOISE, inputVolume=proxy)).values())
    assert not any(visible_settings(panel_state(method=SUPERVISED, modelSource=APPLY_SAVED_MODEL)).values())
    assert set(PAIR_VOLUMES) == set(visible_settings(panel_state()))

    for method in METHOD_NAMES:
        enabled = enabled_settings(panel_state(method=method))
        assert enabled["architecture"] is (method in (NOISE2NOISE, SUPERVISED))
        assert enabled["adversarialWeight"] is (method == SUPERVISED)
        assert enabled["saveModel"] is (method not in (NOISE2NOISE, SUPERVISED, "MP-PCA (series)"))  # MP-PCA keeps none either
    # Ticked (a saved scene), saving stays editable so that it can be unticked; the name stays locked.
    ticked = enabled_settings(panel_state(method=NOISE2NOISE, saveModel=True))
    assert ticked["saveModel"] is True and ticked["saveModelName"] is False
    assert parameters_for_method(NOISE2NOISE) == {"saveModel": False, "learningRate": 1e-3}
    assert parameters_for_method(PANEL_METHODS_2D_ONLY[0]) == {"dimensions": "2D", "learningRate": 3e-4}  # R2R fine-tunes gently
    assert parameters_for_method("N2V") == {"learningRate": 1e-3}
    assert parameters_for_method("a method from the future") == {}


def test_paired_runs_take_their_volumes_or_say_which_are_missing(scene, tmp_path) -> None:
    node = add_volume(scene, "scan 1", volume_array(0))
    second = add_volume(scene, "scan 2", volume_array(1))
    noisy, clean = (add_volume(scene, name, volume_array(seed)) for name, seed in (("low dose", 2), ("full dose", 3)))
    state = panel_state(inputVolume=node, method=NOISE2NOISE, secondVolume=second, trainingNoisyVolume=noisy,
                        architecture="DAE", maskedFraction=0.1, adversarialWeight=0.5)  # fmt: skip
    run = plan_run(state)
    assert run.second_node is second and run.training_noisy_node is None and run.training_clean_node is None
    config = run.parameters.to_config()
    assert config.method == "noise2noise" and config.model.architecture == "dae"
    assert config.training.adversarial_weight == 0.0  # Supervised only

    state.method, state.trainingCleanVolume = SUPERVISED, clean
    run = plan_run(state)
    assert (run.second_node, run.training_noisy_node, run.training_clean_node) == (None, noisy, clean)
    assert run.parameters.to_config().training.adversarial_weight == 0.5
    assert "Train on the training pair, then denoise the input volume" in apply_tooltip(state)

    for method, field, words in [(NOISE2NOISE, "secondVolume", "choose the second acquisition"),
                                 (SUPERVISED, "trainingCleanVolume", "choose both training volumes")]:  # fmt: skip
        missing = panel_state(**{**vars(state), "method": method, field: None})
        with pytest.raises(InputError, match=words):
            plan_run(missing)
    with pytest.raises(InputError, match="Supervised keeps no model: untick"):
        plan_run(panel_state(**{**vars(state), "saveModel": True, "saveModelName": "x"}))

    # On a sequence, Noise2Noise pairs neighbouring frames: a second acquisition chosen earlier is not sent.
    sequence, proxy = add_sequence(scene, "fMRI")
    run = plan_run(panel_state(inputVolume=proxy, method=NOISE2NOISE, secondVolume=second))
    assert run.input_node is sequence and run.second_node is None
    assert "neighbouring frames" in apply_tooltip(panel_state(inputVolume=proxy, method=NOISE2NOISE))
    # Applying a saved model sends none of them.
    run = plan_run(panel_state(**{**vars(state), "modelSource": APPLY_SAVED_MODEL, "savedModel": "m"}),
                   [ModelInfo("m", tmp_path / "m.safetensors")], tmp_path)  # fmt: skip
    assert (run.second_node, run.training_noisy_node, run.training_clean_node) == (None, None, None)


# --- Runs carried out (scripted worker) ----------------------------------------------------------------


def job_for(run, tmp_path, mode: str = "ok"):
    """The job DeepDenoiseLogic.process builds for ``run`` (its make_job call), with the scripted worker."""
    arguments = run.process_arguments()
    return make_job(
        arguments["inputVolume"],
        arguments["parameters"].to_config(),
        output_node=arguments["outputVolume"],
        residual_node=arguments["residualVolume"],
        compute_residual=arguments["computeResidual"],
        uncertainty_node=arguments["uncertaintyVolume"],
        compute_uncertainty=arguments["computeUncertainty"],
        model_path=arguments["modelPath"],
        save_model_path=arguments["saveModelPath"],
        second_input_node=arguments["secondVolume"],
        training_noisy_node=arguments["trainingNoisyVolume"],
        training_clean_node=arguments["trainingCleanVolume"],
        worker=fake_worker_command(mode),
        temp_parent=tmp_path / "work",
    )


def test_panel_runs_reach_the_worker_as_planned(scene, tmp_path) -> None:
    sequence, proxy = add_sequence(scene, "fMRI")
    run = plan_run(panel_state(inputVolume=proxy, computeResidual=True, saveModel=True, saveModelName="fmri"), [], tmp_path)
    result = run_job(job_for(run, tmp_path))
    assert result.summary["frames"] == 3 and result.summary["save_model"] == "fmri"
    assert result.output_node.IsA("vtkMRMLSequenceNode") and result.residual_node.IsA("vtkMRMLSequenceNode")
    assert result.output_node.GetNumberOfDataNodes() == 3 and result.browser_node is not None
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(result.output_node.GetNthDataNode(1)), volume_array(1) * 0.5)
    assert parameters_after_run(run, result) == {"savedModel": "fmri"}

    node = add_volume(scene, "MRHead", volume_array(), spacing=(0.7, 0.9, 2.5))
    models = [info("fmri", tmp_path, method="blindspot")]
    state = panel_state(inputVolume=node, modelSource=APPLY_SAVED_MODEL, savedModel="fmri", testTimeAugmentation=True,
                        computeUncertainty=True, device="CPU")  # fmt: skip
    run = plan_run(state, models, tmp_path)
    result = run_job(job_for(run, tmp_path))
    assert result.summary == {"seconds": 0.1, "model": str(tmp_path / "fmri.safetensors"), "tta": True, "device": "cpu"}
    assert np.array_equal(ijk_to_ras_array(result.output_node), ijk_to_ras_array(node))
    assert set(parameters_after_run(run, result)) == {"outputVolume", "uncertaintyVolume"}

    second = add_volume(scene, "MRHead repeat", volume_array(5), spacing=(0.7, 0.9, 2.5))
    run = plan_run(panel_state(inputVolume=node, method=NOISE2NOISE, secondVolume=second, computeResidual=True))
    result = run_job(job_for(run, tmp_path))
    mean = 0.5 * (volume_array() + volume_array(5))
    np.testing.assert_allclose(slicer.util.arrayFromVolume(result.output_node), mean * 0.5, rtol=1e-6)
    assert result.summary["acquisitions"] == 2 and set(parameters_after_run(run, result)) == {"outputVolume", "residualVolume"}

    noisy, clean = (add_volume(scene, name, volume_array(seed)) for name, seed in (("low dose", 6), ("full dose", 7)))
    run = plan_run(panel_state(inputVolume=proxy, method=SUPERVISED, trainingNoisyVolume=noisy, trainingCleanVolume=clean,
                               architecture="DAE", adversarialWeight=0.2))  # fmt: skip
    result = run_job(job_for(run, tmp_path))
    assert result.summary["frames"] == 3 and result.summary["training_means"] == pytest.approx(
        [float(volume_array(6).mean()), float(volume_array(7).mean())], rel=1e-5
    )
    assert (result.summary["architecture"], result.summary["adversarial_weight"]) == ("dae", 0.2)
    assert list((tmp_path / "work").iterdir()) == []

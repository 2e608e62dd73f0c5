"""The panel's Super-resolution section without Qt (DeepDenoiseLib.slicer.superres_panel), on real MRML nodes
from the slicer-core wheel: what it enables and shows, what its button will do, the run it plans
(and every refusal, with a message saying what to do), and what it shows afterwards."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.slicer.settings import SuperResSettings
from DeepDenoiseLib.slicer.superres_panel import (
    DDPM,
    PARAMETER_OF_SETTING,
    REGRESSION,
    SELF_SUPERVISED,
    SUPERVISED,
    SuperResRun,
    plan_superres_run,
    section_defaults,
    superres_enabled_settings,
    superres_parameters_after_run,
    superres_settings,
    superres_summary_text,
    superres_tooltip,
    superres_visible_settings,
)
from Testing.support.slicer_scene import add_volume


def thick(scene, name="thick", shape=(6, 16, 16), spacing=(0.8, 0.8, 4.0)):
    return add_volume(scene, name, np.random.default_rng(0).normal(100, 10, shape).astype(np.float32), spacing=spacing)


def section_state(**values) -> SimpleNamespace:
    state = section_defaults()
    state.update(
        superresInputVolume=None, superresTrainingVolume=None, superresOutputVolume=None,
        superresComputeUncertainty=False, superresUncertaintyVolume=None,
    )  # fmt: skip
    state.update(values)
    return SimpleNamespace(**state)


def test_the_section_starts_at_the_librarys_defaults() -> None:
    state = section_state()
    assert superres_settings(state) == SuperResSettings()
    assert state.superresMode == SELF_SUPERVISED == "Self-supervised" and state.superresMethod == DDPM == "DDPM"
    assert PARAMETER_OF_SETTING["device"] == "device" and PARAMETER_OF_SETTING["seed"] == "seed"  # shared with denoising


def test_only_ddpm_samples_so_only_ddpm_offers_sampling_and_uncertainty() -> None:
    enabled = superres_enabled_settings(section_state(superresComputeUncertainty=True))
    assert enabled["superresSamples"] and enabled["superresSamplingSteps"] and enabled["superresUncertaintyVolume"]
    enabled = superres_enabled_settings(section_state(superresMethod=REGRESSION, superresComputeUncertainty=True))
    assert not any(
        enabled[name] for name in ("superresSamples", "superresSamplingSteps", "superresComputeUncertainty", "superresUncertaintyVolume")
    )
    assert not superres_enabled_settings(section_state())["superresUncertaintyVolume"]  # not asked for


def test_the_cascade_needs_a_power_of_two_but_can_always_be_unticked() -> None:
    assert superres_enabled_settings(section_state(superresFactor=4))["superresCascade"]
    assert not superres_enabled_settings(section_state(superresFactor=3))["superresCascade"]
    assert superres_enabled_settings(section_state(superresFactor=3, superresCascade=True))["superresCascade"]


def test_the_training_volume_is_shown_in_the_supervised_mode_only() -> None:
    assert superres_visible_settings(section_state()) == {"superresTrainingVolume": False}
    assert superres_visible_settings(section_state(superresMode=SUPERVISED)) == {"superresTrainingVolume": True}


def test_the_button_says_what_it_will_do(scene) -> None:
    assert superres_tooltip(section_state()) == "Select the volume to make finer"
    node = thick(scene)
    assert "'thick' 4 times finer" in superres_tooltip(section_state(superresInputVolume=node))
    assert "in-plane detail" in superres_tooltip(section_state(superresInputVolume=node))
    assert "training volume" in superres_tooltip(section_state(superresInputVolume=node, superresMode=SUPERVISED))


def test_a_self_supervised_run_takes_the_input_and_the_outputs_asked_for(scene) -> None:
    node, output, spread = thick(scene), thick(scene, "out"), thick(scene, "spread")
    run = plan_superres_run(section_state(superresInputVolume=node, superresOutputVolume=output, superresFactor=2,
                                          superresComputeUncertainty=True, superresUncertaintyVolume=spread,
                                          superresTrainingVolume=thick(scene, "ignored")))  # fmt: skip
    assert run.input_node is node and run.output_node is output and run.training_node is None
    assert run.compute_uncertainty and run.uncertainty_node is spread
    assert run.settings.factor == 2 and run.settings.to_config().mode == "self-supervised"
    arguments = run.logic_arguments()
    assert arguments["trainingVolumes"] == [] and arguments["parameters"] is run.settings
    # Regression draws no samples: no uncertainty, whatever the (locked) checkbox says.
    run = plan_superres_run(section_state(superresInputVolume=node, superresMethod=REGRESSION,
                                          superresComputeUncertainty=True, superresUncertaintyVolume=spread))  # fmt: skip
    assert not run.compute_uncertainty and run.uncertainty_node is None


def test_a_supervised_run_sends_its_training_volume(scene) -> None:
    node, high = thick(scene), thick(scene, "high", shape=(24, 16, 16), spacing=(0.8, 0.8, 1.0))
    run = plan_superres_run(section_state(superresInputVolume=node, superresMode=SUPERVISED, superresTrainingVolume=high))
    assert run.training_node is high and run.logic_arguments()["trainingVolumes"] == [high]


@pytest.mark.parametrize(
    "values, message",
    [
        ({}, "Select the volume"),
        ({"superresMode": SUPERVISED}, "choose the training volume"),
        ({"superresMode": SUPERVISED, "training": "input"}, "other than the input"),
        ({"superresAxis": "I (x)", "shape": (6, 16, 3)}, r"3 voxel\(s\) along X"),
        ({"output": "input"}, "output volume must differ"),
        ({"superresComputeUncertainty": True, "uncertainty": "input"}, "uncertainty volume must differ"),
    ],
)
def test_runs_that_cannot_work_are_refused_with_what_to_do(scene, values, message) -> None:
    values = dict(values)
    shape = values.pop("shape", (6, 16, 16))
    node = None if message == "Select the volume" else thick(scene, shape=shape)
    for key, parameter in (
        ("training", "superresTrainingVolume"),
        ("output", "superresOutputVolume"),
        ("uncertainty", "superresUncertaintyVolume"),
    ):
        if values.pop(key, None) == "input":
            values[parameter] = node
    with pytest.raises(InputError, match=message):
        plan_superres_run(section_state(superresInputVolume=node, **values))


def test_settings_that_do_not_go_together_are_refused_before_anything_starts(scene) -> None:
    with pytest.raises(ValueError, match="power of two"):
        plan_superres_run(section_state(superresInputVolume=thick(scene), superresFactor=3, superresCascade=True))


def test_after_a_run_the_section_points_at_its_results_and_says_what_changed() -> None:
    fine, spread = object(), object()
    result = SimpleNamespace(output_node=fine, uncertainty_node=spread)
    run = SuperResRun(input_node=None, settings=SuperResSettings(), compute_uncertainty=True)
    assert superres_parameters_after_run(run, result) == {"superresOutputVolume": fine, "superresUncertaintyVolume": spread}
    run.compute_uncertainty = False
    assert superres_parameters_after_run(run, SimpleNamespace(output_node=fine, uncertainty_node=None)) == {"superresOutputVolume": fine}
    summary = {"seconds": 61.4, "input_shape_kji": [8, 24, 20], "output_shape_kji": [32, 24, 20],
               "output_spacing": [0.8, 0.8, 1.0], "training_steps": 250}  # fmt: skip
    assert superres_summary_text(summary) == "Done in 61 s. 20x24x8 -> 20x24x32 voxels. New spacing 0.8 x 0.8 x 1 mm. 250 training steps."
    assert superres_summary_text({}) == "Done."

"""DeepDenoise.py's Logic in real MRML (the slicer-core wheel): the module is imported with small
stand-ins for the Qt side of Slicer that the wheel lacks (slicer_stand_ins.py: qt.QTimer, tr, the
parameter-node wrapper decorator, the scripted-module base classes, slicer.app), and its jobs run the
scripted worker (fake_worker.py). Checks that what the panel plans reaches ``process``, for volumes,
sequences and saved models, blocking or through the timer, and that a cancelled run leaves the scene
as it was; and the module's start-up: the sample it registers, and what it does on a Slicer too old.
"""

from __future__ import annotations

import logging
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from DeepDenoiseLib.core.progress import Cancelled
from DeepDenoiseLib.core.sample_data import sample_paths
from DeepDenoiseLib.denoise.model_folder import ModelInfo
from DeepDenoiseLib.slicer.panel import APPLY_SAVED_MODEL, plan_run
from DeepDenoiseLib.slicer.sequences import add_browser
from Testing.support import fake_worker_command, slicer_api_by_version, slicer_stand_ins
from Testing.support.jobs import panel_state
from Testing.support.slicer_scene import add_volume, headless_scene, ijk_to_ras_array, slicer


@pytest.fixture
def module(monkeypatch, tmp_path):
    """DeepDenoise.py imported over a headless scene; its jobs run the scripted worker in the mode
    ``worker_mode`` names (None: the real worker, in this Python)."""
    headless_scene()
    slicer_stand_ins.install(monkeypatch, str(tmp_path / "temporary"))
    loaded = slicer_stand_ins.load_module()
    loaded.worker_mode = "ok"
    monkeypatch.setattr(
        loaded.DeepDenoiseLogic, "worker", property(lambda logic: loaded.worker_mode and fake_worker_command(loaded.worker_mode))
    )
    monkeypatch.setattr(loaded.DeepDenoiseLogic, "workerPython", lambda logic: sys.executable)
    return loaded


def volume_array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 10.0, (5, 6, 7)).astype(np.float32)


def test_process_denoises_a_volume_with_the_panels_plan(module) -> None:
    scene = slicer.mrmlScene
    array = volume_array()
    node = add_volume(scene, "MRHead", array, spacing=(0.7, 0.9, 2.5))
    logic = module.DeepDenoiseLogic()
    run = plan_run(panel_state(inputVolume=node, method="N2V2", dimensions="3D", computeResidual=True,
                               saveModel=True, saveModelName="brain"))  # fmt: skip
    output = logic.process(**run.process_arguments(), showResult=False)
    assert output is logic.lastResult.output_node and output.GetName() == "MRHead denoised"
    assert np.array_equal(ijk_to_ras_array(output), ijk_to_ras_array(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(output), array * 0.5)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(logic.lastResult.residual_node), array * 0.5)
    summary = logic.lastResult.summary
    assert (summary["method"], summary["dimensions"], summary["save_model"]) == ("n2v2", "3d", "brain")
    assert logic.summaryText(summary) == "Done in 0 s. Noise model: rician."


def test_process_in_the_background_applies_a_saved_model_to_a_whole_sequence(module, tmp_path) -> None:
    scene = slicer.mrmlScene
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "fMRI")
    for index in range(3):
        frame = slicer.vtkMRMLScalarVolumeNode()
        slicer.util.updateVolumeFromArray(frame, volume_array(index))
        sequence.SetDataNodeAtValue(frame, str(index))
    proxy = add_browser(scene, [sequence], "fMRI browser").GetProxyNode(sequence)
    models = [ModelInfo("fmri", tmp_path / "fmri.safetensors", method="blindspot", dimensions="2d")]
    state = panel_state(inputVolume=proxy, modelSource=APPLY_SAVED_MODEL, savedModel="fmri", device="CPU")
    logic = module.DeepDenoiseLogic()
    events, outcome = [], []
    returned = logic.process(
        **plan_run(state, models, tmp_path).process_arguments(), waitForCompletion=False, showResult=False,
        progressCallback=events.append, completedCallback=lambda result, error: outcome.append((result, error)),
    )  # fmt: skip
    assert returned is None and logic.isRunning and logic._timer.active
    deadline = time.monotonic() + 30
    while not outcome:
        assert time.monotonic() < deadline, "the worker did not finish in time"
        logic._timer.slot()
        time.sleep(0.02)
    result, error = outcome[0]
    assert error is None and not logic.isRunning and not logic._timer.active
    assert result.output_node.IsA("vtkMRMLSequenceNode") and result.output_node.GetNumberOfDataNodes() == 3
    assert result.browser_node is not None and logic.lastResult is result
    assert result.summary["model"] == str(tmp_path / "fmri.safetensors") and result.summary["device"] == "cpu"
    assert events[-1].stage == "done"


def test_cancel_leaves_the_scene_as_it_was(module) -> None:
    scene = slicer.mrmlScene
    node = add_volume(scene, "MRHead", volume_array())
    nodes_before = scene.GetNumberOfNodes()
    module.worker_mode = "hang"
    logic = module.DeepDenoiseLogic()
    outcome = []
    logic.process(node, None, {"budgetMinutes": 1.0}, waitForCompletion=False, showResult=False,
                  completedCallback=lambda result, error: outcome.append(error))  # fmt: skip
    with pytest.raises(RuntimeError, match="in progress"):
        logic.process(node, None, None)
    logic.cancel()
    assert isinstance(outcome[0], Cancelled) and not logic.isRunning
    assert scene.GetNumberOfNodes() == nodes_before
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), volume_array())


def test_process_sends_the_paired_methods_volumes(module) -> None:
    scene = slicer.mrmlScene
    first, second = (add_volume(scene, name, volume_array(seed)) for name, seed in (("scan 1", 0), ("scan 2", 1)))
    noisy, clean = (add_volume(scene, name, volume_array(seed)) for name, seed in (("low dose", 2), ("full dose", 3)))
    logic = module.DeepDenoiseLogic()
    output = logic.process(**plan_run(panel_state(inputVolume=first, method="Noise2Noise", secondVolume=second)).process_arguments(),
                           showResult=False)  # fmt: skip
    np.testing.assert_allclose(slicer.util.arrayFromVolume(output), (volume_array(0) + volume_array(1)) * 0.25, rtol=1e-6)
    state = panel_state(inputVolume=first, method="Supervised", trainingNoisyVolume=noisy, trainingCleanVolume=clean)
    logic.process(**plan_run(state).process_arguments(), showResult=False)
    means = logic.lastResult.summary["training_means"]
    assert means == pytest.approx([float(volume_array(2).mean()), float(volume_array(3).mean())], rel=1e-5)


TINY_SUPERRES = {
    "factor": 2,
    "mode": "self-supervised",
    "model": {"depth": 1, "base_channels": 8},
    "training": {"patch_size": [16, 16], "batch_size": 2, "max_steps": 2, "budget_seconds": None, "device": "cpu", "threads": 1},
    "sampling": {"steps": 2, "samples": 2, "patch_size": 16, "patch_overlap": 4},
}


def test_super_resolve_puts_the_result_and_its_uncertainty_on_the_finer_grid(module) -> None:
    from DeepDenoiseLib.slicer.superres_job import fine_grid_ijk_to_ras
    from DeepDenoiseLib.superres.config import SuperResConfig

    module.worker_mode = None
    scene = slicer.mrmlScene
    array = np.random.default_rng(5).normal(100.0, 10.0, (6, 16, 16)).astype(np.float32)
    node = add_volume(scene, "thick", array, spacing=(0.8, 0.8, 1.6), origin=(4.0, -3.0, 10.0))
    logic = module.DeepDenoiseLogic()
    config = SuperResConfig.from_dict(TINY_SUPERRES)
    events, outcome = [], []
    assert logic.superResolve(node, config, computeUncertainty=True, waitForCompletion=False, showResult=False,
                              progressCallback=events.append, completedCallback=lambda r, e: outcome.append((r, e))) is None  # fmt: skip
    with pytest.raises(RuntimeError, match="in progress"):
        logic.process(node, None, None)
    deadline = time.monotonic() + 120
    while not outcome:
        assert time.monotonic() < deadline, "the worker did not finish in time"
        logic._timer.slot()
        time.sleep(0.05)
    result, error = outcome[0]
    assert error is None and not logic.isRunning and events
    expected = fine_grid_ijk_to_ras(ijk_to_ras_array(node), 2, "z")
    for output in (result.output_node, result.uncertainty_node):
        assert slicer.util.arrayFromVolume(output).shape == (12, 16, 16)
        np.testing.assert_allclose(ijk_to_ras_array(output), expected, atol=1e-9)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)  # the input is untouched
    assert result.output_node.GetName() == "thick super-resolved"


def test_super_resolve_by_setting_names_and_a_failed_run_leaves_the_scene(module) -> None:
    scene = slicer.mrmlScene
    node = add_volume(scene, "thick", np.full((6, 16, 16), 7.0, dtype=np.float32), spacing=(0.8, 0.8, 1.6))
    logic = module.DeepDenoiseLogic()
    assert logic.superResConfig({"factor": 3, "method": "Regression"}).factor == 3
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(Exception, match="training volume"):
        logic.superResolve(node, {"mode": "Supervised"})  # no training volume: refused before starting
    assert scene.GetNumberOfNodes() == nodes_before and not logic.isRunning


SLICER_API = slicer_api_by_version()


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


@pytest.mark.parametrize("version", sorted(SLICER_API, key=version_tuple))
def test_start_up_registers_the_sample_as_each_slicer_version_takes_it(monkeypatch, tmp_path, version) -> None:
    """The module connects registerSampleData to startupCompleted; called with the Sample Data module
    of each recorded Slicer version (its exact keyword parameters), it registers the bundled sample,
    and what SampleData then does with it (fetch the URI into its cache under the file name, check the
    checksum with slicer.util) gives back the shipped file."""
    api = SLICER_API[version]
    headless_scene()
    app = slicer_stand_ins.install(monkeypatch, str(tmp_path / "temporary"), version=version_tuple(version))
    sample_data, registered = slicer_stand_ins.stand_in_sample_data(
        api["register_custom_sample_data_source"], api["register_custom_sample_data_category"]
    )
    monkeypatch.setitem(sys.modules, "SampleData", sample_data)
    module = slicer_stand_ins.load_module()
    assert module.SLICER_VERSION_PROBLEM is None
    parent = SimpleNamespace()
    module.DeepDenoise(parent)
    assert parent.title == "DeepDenoise" and "Noise2Void" in parent.helpText
    ((signal, slot),) = app.connections
    assert signal == "startupCompleted()"
    slot()
    if api["register_custom_sample_data_category"]:
        assert registered.pop(0) == {"category": "DeepDenoise", "title": "DeepDenoise"}
    (source,) = registered
    assert (source["category"], source["sampleName"], source["nodeNames"]) == (
        "DeepDenoise",
        "DeepDenoiseNoisyBrain",
        "DeepDenoiseNoisyBrain",
    )
    file_type = "loadFileTypes" if "loadFileTypes" in api["register_custom_sample_data_source"] else "loadFileType"
    assert source[file_type] == "VolumeFile" and source.get("loadFileType" if file_type == "loadFileTypes" else "loadFileTypes") is None
    assert Path(source["thumbnailFileName"]).is_file()
    cached = tmp_path / "cache" / source["fileNames"]
    cached.parent.mkdir()
    urllib.request.urlretrieve(source["uris"], cached)  # what SampleDataLogic.downloadFile does
    algorithm, digest = slicer.util.extractAlgoAndDigest(source["checksums"])
    assert slicer.util.computeChecksum(algorithm, str(cached)) == digest
    assert cached.read_bytes() == sample_paths().noisy.read_bytes()


def test_on_a_slicer_older_than_the_minimum_the_module_loads_and_says_which_slicer_it_needs(monkeypatch, tmp_path, caplog) -> None:
    headless_scene()
    app = slicer_stand_ins.install(monkeypatch, str(tmp_path / "temporary"), version=(5, 2))
    for name in ("slicer.i18n", "slicer.parameterNodeWrapper"):  # Slicer 5.2 has neither
        monkeypatch.setitem(sys.modules, name, None)
    with caplog.at_level(logging.ERROR):
        module = slicer_stand_ins.load_module()
    problem = module.SLICER_VERSION_PROBLEM
    assert "DeepDenoise needs 3D Slicer 5.6 or newer; this is Slicer 5.2" in problem and problem in caplog.text
    parent = SimpleNamespace()
    module.DeepDenoise(parent)
    assert parent.title == "DeepDenoise" and parent.helpText == problem
    assert app.connections == []  # no sample registered
    widget = module.DeepDenoiseWidget()
    widget.setup()
    ((label,),) = [widget.layout.widgets]
    assert label.text == problem and label.wordWrap is True
    widget.enter()
    widget.exit()
    widget.cleanup()
    with pytest.raises(RuntimeError, match=r"needs 3D Slicer 5\.6 or newer"):
        module.DeepDenoiseLogic()


def test_reload_forgets_the_library_so_that_slicer_re_executing_the_module_reads_it_afresh(module) -> None:
    def library_modules() -> dict:
        return {name: value for name, value in sys.modules.items() if name.split(".")[0] == "DeepDenoiseLib"}

    saved = library_modules()
    old_config = sys.modules["DeepDenoiseLib.denoise.config"]
    widget = module.DeepDenoiseWidget()
    try:
        widget.onReload()
        assert library_modules() == {}
        assert slicer_stand_ins.StandInScriptedBase.reloads[-1] is widget  # then Slicer's own Reload
        reloaded = slicer_stand_ins.load_module()  # what Slicer's Reload does with DeepDenoise.py
        assert sys.modules["DeepDenoiseLib.denoise.config"] is not old_config
        assert reloaded.ModuleLogic is sys.modules["DeepDenoiseLib.slicer.logic"].ModuleLogic
    finally:
        for name in library_modules():
            del sys.modules[name]
        sys.modules.update(saved)


def test_the_self_test_installs_nothing_and_without_torch_skips_the_worker_runs_saying_why(module, monkeypatch, caplog) -> None:
    """DeepDenoiseTest.runTest as Reload and Test runs it: the checks that need no worker run; those
    that would train are skipped with a message, never an install (testing mode would download
    PyTorch without asking)."""
    monkeypatch.setattr(module.slicer_support, "missing_worker_packages", lambda path: ["torch"])
    monkeypatch.setattr(module.DeepDenoiseLogic, "ensureDependencies", lambda self: pytest.fail("the self-test installs"))
    started = []
    monkeypatch.setattr(module.DeepDenoiseLogic, "_follow", lambda self, job, *args: started.append(job))
    with caplog.at_level(logging.WARNING):
        module.DeepDenoiseTest().runTest()
    skipped = [line for line in caplog.messages if "Skipped: the background worker needs torch, which is not installed" in line]
    assert [line.split(":")[1].strip() for line in skipped] == [
        "test_DenoisesAndCancels", "test_SavesAModelAndAppliesIt", "test_SuperResolvesOntoTheFinerGrid",
    ]  # fmt: skip
    assert started == [] and "Press Apply" in slicer_stand_ins.StandInModuleTest.messages[-1]

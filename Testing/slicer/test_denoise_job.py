"""Denoising jobs on volume nodes (DeepDenoiseLib.slicer.denoise_job) against real Slicer MRML: results
in new or existing nodes with bit-identical geometry, left-handed files round-tripped, cancel and
failures leaving the scene untouched, bad nodes refused before anything starts.

The jobs run a scripted stand-in for the CLI (fake_worker.py: output = input * 0.5) except the
end-to-end tests, which train the real networks for two seconds on a tiny volume.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from DeepDenoiseLib.core.progress import Cancelled
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise.config import (
    DenoiseConfig,
)
from DeepDenoiseLib.slicer.denoise_job import NodeDenoiseJob
from DeepDenoiseLib.slicer.settings import PanelSettings
from DeepDenoiseLib.slicer.worker_job import WorkerError
from Testing.support import fake_worker_command
from Testing.support.fake_worker import CRASH_MESSAGE, ERROR_MESSAGE
from Testing.support.jobs import LEFT_HANDED, OBLIQUE, noisy_array, run_job
from Testing.support.slicer_scene import add_volume, ijk_to_ras_array, slicer, world_value

# --- Jobs on nodes ---------------------------------------------------------------------------------


def test_job_creates_denoised_residual_and_uncertainty_nodes_with_bit_identical_geometry(scene, tmp_path):
    study = scene.GetSubjectHierarchyNode()
    patient = study.CreateSubjectItem(study.GetSceneItemID(), "patient")
    study_item = study.CreateStudyItem(patient, "study")
    array = noisy_array()
    node = add_volume(scene, "MRHead", array, spacing=(0.7, 1.1, 2.5), origin=(10.0, -20.0, 5.0), directions=OBLIQUE)
    study.SetItemParent(study.GetItemByDataNode(node), study_item)
    node.GetDisplayNode().SetAutoWindowLevel(False)
    node.GetDisplayNode().SetWindowLevel(40.0, 100.0)

    config = PanelSettings(method="N2V2", modality="CT", budget_minutes=0.5, test_time_augmentation=True).to_config()
    job = NodeDenoiseJob(
        node, config, compute_residual=True, compute_uncertainty=True, worker=fake_worker_command("ok"), temp_parent=tmp_path
    )
    result = run_job(job)

    assert result.output_node.GetName() == "MRHead denoised"
    assert result.residual_node.GetName() == "MRHead residual"
    assert result.uncertainty_node.GetName() == "MRHead uncertainty"
    for output in (result.output_node, result.residual_node, result.uncertainty_node):
        assert np.array_equal(ijk_to_ras_array(output), ijk_to_ras_array(node))  # bit-identical
        assert study.GetItemParent(study.GetItemByDataNode(output)) == study_item
        assert output.GetDisplayNode() is not None
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(result.output_node), array * 0.5)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(result.residual_node), array - array * 0.5)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(result.uncertainty_node), np.abs(array) * 0.25)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)
    assert (result.output_node.GetDisplayNode().GetWindow(), result.output_node.GetDisplayNode().GetLevel()) == (40.0, 100.0)
    # The worker read the panel's choices from the configuration file, noise model included.
    assert result.summary["method"] == "n2v2" and result.summary["budget_seconds"] == 30.0
    assert result.summary["tta"] is True and result.summary["noise_model"] == "gaussian"
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone


def test_job_fills_existing_output_nodes_with_the_inputs_geometry(scene, tmp_path):
    array = noisy_array()
    node = add_volume(scene, "input", array, spacing=(0.5, 0.5, 3.0), directions=OBLIQUE)
    existing = add_volume(scene, "existing", np.zeros((2, 2, 2), np.float32), spacing=(9.0, 9.0, 9.0))
    nodes_before = scene.GetNumberOfNodes()
    result = run_job(NodeDenoiseJob(node, DenoiseConfig(), output_node=existing, worker=fake_worker_command("ok"), temp_parent=tmp_path))
    assert result.output_node is existing and result.residual_node is None and result.uncertainty_node is None
    assert scene.GetNumberOfNodes() == nodes_before
    assert np.array_equal(ijk_to_ras_array(existing), ijk_to_ras_array(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(existing), array * 0.5)

    # An existing uncertainty node is filled as well (choosing one asks for the uncertainty).
    spread = add_volume(scene, "spread", np.zeros((2, 2, 2), np.float32))
    config = DenoiseConfig.for_method("n2v", prediction={"tta": True})
    result = run_job(NodeDenoiseJob(node, config, uncertainty_node=spread, worker=fake_worker_command("ok"), temp_parent=tmp_path))
    assert result.uncertainty_node is spread and result.residual_node is None
    assert np.array_equal(ijk_to_ras_array(spread), ijk_to_ras_array(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(spread), np.abs(array) * 0.25)


def test_left_handed_nifti_loaded_by_slicer_round_trips(scene, tmp_path):
    nibabel = pytest.importorskip("nibabel")
    data = np.random.default_rng(3).normal(50.0, 5.0, (8, 7, 6)).astype(np.float32)  # nibabel order (i, j, k)
    affine = np.array([[-1.5, 0, 0, 30.0], [0, 1.2, 0, -10.0], [0, 0, 2.0, 4.0], [0, 0, 0, 1]])
    assert np.linalg.det(affine[:3, :3]) < 0  # left-handed: the case Slicer flips on read
    nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / "left.nii.gz")

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "left")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(tmp_path / "left.nii.gz"))
    assert storage.ReadData(node)
    node.CreateDefaultDisplayNodes()
    assert np.linalg.det(ijk_to_ras_array(node)[:3, :3]) > 0  # Slicer made it right-handed...
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), data.T[::-1])  # ...by flipping K

    work = tmp_path / "work"
    result = run_job(NodeDenoiseJob(node, DenoiseConfig(), worker=fake_worker_command("ok"), temp_parent=work))
    assert np.array_equal(ijk_to_ras_array(result.output_node), ijk_to_ras_array(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(result.output_node), slicer.util.arrayFromVolume(node) * 0.5)
    # Every voxel is where nibabel says it is.
    for i, j, k in [(0, 0, 0), (7, 6, 5), (3, 1, 4)]:
        ras = affine @ np.array([i, j, k, 1.0])
        assert world_value(result.output_node, ras[:3]) == pytest.approx(data[i, j, k] * 0.5)


def test_left_handed_node_round_trips_through_the_worker_files(scene, tmp_path):
    array = noisy_array()
    node = add_volume(scene, "left", array, spacing=(1.0, 2.0, 3.0), origin=(10.0, 20.0, 30.0), directions=LEFT_HANDED)
    result = run_job(NodeDenoiseJob(node, DenoiseConfig(), worker=fake_worker_command("ok"), temp_parent=tmp_path))
    assert np.array_equal(ijk_to_ras_array(result.output_node), ijk_to_ras_array(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(result.output_node), array * 0.5)


def test_cancel_mid_run_leaves_the_scene_and_input_untouched(scene, tmp_path):
    array = noisy_array()
    node = add_volume(scene, "input", array)
    existing = add_volume(scene, "existing output", np.full((2, 2, 2), 7.0, np.float32))
    nodes_before = scene.GetNumberOfNodes()
    job = NodeDenoiseJob(
        node, DenoiseConfig(), output_node=existing, compute_residual=True, worker=fake_worker_command("hang"), temp_parent=tmp_path
    )
    job.start()
    deadline = time.monotonic() + 20
    while not any(event.stage == "training" for event in job.poll()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    job.cancel()
    with pytest.raises(Cancelled):
        job.finish()
    assert scene.GetNumberOfNodes() == nodes_before
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(existing), np.full((2, 2, 2), 7.0))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mode, message",
    [("crash", CRASH_MESSAGE), ("error", ERROR_MESSAGE)],
)
def test_failing_worker_surfaces_its_message_and_leaves_the_scene_unchanged(scene, tmp_path, mode, message):
    array = noisy_array()
    node = add_volume(scene, "input", array)
    existing = add_volume(scene, "existing output", np.full((2, 2, 2), 7.0, np.float32))
    nodes_before = scene.GetNumberOfNodes()
    job = NodeDenoiseJob(node, DenoiseConfig(), output_node=existing, worker=fake_worker_command(mode), temp_parent=tmp_path)
    with pytest.raises(WorkerError) as failure:
        run_job(job)
    assert str(failure.value) == message
    assert scene.GetNumberOfNodes() == nodes_before
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(existing), np.full((2, 2, 2), 7.0))
    assert list(tmp_path.iterdir()) == []


def test_job_refuses_bad_nodes_before_starting_anything(scene, tmp_path):
    node = add_volume(scene, "input", noisy_array())
    labels = add_volume(scene, "labels", np.ones((3, 4, 5), np.int16), node_class="vtkMRMLLabelMapVolumeNode")
    other = add_volume(scene, "other", noisy_array())
    nodes_before = scene.GetNumberOfNodes()
    with_tta = DenoiseConfig.for_method("n2v", prediction={"tta": True})
    for kwargs, error, words in [
        ({"input_node": labels}, InputError, "label map"),
        ({"input_node": node, "output_node": node}, InputError, "must differ from the input"),
        ({"input_node": node, "output_node": labels}, InputError, "must be a scalar volume"),
        ({"input_node": node, "uncertainty_node": labels, "config": with_tta}, InputError, "uncertainty volume 'labels' must be a scalar"),
        ({"input_node": node, "residual_node": other, "uncertainty_node": other, "config": with_tta}, InputError,
         "residual volume and the uncertainty volume must be different"),
        ({"input_node": node, "output_node": other, "uncertainty_node": other, "config": with_tta}, InputError,
         "output volume and the uncertainty volume must be different"),
        ({"input_node": node, "compute_uncertainty": True}, ValueError, "turn test-time augmentation on"),
    ]:  # fmt: skip
        kwargs.setdefault("config", DenoiseConfig())
        job = NodeDenoiseJob(worker=fake_worker_command("ok"), temp_parent=tmp_path, **kwargs)
        with pytest.raises(error, match=words):
            job.start()
        assert job.run is None
    assert scene.GetNumberOfNodes() == nodes_before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "method, model",
    [("r2r", {}), ("blindspot", {"base_channels": 4})],
    ids=["r2r-default", "blindspot-2d"],
)
def test_real_cli_denoises_a_tiny_volume_with_residual_and_uncertainty(scene, tmp_path, method, model):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[:24, :24, :24]
    clean = 100.0 * ((k - 12) ** 2 + (j - 12) ** 2 + (i - 12) ** 2 < 49)
    noisy = (clean + rng.normal(0.0, 20.0, clean.shape)).astype(np.float32)
    node = add_volume(scene, "tiny", noisy, spacing=(0.9, 0.9, 1.4), origin=(3.0, -4.0, 5.0), directions=OBLIQUE)
    # Tiny and brief (R2R keeps the pretrained prior's network); patches of 16 suit both networks' two
    # poolings. One thread keeps the time steady on a busy two-core machine.
    config = DenoiseConfig.for_method(
        method,
        model=model,
        training={"budget_seconds": 2.0, "patch_size": 16, "batch_size": 4, "steps_per_epoch": 5, "max_epochs": 1, "threads": 1},
        prediction={"tile_size": 24, "tile_overlap": 4, "tta": True},
        noise={"model": "gaussian"},
    )
    job = NodeDenoiseJob(node, config, compute_residual=True, compute_uncertainty=True, temp_parent=tmp_path)
    stages = []
    job.start()
    assert job.wait(on_event=lambda event: stages.append(event.stage)) == "succeeded", job.run.details
    result = job.finish()
    assert stages[-1] == "done" and "training" in stages and "predicting" in stages
    outputs = (result.output_node, result.residual_node, result.uncertainty_node)
    for output in outputs:
        assert np.array_equal(ijk_to_ras_array(output), ijk_to_ras_array(node))
    denoised, residual, uncertainty = (slicer.util.arrayFromVolume(output) for output in outputs)
    assert denoised.shape == uncertainty.shape == noisy.shape and np.isfinite(denoised).all()
    np.testing.assert_allclose(denoised + residual, noisy, atol=1e-3)
    # The spread across the test-time augmentations: finite, never negative, not all zero.
    assert np.isfinite(uncertainty).all() and uncertainty.min() >= 0.0 and uncertainty.max() > 0.0
    assert result.summary["method"] == method and result.summary["noise_model"] == "gaussian"
    assert list(tmp_path.iterdir()) == []

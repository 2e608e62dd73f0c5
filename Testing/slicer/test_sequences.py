"""Sequences (4D) in real MRML (the slicer-core wheel): sequence -> 4D volume -> new sequence keeps the
frame count, index values, index name/unit/type, geometry and frame values; frames on other grids are
refused; 4D NIfTI loaded the way Slicer loads it keeps every voxel where nibabel puts it; denoising
and saved-model jobs on sequences and volumes through the background worker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.core.progress import Cancelled
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume_io import read_volume, write_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.slicer.denoise_job import NodeDenoiseJob
from DeepDenoiseLib.slicer.nodes import check_scalar_volume, volume_from_node
from DeepDenoiseLib.slicer.sequences import (
    SequenceDenoiseJob,
    add_browser,
    add_sequence_from_array,
    browser_of,
    check_volume_sequence,
    frames_of,
    make_job,
    shown_node,
    volume_from_sequence,
)
from Testing.support import fake_worker_command
from Testing.support.jobs import LEFT_HANDED, OBLIQUE, run_job
from Testing.support.slicer_scene import add_volume, ijk_to_ras_array, slicer

INDEX_VALUES = ["0", "1.5", "4.25"]  # uneven steps: kept as they are, not resampled


def frame_arrays(count: int = 3, shape=(5, 6, 7), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 10.0, (count, *shape)).astype(np.float32)


def add_sequence(scene, name: str, arrays: np.ndarray, values=INDEX_VALUES, directions=OBLIQUE, spacing=(0.7, 1.1, 2.5)):
    """A sequence of scalar volumes on one oblique grid, with a browser showing it, as Slicer loads fMRI."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    for array, value in zip(arrays, values):
        frame = slicer.vtkMRMLScalarVolumeNode()
        slicer.util.updateVolumeFromArray(frame, np.ascontiguousarray(array))
        frame.SetSpacing(*spacing)
        frame.SetOrigin(10.0, -20.0, 5.0)
        matrix = np.eye(4)
        matrix[:3, :3] = directions
        frame.SetIJKToRASDirectionMatrix(slicer.util.vtkMatrixFromArray(matrix))
        sequence.SetDataNodeAtValue(frame, value)
    add_browser(scene, [sequence], f"{name} browser")
    hierarchy = scene.GetSubjectHierarchyNode()
    hierarchy.CreateItem(hierarchy.GetSceneItemID(), sequence)
    return sequence


def index_values(sequence) -> list[str]:
    return [sequence.GetNthIndexValue(index) for index in range(sequence.GetNumberOfDataNodes())]


def assert_same_sequence_layout(result, source) -> None:
    """Same frame count, index values, index name/unit/type and bit-identical IJK-to-RAS per frame."""
    assert index_values(result) == index_values(source)
    assert (result.GetIndexName(), result.GetIndexUnit(), result.GetIndexType()) == (
        source.GetIndexName(), source.GetIndexUnit(), source.GetIndexType()
    )  # fmt: skip
    for frame in frames_of(result):
        assert np.array_equal(ijk_to_ras_array(frame), ijk_to_ras_array(source.GetNthDataNode(0)))


# --- Sequence <-> 4D volume ----------------------------------------------------------------------------


def test_sequence_to_volume_to_new_sequence_is_an_identity(scene) -> None:
    arrays = frame_arrays()
    source = add_sequence(scene, "fMRI", arrays)
    volume = volume_from_sequence(source)
    assert volume.array.shape == (3, 5, 6, 7) and np.array_equal(volume.array, arrays)
    first = volume_from_node(source.GetNthDataNode(0))  # the 3D bridge's geometry of frame 0
    assert volume.spacing == first.spacing and volume.origin == first.origin
    assert np.array_equal(volume.direction, first.direction)
    assert volume.metadata["index_values"] == INDEX_VALUES and volume.metadata["index_name"] == "time"
    assert "time_spacing" not in volume.metadata  # uneven steps have no single time step

    copy = add_sequence_from_array(scene, "fMRI copy", volume.array, source)
    assert copy.GetScene() is scene and copy.GetName() == "fMRI copy"
    assert_same_sequence_layout(copy, source)
    np.testing.assert_array_equal(volume_from_sequence(copy).array, arrays)
    browser = add_browser(scene, [copy], "copy browser")
    proxy = browser.GetProxyNode(copy)
    assert browser_of(copy) is browser and proxy is not None
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(proxy), arrays[0])
    browser.SetSelectedItemNumber(2)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(browser.GetProxyNode(copy)), arrays[2])


def test_even_numeric_index_gives_the_time_step_a_4d_nifti_stores(scene, tmp_path) -> None:
    source = add_sequence(scene, "even", frame_arrays(), values=["2", "4.5", "7"])
    volume = volume_from_sequence(source)
    assert volume.metadata["time_spacing"] == 2.5 and volume.metadata["time_origin"] == 2.0
    back = read_volume(write_volume(volume, tmp_path / "even.nii.gz"), allow_4d=True)
    assert back.metadata["time_spacing"] == 2.5 and np.array_equal(back.array, volume.array)


def test_sequences_that_are_not_one_grid_of_scalar_volumes_are_refused(scene) -> None:
    sequence = add_sequence(scene, "mixed", frame_arrays(2))
    other = slicer.vtkMRMLScalarVolumeNode()
    slicer.util.updateVolumeFromArray(other, frame_arrays(1, shape=(5, 6, 8))[0])
    sequence.SetDataNodeAtValue(other, "9")
    with pytest.raises(InputError, match="frame 2 .*index value 9.* another grid.*resample"):
        volume_from_sequence(sequence)

    shifted = add_sequence(scene, "shifted", frame_arrays(2))
    moved = slicer.vtkMRMLScalarVolumeNode()
    moved.Copy(shifted.GetNthDataNode(1))
    moved.SetOrigin(10.5, -20.0, 5.0)
    shifted.SetDataNodeAtValue(moved, "1.5")
    with pytest.raises(InputError, match="another grid"):
        check_volume_sequence(shifted)

    labels = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "labels")
    label = slicer.vtkMRMLLabelMapVolumeNode()
    slicer.util.updateVolumeFromArray(label, np.ones((3, 4, 5), np.int16))
    labels.SetDataNodeAtValue(label, "0")
    with pytest.raises(InputError, match="not a scalar volume"):
        check_volume_sequence(labels)
    with pytest.raises(InputError, match="holds no frames"):
        check_volume_sequence(scene.AddNewNodeByClass("vtkMRMLSequenceNode", "empty"))
    with pytest.raises(InputError, match="not a sequence"):
        check_volume_sequence(add_volume(scene, "volume", frame_arrays(1)[0]))
    # The 3D bridge points sequences and their shown frames to the sequence path.
    with pytest.raises(InputError, match="sequence.*one model for all frames"):
        check_scalar_volume(sequence)
    proxy = browser_of(sequence).GetProxyNode(sequence)
    with pytest.raises(InputError, match="current frame of the sequence.*choose the sequence itself"):
        check_scalar_volume(proxy)


def test_4d_nifti_loaded_as_slicer_does_keeps_every_voxel_where_nibabel_puts_it(scene) -> None:
    nibabel = pytest.importorskip("nibabel")
    path = Path(os.path.dirname(nibabel.__file__)) / "tests" / "data" / "functional.nii"
    if not path.is_file():
        pytest.skip("nibabel's test data lacks functional.nii")
    image = nibabel.load(path)
    assert np.linalg.det(image.affine[:3, :3]) < 0  # left-handed: Slicer flips K on read
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "functional")
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(sequence)
    volume = volume_from_sequence(sequence)
    assert volume.array.shape == (20, 3, 21, 17)
    data = np.asarray(image.get_fdata())
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    for t, (i, j, k) in [(0, (0, 0, 0)), (7, (16, 20, 2)), (19, (3, 11, 1))]:
        # The voxel (i, j, k) of the file, found through our Volume's LPS geometry.
        world_ras = image.affine @ np.array([i, j, k, 1.0])
        world_lps = lps_to_ras @ world_ras[:3]
        index = np.linalg.solve(volume.direction * np.asarray(volume.spacing), world_lps - np.asarray(volume.origin))
        ii, jj, kk = (int(v) for v in np.rint(index))
        assert np.allclose(index, (ii, jj, kk), atol=1e-4)
        assert volume.array[t, kk, jj, ii] == pytest.approx(data[i, j, k, t], rel=1e-6)


# --- Jobs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("directions", [OBLIQUE, LEFT_HANDED], ids=["oblique", "left-handed"])
def test_sequence_job_adds_new_sequences_with_the_inputs_layout(scene, tmp_path, directions) -> None:
    arrays = frame_arrays()
    source = add_sequence(scene, "fMRI", arrays, directions=directions)
    input_proxy = browser_of(source).GetProxyNode(source)
    input_proxy.GetDisplayNode().SetAutoWindowLevel(False)
    input_proxy.GetDisplayNode().SetWindowLevel(40.0, 100.0)
    config = DenoiseConfig.for_method("n2v", prediction={"tta": True})
    job = SequenceDenoiseJob(
        source, config, compute_residual=True, compute_uncertainty=True, worker=fake_worker_command("ok"), temp_parent=tmp_path
    )
    result = run_job(job)

    assert result.output_node.GetName() == "fMRI denoised" and result.summary["frames"] == 3
    outputs = {"output": result.output_node, "residual": result.residual_node, "uncertainty": result.uncertainty_node}
    expected = {"output": arrays * 0.5, "residual": arrays - arrays * 0.5, "uncertainty": np.abs(arrays) * 0.25}
    for name, sequence in outputs.items():
        assert sequence.IsA("vtkMRMLSequenceNode")
        assert_same_sequence_layout(sequence, source)
        np.testing.assert_array_equal(volume_from_sequence(sequence).array, expected[name])
    browser = result.browser_node
    assert browser.GetMasterSequenceNode() is result.output_node and browser_of(result.output_node) is browser
    assert shown_node(result.output_node) is browser.GetProxyNode(result.output_node)
    assert shown_node(source) is input_proxy and shown_node(input_proxy) is input_proxy
    assert browser.IsSynchronizedSequenceNode(result.residual_node.GetID()) and browser.IsSynchronizedSequenceNode(
        result.uncertainty_node.GetID()
    )
    proxy = browser.GetProxyNode(result.output_node)
    assert (proxy.GetDisplayNode().GetWindow(), proxy.GetDisplayNode().GetLevel()) == (40.0, 100.0)
    np.testing.assert_array_equal(volume_from_sequence(source).array, arrays)  # the input is untouched
    assert list(tmp_path.iterdir()) == []


def test_sequence_job_refusals_and_cancel_leave_the_scene_unchanged(scene, tmp_path) -> None:
    source = add_sequence(scene, "fMRI", frame_arrays())
    volume = add_volume(scene, "volume", frame_arrays(1)[0])
    nodes_before = scene.GetNumberOfNodes()
    for kwargs, error, words in [
        ({"output_node": volume}, InputError, "new sequences"),
        ({"compute_uncertainty": True}, ValueError, "turn test-time augmentation on"),
        ({"config": None}, ValueError, "needs a configuration, or a saved model"),
        ({"model_path": "m.safetensors", "save_model_path": "n.safetensors"}, ValueError, "trains none"),
    ]:  # fmt: skip
        kwargs.setdefault("config", DenoiseConfig())
        job = SequenceDenoiseJob(source, worker=fake_worker_command("ok"), temp_parent=tmp_path, **kwargs)
        with pytest.raises(error, match=words):
            job.start()
    with pytest.raises(InputError, match="sequence"):
        NodeDenoiseJob(source, DenoiseConfig(), worker=fake_worker_command("ok"), temp_parent=tmp_path).start()
    assert type(make_job(source, DenoiseConfig())) is SequenceDenoiseJob
    assert type(make_job(volume, DenoiseConfig(), compute_residual=True)) is NodeDenoiseJob

    job = SequenceDenoiseJob(source, DenoiseConfig(), compute_residual=True, worker=fake_worker_command("hang"), temp_parent=tmp_path)
    job.start()
    deadline = time.monotonic() + 20
    while not any(event.stage == "training" for event in job.poll()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    job.cancel()
    with pytest.raises(Cancelled):
        job.finish()
    assert scene.GetNumberOfNodes() == nodes_before
    assert list(tmp_path.iterdir()) == []


def test_apply_jobs_run_the_saved_model_command(scene, tmp_path) -> None:
    node = add_volume(scene, "MRHead", frame_arrays(1)[0], directions=OBLIQUE)
    config = DenoiseConfig.for_method("n2v", prediction={"tta": True}, training={"device": "cpu"})
    job = NodeDenoiseJob(
        node,
        config,
        compute_uncertainty=True,
        model_path=tmp_path / "m.safetensors",
        worker=fake_worker_command("ok"),
        temp_parent=tmp_path / "w",
    )
    result = run_job(job)
    assert result.summary == {"seconds": 0.1, "model": str(tmp_path / "m.safetensors"), "tta": True, "device": "cpu"}
    assert np.array_equal(ijk_to_ras_array(result.output_node), ijk_to_ras_array(node))
    assert result.uncertainty_node is not None

    source = add_sequence(scene, "fMRI", frame_arrays())
    result = run_job(SequenceDenoiseJob(source, None, model_path="brain", worker=fake_worker_command("ok"), temp_parent=tmp_path / "w"))
    assert result.summary["model"] == "brain" and result.summary["tta"] is False and result.summary["device"] is None
    assert_same_sequence_layout(result.output_node, source)

    job = NodeDenoiseJob(
        node, config, save_model_path=tmp_path / "new.safetensors", worker=fake_worker_command("ok"), temp_parent=tmp_path / "w"
    )
    assert run_job(job).summary["save_model"] == str(tmp_path / "new.safetensors")
    # The worker runs in its temporary folder: relative paths reach it made absolute, names as names.
    job = NodeDenoiseJob(node, config, save_model_path="relative.safetensors", worker=fake_worker_command("ok"), temp_parent=tmp_path / "w")
    assert run_job(job).summary["save_model"] == str(Path.cwd() / "relative.safetensors")
    job = NodeDenoiseJob(node, config, save_model_path="my model", worker=fake_worker_command("ok"), temp_parent=tmp_path / "w")
    assert run_job(job).summary["save_model"] == "my model"


def test_real_worker_denoises_a_tiny_sequence_saves_its_model_and_applies_it_to_a_volume(scene, tmp_path) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[:8, :24, :24]
    clean = 100.0 * ((k - 4) ** 2 + (j - 12) ** 2 + (i - 12) ** 2 < 40)
    arrays = np.stack([clean + rng.normal(0.0, 20.0, clean.shape) for _ in range(3)]).astype(np.float32)
    source = add_sequence(scene, "tiny fMRI", arrays, spacing=(1.0, 1.0, 2.0))
    config = DenoiseConfig.for_method(
        "blindspot",
        model={"base_channels": 4, "depth": 1, "context_slices": 1},
        training={
            "budget_seconds": None,
            "patch_size": 16,
            "batch_size": 2,
            "steps_per_epoch": 4,
            "max_epochs": 1,
            "threads": 1,
            "device": "cpu",
        },
        noise={"model": "gaussian"},
    )
    model_path = tmp_path / "tiny.safetensors"
    job = SequenceDenoiseJob(source, config, compute_residual=True, save_model_path=model_path, temp_parent=tmp_path / "w")
    job.start()
    assert job.wait() == "succeeded", job.run.details
    result = job.finish()
    assert result.summary["frames"] == 3 and result.summary["training_steps"] == 4  # one training for 3 frames
    assert_same_sequence_layout(result.output_node, source)
    denoised = volume_from_sequence(result.output_node).array
    residual = volume_from_sequence(result.residual_node).array
    assert denoised.shape == arrays.shape and np.all(np.isfinite(denoised))
    np.testing.assert_allclose(denoised + residual, arrays, atol=1e-3)
    assert model_path.is_file()

    node = add_volume(scene, "another", arrays[1], spacing=(0.9, 0.9, 1.8), directions=OBLIQUE)
    job = NodeDenoiseJob(node, None, model_path=model_path, temp_parent=tmp_path / "w")
    job.start()
    assert job.wait() == "succeeded", job.run.details
    applied = job.finish()
    assert applied.summary["training_steps"] == 0 and applied.summary["model"] == str(model_path)
    assert np.array_equal(ijk_to_ras_array(applied.output_node), ijk_to_ras_array(node))
    assert np.all(np.isfinite(slicer.util.arrayFromVolume(applied.output_node)))
    assert list((tmp_path / "w").iterdir()) == []

"""Noise2Noise on two volume nodes (denoise_job.NodeDenoiseJob with a second acquisition), against
real Slicer MRML (the slicer-core wheel): mismatched grids and settings are refused before anything
runs, and a real run on a left-handed oblique grid puts the result on the input's grid."""

from __future__ import annotations

import numpy as np
import pytest

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.slicer.denoise_job import NodeDenoiseJob
from DeepDenoiseLib.slicer.worker_commands import denoise_command, noise2noise_command, supervised_command
from Testing.support import fake_worker_command
from Testing.support.jobs import run_job
from Testing.support.slicer_scene import add_volume, ijk_to_ras_array, slicer

# An oblique grid whose directions form a left-handed frame: Slicer flips K when reading such files.
LEFT_HANDED_OBLIQUE = np.array([[0.0, 0.0, -1.0], [0.8, -0.6, 0.0], [0.6, 0.8, 0.0]])
assert np.linalg.det(LEFT_HANDED_OBLIQUE) < 0
GEOMETRY = dict(spacing=(0.9, 0.9, 1.4), origin=(3.0, -4.0, 5.0), directions=LEFT_HANDED_OBLIQUE)


def acquisition(seed: int, shape=(16, 24, 24)) -> np.ndarray:
    k, j, i = np.mgrid[: shape[0], : shape[1], : shape[2]]
    clean = 100.0 * ((k - 8) ** 2 + (j - 12) ** 2 + (i - 12) ** 2 < 40)
    return (clean + np.random.default_rng(seed).normal(0.0, 20.0, shape)).astype(np.float32)


def test_the_commands_for_pairs_are_n2n_and_supervised() -> None:
    command = noise2noise_command(["a.nrrd", "b.nrrd"], "out.nrrd", "c.json", residual_path="r.nrrd", worker=["w"])
    assert command == ["w", "n2n", "a.nrrd", "b.nrrd", "out.nrrd", "--config", "c.json", "--progress", "json", "--residual", "r.nrrd"]
    assert noise2noise_command(["s.nii"], "o.nii", "c.json", worker=["w"])[:4] == ["w", "n2n", "s.nii", "o.nii"]
    with pytest.raises(ValueError, match="two acquisitions or one 4D series"):
        noise2noise_command(["a", "b", "c"], "o", "c.json")
    assert denoise_command("a.nrrd", "out.nrrd", "c.json", worker=["w"])[:3] == ["w", "denoise", "a.nrrd"]
    command = supervised_command("n.nrrd", "c.nrrd", "in.nrrd", "out.nrrd", "c.json", uncertainty_path="u.nrrd", worker=["w"])
    assert command == ["w", "supervised", "--noisy", "n.nrrd", "--clean", "c.nrrd", "--apply-to", "in.nrrd", "out.nrrd",
                       "--config", "c.json", "--progress", "json", "--uncertainty", "u.nrrd"]  # fmt: skip


def test_mismatched_acquisitions_and_settings_are_refused_before_anything_runs(scene, tmp_path) -> None:
    first = add_volume(scene, "first", acquisition(0), **GEOMETRY)
    moved = add_volume(scene, "moved", acquisition(1), **dict(GEOMETRY, origin=(3.0, -4.0, 6.0)))
    cropped = add_volume(scene, "cropped", acquisition(1)[:, :20], **GEOMETRY)
    second = add_volume(scene, "second", acquisition(1), **GEOMETRY)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    moved_by_transform = add_volume(scene, "under transform", acquisition(2), **GEOMETRY)
    moved_by_transform.SetAndObserveTransformNodeID(transform.GetID())
    n2n = DenoiseConfig.for_method("noise2noise")
    supervised = DenoiseConfig.for_method("supervised")
    nodes_before = scene.GetNumberOfNodes()
    for kwargs, error, words in [
        ({"second_input_node": moved}, InputError, "same voxel grid"),
        ({"second_input_node": cropped}, InputError, "same voxel grid"),
        ({"second_input_node": first}, InputError, "another volume"),
        ({"second_input_node": moved_by_transform}, InputError, "different transforms"),
        ({"second_input_node": second, "config": DenoiseConfig()}, ValueError, "for method noise2noise"),
        ({"config": n2n}, ValueError, "give the second acquisition"),
        ({"config": DenoiseConfig.for_method("supervised")}, ValueError, "pairs of volumes"),
        ({"second_input_node": second, "output_node": second}, InputError, "must differ from the input volumes"),
        ({"second_input_node": second, "save_model_path": tmp_path / "m.safetensors"}, ValueError, "keeps no model"),
        ({"second_input_node": second, "config": None, "model_path": tmp_path / "m.safetensors"}, ValueError,
         "a saved model denoises one volume"),
        # Supervised: a (noisy, clean) pair on one grid; the input's grid may differ.
        ({"config": supervised, "training_noisy_node": cropped, "training_clean_node": second}, InputError, "same voxel grid"),
        ({"config": supervised, "training_noisy_node": second, "training_clean_node": second}, InputError, "two different volumes"),
        ({"config": supervised, "training_noisy_node": second}, ValueError, "its clean partner"),
        ({"training_noisy_node": moved, "training_clean_node": second, "second_input_node": second}, ValueError,
         "a training pair is for method supervised"),
        ({"config": supervised, "training_noisy_node": moved, "training_clean_node": cropped, "residual_node": cropped},
         InputError, "must differ from the input volumes"),
    ]:  # fmt: skip
        kwargs.setdefault("config", n2n)
        job = NodeDenoiseJob(first, worker=["unused"], temp_parent=tmp_path, **kwargs)
        with pytest.raises(error, match=words):
            job.start()
        assert job.run is None
    assert scene.GetNumberOfNodes() == nodes_before
    assert list(tmp_path.iterdir()) == []


def test_paired_jobs_send_every_volume_to_the_worker(scene, tmp_path) -> None:
    first_array, second_array = acquisition(0), acquisition(1)
    first = add_volume(scene, "scan 1", first_array, **GEOMETRY)
    second = add_volume(scene, "scan 2", second_array, **GEOMETRY)
    n2n = DenoiseConfig.for_method("noise2noise", model={"architecture": "dae"}, prediction={"tta": True})
    job = NodeDenoiseJob(first, n2n, compute_residual=True, compute_uncertainty=True, second_input_node=second,
                         worker=fake_worker_command(), temp_parent=tmp_path / "work")  # fmt: skip
    result = run_job(job)
    mean = 0.5 * (first_array + second_array)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(result.output_node), mean * 0.5, rtol=1e-6)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(result.residual_node), mean * 0.5, rtol=1e-6)
    assert result.uncertainty_node is not None and np.array_equal(ijk_to_ras_array(result.output_node), ijk_to_ras_array(first))
    assert (result.summary["acquisitions"], result.summary["architecture"]) == (2, "dae")

    # Supervised: trained on a pair on another grid than the input's, applied to the input.
    noisy = add_volume(scene, "low dose", acquisition(2, shape=(8, 10, 12)) + 7.0, spacing=(2.0, 2.0, 3.0))
    clean = add_volume(scene, "full dose", np.full((8, 10, 12), 3.0, np.float32), spacing=(2.0, 2.0, 3.0))
    config = DenoiseConfig.for_method("supervised", training={"adversarial_weight": 0.1})
    job = NodeDenoiseJob(first, config, training_noisy_node=noisy, training_clean_node=clean, worker=fake_worker_command(),
                         temp_parent=tmp_path / "work")  # fmt: skip
    result = run_job(job)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(result.output_node), first_array * 0.5, rtol=1e-6)
    assert np.array_equal(ijk_to_ras_array(result.output_node), ijk_to_ras_array(first))
    means = result.summary["training_means"]
    assert means == pytest.approx([float(slicer.util.arrayFromVolume(noisy).mean()), 3.0], rel=1e-5)
    assert result.summary["method"] == "supervised" and result.summary["adversarial_weight"] == 0.1
    assert list((tmp_path / "work").iterdir()) == []


def test_paired_methods_on_a_sequence(scene, tmp_path) -> None:
    from DeepDenoiseLib.slicer.sequences import SequenceDenoiseJob, add_browser, volume_from_sequence

    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "fMRI")
    frames = np.stack([acquisition(seed, shape=(4, 6, 8)) for seed in range(3)])
    for index, frame_array in enumerate(frames):
        frame = slicer.vtkMRMLScalarVolumeNode()
        slicer.util.updateVolumeFromArray(frame, frame_array)
        sequence.SetDataNodeAtValue(frame, str(index))
    add_browser(scene, [sequence], "fMRI browser")
    # Noise2Noise pairs neighbouring frames: the series alone goes to the worker.
    result = run_job(
        SequenceDenoiseJob(sequence, DenoiseConfig.for_method("noise2noise"), worker=fake_worker_command(), temp_parent=tmp_path)
    )
    assert result.summary["acquisitions"] == 1 and result.summary["frames"] == 3
    np.testing.assert_allclose(volume_from_sequence(result.output_node).array, frames * 0.5, rtol=1e-6)
    noisy = add_volume(scene, "noisy", acquisition(4))
    clean = add_volume(scene, "clean", acquisition(5))
    job = SequenceDenoiseJob(sequence, DenoiseConfig.for_method("supervised"), training_noisy_node=noisy,
                             training_clean_node=clean, worker=fake_worker_command(), temp_parent=tmp_path)  # fmt: skip
    result = run_job(job)
    assert result.summary["frames"] == 3 and len(result.summary["training_means"]) == 2
    job = SequenceDenoiseJob(
        sequence, DenoiseConfig.for_method("noise2noise"), second_input_node=noisy, worker=fake_worker_command(), temp_parent=tmp_path
    )
    with pytest.raises(ValueError, match="pairs its neighbouring frames"):
        job.start()
    assert list(tmp_path.iterdir()) == []


def test_real_noise2noise_on_two_nodes_keeps_the_input_grid(scene, tmp_path) -> None:
    pytest.importorskip("torch")
    first_array, second_array = acquisition(0), acquisition(1)
    first = add_volume(scene, "scan 1", first_array, **GEOMETRY)
    second = add_volume(scene, "scan 2", second_array, **GEOMETRY)
    config = DenoiseConfig.for_method(
        "noise2noise",
        model={"base_channels": 4},
        training={"budget_seconds": None, "patch_size": 16, "batch_size": 2, "steps_per_epoch": 5, "max_epochs": 1, "threads": 1},
        noise={"model": "gaussian"},
    )
    job = NodeDenoiseJob(first, config, compute_residual=True, second_input_node=second, temp_parent=tmp_path)
    job.start()
    assert job.wait() == "succeeded", job.run.details
    result = job.finish()
    for output in (result.output_node, result.residual_node):
        assert np.array_equal(ijk_to_ras_array(output), ijk_to_ras_array(first))
    denoised, residual = (slicer.util.arrayFromVolume(node) for node in (result.output_node, result.residual_node))
    assert denoised.shape == first_array.shape and np.isfinite(denoised).all()
    # voxel for voxel on the input's grid: the residual is the acquisitions' mean minus the result
    np.testing.assert_allclose(denoised + residual, 0.5 * (first_array + second_array), atol=1e-3)
    assert result.summary["method"] == "noise2noise" and result.summary["acquisitions"] == 2
    assert result.output_node.GetName() == "scan 1 denoised"
    assert list(tmp_path.iterdir()) == []

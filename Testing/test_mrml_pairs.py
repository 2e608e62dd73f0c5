"""Noise2Noise on two volume nodes (mrml_bridge.NodeDenoiseJob with a second acquisition), against
real Slicer MRML (the slicer-core wheel): mismatched grids and settings are refused before anything
runs, and a real run on a left-handed oblique grid puts the result on the input's grid."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

TESTING = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTING))
from slicer_scene import add_volume, headless_scene, ijk_to_ras_array, slicer  # noqa: E402

from DeepDenoiseLib.background import denoise_command  # noqa: E402
from DeepDenoiseLib.config import DenoiseConfig  # noqa: E402
from DeepDenoiseLib.mrml_bridge import NodeDenoiseJob  # noqa: E402
from DeepDenoiseLib.validation import InputError  # noqa: E402

# An oblique grid whose directions form a left-handed frame: Slicer flips K when reading such files.
LEFT_HANDED_OBLIQUE = np.array([[0.0, 0.0, -1.0], [0.8, -0.6, 0.0], [0.6, 0.8, 0.0]])
assert np.linalg.det(LEFT_HANDED_OBLIQUE) < 0
GEOMETRY = dict(spacing=(0.9, 0.9, 1.4), origin=(3.0, -4.0, 5.0), directions=LEFT_HANDED_OBLIQUE)


@pytest.fixture
def scene():
    return headless_scene()


def acquisition(seed: int, shape=(16, 24, 24)) -> np.ndarray:
    k, j, i = np.mgrid[: shape[0], : shape[1], : shape[2]]
    clean = 100.0 * ((k - 8) ** 2 + (j - 12) ** 2 + (i - 12) ** 2 < 40)
    return (clean + np.random.default_rng(seed).normal(0.0, 20.0, shape)).astype(np.float32)


def test_the_command_for_a_second_acquisition_is_n2n() -> None:
    command = denoise_command("a.nrrd", "out.nrrd", "c.json", residual_path="r.nrrd", worker=["w"], second_input_path="b.nrrd")
    assert command == ["w", "n2n", "a.nrrd", "b.nrrd", "out.nrrd", "--config", "c.json", "--progress", "json", "--residual", "r.nrrd"]
    assert denoise_command("a.nrrd", "out.nrrd", "c.json", worker=["w"])[:3] == ["w", "denoise", "a.nrrd"]


def test_mismatched_acquisitions_and_settings_are_refused_before_anything_runs(scene, tmp_path) -> None:
    first = add_volume(scene, "first", acquisition(0), **GEOMETRY)
    moved = add_volume(scene, "moved", acquisition(1), **dict(GEOMETRY, origin=(3.0, -4.0, 6.0)))
    cropped = add_volume(scene, "cropped", acquisition(1)[:, :20], **GEOMETRY)
    second = add_volume(scene, "second", acquisition(1), **GEOMETRY)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    moved_by_transform = add_volume(scene, "under transform", acquisition(2), **GEOMETRY)
    moved_by_transform.SetAndObserveTransformNodeID(transform.GetID())
    n2n = DenoiseConfig.for_method("noise2noise")
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
    ]:  # fmt: skip
        kwargs.setdefault("config", n2n)
        job = NodeDenoiseJob(first, worker=["unused"], temp_parent=tmp_path, **kwargs)
        with pytest.raises(error, match=words):
            job.start()
        assert job.run is None
    assert scene.GetNumberOfNodes() == nodes_before
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

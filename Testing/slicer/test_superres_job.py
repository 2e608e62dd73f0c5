"""The super-resolution bridge against real Slicer MRML (the slicer-core wheel): the finer grid's
IJK-to-RAS keeps orientation and field of view, and a job on a node runs the real worker (a tiny
self-supervised model) and puts the result on that grid, also for left-handed volumes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from DeepDenoiseLib.core.progress import Cancelled
from DeepDenoiseLib.core.settings import deep_merge
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.slicer.nodes import volume_from_node
from DeepDenoiseLib.slicer.settings import SuperResSettings
from DeepDenoiseLib.slicer.superres_job import NodeSuperResJob, fine_grid_ijk_to_ras, resolve_axis
from DeepDenoiseLib.slicer.worker_commands import superres_command
from DeepDenoiseLib.superres.config import SuperResConfig
from DeepDenoiseLib.superres.grid import on_fine_grid
from Testing.support.jobs import LEFT_HANDED, OBLIQUE
from Testing.support.phantoms import smooth_phantom
from Testing.support.slicer_scene import add_volume, ijk_to_ras_array, slicer

TINY = {
    "factor": 2,
    "mode": "self-supervised",
    "model": {"depth": 1, "base_channels": 8},
    "training": {"patch_size": [16, 16], "batch_size": 2, "max_steps": 2, "budget_seconds": None, "device": "cpu", "threads": 1},
    "sampling": {"steps": 2, "samples": 2, "patch_size": 16, "patch_overlap": 4},
}


def corners_ras(matrix: np.ndarray, shape_kji: tuple[int, int, int]) -> np.ndarray:
    """The 8 outer corners of the field of view (voxel index -0.5 and n - 0.5) in RAS."""
    shape_ijk = np.array(shape_kji[::-1], dtype=float)
    points = []
    for corner in np.ndindex(2, 2, 2):
        index = np.where(np.array(corner) == 1, shape_ijk - 0.5, -0.5)
        points.append((matrix @ np.append(index, 1.0))[:3])
    return np.array(points)


def thick_node(scene, directions=OBLIQUE, name="thick"):
    array = smooth_phantom((8, 24, 24), seed=4)
    return add_volume(scene, name, array, spacing=(0.8, 0.8, 3.2), origin=(10.0, -20.0, 5.0), directions=directions)


def run(job: NodeSuperResJob, timeout: float = 120.0):
    job.start()
    deadline = time.monotonic() + timeout
    while not job.finished:
        assert time.monotonic() < deadline, "the worker did not finish in time"
        job.poll()
        time.sleep(0.05)
    return job.finish()


@pytest.mark.parametrize("axis, factor", [("z", 4), ("x", 2), ("y", 3)])
def test_fine_grid_keeps_orientation_and_field_of_view_and_matches_the_library(scene, axis: str, factor: int) -> None:
    node = thick_node(scene)
    matrix = ijk_to_ras_array(node)
    fine = fine_grid_ijk_to_ras(matrix, factor, axis)
    shape = list(slicer.util.arrayFromVolume(node).shape)
    fine_shape = list(shape)
    fine_shape[2 - "xyz".index(axis)] *= factor
    np.testing.assert_allclose(corners_ras(fine, tuple(fine_shape)), corners_ras(matrix, tuple(shape)), atol=1e-9)
    # Same directions, the refined axis's spacing divided by the factor.
    index = "xyz".index(axis)
    for column in range(3):
        scale = factor if column == index else 1
        np.testing.assert_allclose(fine[:3, column] * scale, matrix[:3, column], atol=1e-12)
    # The library's fine grid (LPS) is the same grid.
    volume = volume_from_node(node)
    library = on_fine_grid(volume, np.zeros(fine_shape, np.float32), factor, axis)
    target = slicer.vtkMRMLScalarVolumeNode()
    from DeepDenoiseLib.slicer.nodes import update_node_from_volume

    update_node_from_volume(target, library)
    np.testing.assert_allclose(ijk_to_ras_array(target), fine, atol=1e-9)


@pytest.mark.parametrize("directions", [OBLIQUE, LEFT_HANDED], ids=["oblique", "left-handed"])
def test_a_job_puts_the_result_and_its_uncertainty_on_the_fine_grid(scene, directions) -> None:
    node = thick_node(scene, directions)
    before = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    job = NodeSuperResJob(node, SuperResConfig.from_dict(TINY), compute_uncertainty=True)
    result = run(job)
    expected = fine_grid_ijk_to_ras(ijk_to_ras_array(node), 2, "z")
    for output in (result.output_node, result.uncertainty_node):
        np.testing.assert_allclose(ijk_to_ras_array(output), expected, atol=1e-6)
        assert slicer.util.arrayFromVolume(output).shape == (16, 24, 24)
    assert result.output_node.GetName() == "thick super-resolved"
    assert result.uncertainty_node.GetName() == "thick super-resolution uncertainty"
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before + 2
    assert result.summary["factor"] == 2 and result.summary["axis"] == "z"
    assert job.folder is None
    # The result follows the input where the spline does: the fine voxels of a coarse slice's centre.
    coarse = slicer.util.arrayFromVolume(node)
    fine = slicer.util.arrayFromVolume(result.output_node)
    assert np.corrcoef(fine[1::2].ravel(), coarse.ravel())[0, 1] > 0.9


def test_supervised_jobs_send_the_training_volumes(scene) -> None:
    node = thick_node(scene)
    high = add_volume(scene, "high", smooth_phantom((16, 24, 24), seed=5), spacing=(0.8, 0.8, 1.6), directions=OBLIQUE)
    config = SuperResConfig.from_dict(deep_merge(TINY, {"mode": "supervised", "method": "regression", "axis": "auto"}))
    job = NodeSuperResJob(node, config, training_nodes=[high])
    result = run(job)
    assert slicer.util.arrayFromVolume(result.output_node).shape == (16, 24, 24)
    assert result.uncertainty_node is None
    assert job.axis == "z"


def test_jobs_refuse_what_cannot_work_before_starting(scene) -> None:
    node = thick_node(scene)
    regression = SuperResConfig.from_dict(deep_merge(TINY, {"method": "regression"}))
    with pytest.raises(ValueError, match="DDPM"):
        NodeSuperResJob(node, regression, compute_uncertainty=True).start()
    supervised = SuperResConfig.from_dict(deep_merge(TINY, {"mode": "supervised"}))
    with pytest.raises(InputError, match="training volume"):
        NodeSuperResJob(node, supervised).start()
    with pytest.raises(InputError, match="input alone"):
        NodeSuperResJob(node, SuperResConfig.from_dict(TINY), training_nodes=[node]).start()
    with pytest.raises(InputError, match="must differ"):
        NodeSuperResJob(node, SuperResConfig.from_dict(TINY), output_node=node).start()


def test_cancelling_a_job_leaves_the_scene_unchanged(scene) -> None:
    node = thick_node(scene)
    before = scene.GetNumberOfNodes()
    slow = SuperResConfig.from_dict(deep_merge(TINY, {"training": {"max_steps": 100000}}))
    job = NodeSuperResJob(node, slow)
    job.start()
    folder = job.folder
    job.cancel()
    assert job.run.state == "cancelled"
    with pytest.raises(Cancelled):
        job.finish()
    assert scene.GetNumberOfNodes() == before
    assert folder is not None and not folder.exists()


def test_settings_map_the_panel_words_to_the_configuration() -> None:
    settings = SuperResSettings.from_parameters(
        {"mode": "Supervised", "factor": 2, "axis": "K (z)", "budgetMinutes": 2, "device": "CPU", "samplingSteps": 50}
    )
    config = settings.to_config()
    assert (config.mode, config.factor, config.axis, config.training.device) == ("supervised", 2, "z", "cpu")
    assert config.training.budget_seconds == 120.0 and config.sampling.steps == 50
    assert SuperResSettings().to_config().mode == "self-supervised"
    assert "budgetMinutes" in SuperResSettings.parameter_names()
    with pytest.raises(ValueError, match="mode must be one of"):
        SuperResSettings(mode="Magic")
    with pytest.raises(ValueError, match="unknown setting"):
        SuperResSettings.from_parameters({"steps": 3})


def test_the_worker_command_is_the_cli_contract(scene, tmp_path) -> None:
    from DeepDenoiseLib.cli.commands import build_parser

    command = superres_command("in.nrrd", "out.nrrd", "config.json", ["a.nrrd", "b.nrrd"], "u.nrrd", python="py")
    assert command[:3] == ["py", "-m", "DeepDenoiseLib"]
    args = build_parser().parse_args(command[3:])
    assert args.command == "superres" and [str(p) for p in args.train_on] == ["a.nrrd", "b.nrrd"]
    assert str(args.uncertainty) == "u.nrrd" and args.progress == "json"
    node = thick_node(scene)
    assert resolve_axis(node, "auto") == "z" and resolve_axis(node, "x") == "x"

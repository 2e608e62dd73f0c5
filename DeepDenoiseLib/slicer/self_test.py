"""The module's self-test (Developer Tools > Reload and Test), outside the module file: each check takes
the test case (``assert*``, ``delayDisplay``, ``skipTest``) and the module's Logic, and works on a small
synthetic volume with a budget of seconds. The checks that run the background worker are skipped,
saying why, where its packages are missing: a self-test installs nothing.

>>> denoises_and_cancels(testCase, DeepDenoiseLogic(), requirements_path)
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from DeepDenoiseLib.core.progress import Cancelled
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.slicer import support
from DeepDenoiseLib.slicer.settings import PANEL_METHODS_2D_ONLY
from DeepDenoiseLib.superres.config import SuperResConfig

#: The input's grid: oblique, with a different spacing along each axis.
IJK_TO_RAS = np.array([[0, 0, -1.2, 5.0], [0.9, 0, 0, -3.0], [0, 1.1, 0, 7.0], [0, 0, 0, 1]])


def skip_unless_the_worker_can_run(case: Any, requirements_path: str) -> None:
    reason = support.self_test_skip_reason(support.missing_worker_packages(requirements_path))
    if reason:
        case.delayDisplay(reason)
        case.skipTest(reason)


def noisy_volume(node_class: str = "vtkMRMLScalarVolumeNode") -> Any:
    """A 24^3 sphere with Gaussian noise in the scene (for a label map: the sphere's labels)."""
    import slicer

    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[:24, :24, :24]
    clean = ((k - 12) ** 2 + (j - 12) ** 2 + (i - 12) ** 2 < 64).astype(np.float32)
    noisy = clean + 0.2 * rng.standard_normal(clean.shape).astype(np.float32)
    if node_class == "vtkMRMLLabelMapVolumeNode":
        noisy = clean.astype(np.int16)
    return slicer.util.addVolumeFromArray(noisy, ijkToRAS=IJK_TO_RAS, name="DeepDenoiseTestInput", nodeClassName=node_class)


def tiny_config() -> DenoiseConfig:
    """The default method (R2R from the shipped prior, whose network size is fixed), brief, with
    test-time augmentation for the uncertainty output. Patches of 16 suit its two poolings."""
    return DenoiseConfig.for_method(
        DenoiseConfig.method,
        training={"budget_seconds": 2.0, "patch_size": 16, "batch_size": 4, "steps_per_epoch": 5, "max_epochs": 1},
        prediction={"tta": True},
    )


def ijk_to_ras(volume_node: Any) -> np.ndarray:
    import slicer
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def refuses_label_map(case: Any, logic: Any) -> None:
    import slicer

    label_map = noisy_volume("vtkMRMLLabelMapVolumeNode")
    nodes_before = slicer.mrmlScene.GetNumberOfNodes()
    with case.assertRaises(InputError):
        logic.process(label_map, None, tiny_config())
    case.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes_before)


def refuses_settings_that_do_not_go_together(case: Any, logic: Any) -> None:
    import slicer

    input_volume = noisy_volume()
    nodes_before = slicer.mrmlScene.GetNumberOfNodes()
    two_d_only = PANEL_METHODS_2D_ONLY[0]
    with case.assertRaisesRegex(ValueError, f"{two_d_only} is a 2D method"):
        logic.process(input_volume, None, {"method": two_d_only, "dimensions": "3D"})
    with case.assertRaisesRegex(ValueError, "test-time augmentation"):
        logic.process(input_volume, None, {"testTimeAugmentation": False}, computeUncertainty=True)
    case.assertFalse(logic.isRunning)
    case.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes_before)


def denoises_and_cancels(case: Any, logic: Any, requirements_path: str) -> None:
    import slicer

    case.delayDisplay("Denoising a 24^3 volume with a 2 s budget, with its uncertainty")
    skip_unless_the_worker_can_run(case, requirements_path)
    input_volume = noisy_volume()
    input_array = slicer.util.arrayFromVolume(input_volume).copy()
    stages: list[str] = []
    output_volume = logic.process(
        input_volume, None, tiny_config(), computeUncertainty=True, progressCallback=lambda event: stages.append(event.stage)
    )
    case.assertEqual(stages[-1], "done")
    case.assertIn("training", stages)
    output_array = slicer.util.arrayFromVolume(output_volume)
    case.assertEqual(output_array.shape, input_array.shape)
    case.assertTrue(np.isfinite(output_array).all())
    case.assertLess(float(np.std(output_array)), float(np.std(input_array)))
    case.assertTrue(np.array_equal(ijk_to_ras(input_volume), ijk_to_ras(output_volume)))
    uncertainty_volume = logic.lastResult.uncertainty_node
    case.assertEqual(uncertainty_volume.GetName(), "DeepDenoiseTestInput uncertainty")
    uncertainty_array = slicer.util.arrayFromVolume(uncertainty_volume)
    case.assertEqual(uncertainty_array.shape, input_array.shape)
    case.assertTrue(np.isfinite(uncertainty_array).all() and uncertainty_array.min() >= 0.0)
    case.assertTrue(np.array_equal(ijk_to_ras(input_volume), ijk_to_ras(uncertainty_volume)))
    case.assertEqual(logic.lastResult.summary["noise_model"], tiny_config().noise.model)

    case.delayDisplay("Cancelling a background run")
    nodes_before = slicer.mrmlScene.GetNumberOfNodes()
    outcome: list[Any] = []
    logic.process(input_volume, None, tiny_config(), waitForCompletion=False, completedCallback=lambda result, error: outcome.append(error))
    case.assertTrue(logic.isRunning)
    logic.cancel()
    case.assertFalse(logic.isRunning)
    case.assertIsInstance(outcome[0], Cancelled)
    case.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes_before)
    case.assertTrue(np.array_equal(slicer.util.arrayFromVolume(input_volume), input_array))
    case.delayDisplay("Test passed")


def saves_a_model_and_applies_it(case: Any, logic: Any, requirements_path: str) -> None:
    import slicer

    case.delayDisplay("Saving the trained model, then applying it without training")
    skip_unless_the_worker_can_run(case, requirements_path)
    input_volume = noisy_volume()
    with tempfile.TemporaryDirectory() as folder:
        model_path = os.path.join(folder, "selftest.safetensors")
        trained = logic.process(input_volume, None, tiny_config(), saveModelPath=model_path)
        case.assertTrue(os.path.samefile(logic.lastResult.summary["saved_model"], model_path))
        models = logic.savedModels(folder)
        case.assertEqual([(model.name, model.problem) for model in models], [("selftest", None)])
        stages: list[str] = []
        applied = logic.process(
            input_volume,
            None,
            {"testTimeAugmentation": True},
            modelPath=model_path,
            progressCallback=lambda event: stages.append(event.stage),
        )
    case.assertNotIn("training", stages)
    case.assertEqual(stages[-1], "done")
    case.assertTrue(np.array_equal(ijk_to_ras(input_volume), ijk_to_ras(applied)))
    # The same network on the same voxels with the same test-time augmentation: the same result.
    np.testing.assert_allclose(slicer.util.arrayFromVolume(applied), slicer.util.arrayFromVolume(trained), rtol=1e-4, atol=1e-4)
    case.delayDisplay("Test passed")


def super_resolves_onto_the_finer_grid(case: Any, logic: Any, requirements_path: str) -> None:
    """A tiny self-supervised regression model, x2 along the slices: the result lies on the grid
    twice as fine along K with the input's orientation and field of view."""
    import slicer

    skip_unless_the_worker_can_run(case, requirements_path)
    input_volume = noisy_volume()
    config = SuperResConfig.from_dict(
        {
            "factor": 2,
            "axis": "z",
            "mode": "self-supervised",
            "method": "regression",
            "model": {"depth": 1, "base_channels": 8},
            "training": {"patch_size": [16, 16], "batch_size": 2, "max_steps": 3, "budget_seconds": None},
            "sampling": {"patch_size": 16, "patch_overlap": 4},
        }
    )
    output_volume = logic.superResolve(input_volume, config, showResult=False)
    case.assertEqual(slicer.util.arrayFromVolume(output_volume).shape, (48, 24, 24))
    expected = ijk_to_ras(input_volume)
    expected[:3, 3] -= expected[:3, 2] / 4.0
    expected[:3, 2] /= 2.0
    np.testing.assert_allclose(ijk_to_ras(output_volume), expected, atol=1e-6)

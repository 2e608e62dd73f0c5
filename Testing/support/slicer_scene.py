"""A headless Slicer scene for tests, built on the ``slicer-core`` wheel (real MRML, no Qt).

``headless_scene()`` sets up what the Slicer application would: a scene with the application logic,
the Colors, Volumes, Subject Hierarchy and Sequences module logics, a subject hierarchy node, and
``slicer.mrmlScene`` pointing at it. Tests that need it skip when ``slicer-core`` is not installed.

>>> scene = headless_scene()
>>> node = add_volume(scene, "noisy", np.zeros((4, 5, 6), np.float32))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install slicer-core)")
vtk = pytest.importorskip("vtk")

vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
vtk.vtkObject.GlobalWarningDisplayOff()


def headless_scene() -> Any:
    """A new MRML scene with the module logics registered, set as ``slicer.mrmlScene``."""
    scene = slicer.vtkMRMLScene()
    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetName("default")
    crosshair.SetSingletonTag("default")
    scene.AddNode(crosshair)

    application_logic = slicer.vtkSlicerApplicationLogic()
    application_logic.SetMRMLScene(scene)
    color_logic = application_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    application_logic.SetSliceLogics(vtk.vtkCollection())
    application_logic.SetViewLogics(vtk.vtkCollection())
    application_logic.SetModuleLogic("Colors", color_logic)
    # The application logic holds its module logics weakly: the scene keeps them alive.
    scene.module_logics = {"Colors": color_logic}
    for name, logic_class in (
        ("Volumes", slicer.vtkSlicerVolumesLogic),
        ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
        ("Sequences", slicer.vtkSlicerSequencesLogic),
    ):
        logic = logic_class()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(application_logic)
        application_logic.SetModuleLogic(name, logic)
        scene.module_logics[name] = logic
    scene.application_logic = application_logic
    # The full application always has one; slicer-core creates it on first request.
    scene.GetSubjectHierarchyNode()
    slicer.mrmlScene = scene
    return scene


def add_volume(
    scene: Any,
    name: str,
    array: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    directions: Optional[np.ndarray] = None,
    node_class: str = "vtkMRMLScalarVolumeNode",
) -> Any:
    """A volume node in ``scene`` holding ``array`` ([k, j, i]) with the given RAS geometry."""
    node = scene.AddNewNodeByClass(node_class, name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    if directions is not None:
        matrix = vtk.vtkMatrix4x4()
        for row in range(3):
            for column in range(3):
                matrix.SetElement(row, column, float(directions[row][column]))
        node.SetIJKToRASDirectionMatrix(matrix)
    node.CreateDefaultDisplayNodes()
    hierarchy = scene.GetSubjectHierarchyNode()
    hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    return node


def ijk_to_ras_array(node: Any) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def world_value(node, ras) -> float:
    """The voxel value of ``node`` at the RAS point ``ras`` (which must be a voxel centre)."""
    ijk = np.linalg.solve(ijk_to_ras_array(node), np.append(ras, 1.0))[:3]
    i, j, k = (int(v) for v in np.rint(ijk))
    assert np.allclose(ijk, (i, j, k), atol=1e-4)
    return float(slicer.util.arrayFromVolume(node)[k, j, i])

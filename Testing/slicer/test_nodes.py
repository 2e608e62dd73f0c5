"""Volume nodes against real Slicer MRML (the slicer-core wheel; DeepDenoiseLib.slicer.nodes): geometry
through IJK-to-RAS, Slicer's K flip of left-handed files undone, and the node kinds refused with advice."""

from __future__ import annotations

import numpy as np
import pytest

from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume_io import read_volume
from DeepDenoiseLib.slicer.nodes import (
    array_on_grid,
    check_scalar_volume,
    read_file_node,
    update_node_from_volume,
    volume_from_node,
    write_node,
)
from Testing.support.jobs import LEFT_HANDED, OBLIQUE, noisy_array
from Testing.support.slicer_scene import add_volume, ijk_to_ras_array, slicer, vtk

# --- Geometry -----------------------------------------------------------------------------------


def test_volume_from_node_matches_what_itk_reads_from_the_saved_file(scene, tmp_path):
    node = add_volume(scene, "oblique", noisy_array(), spacing=(0.7, 1.1, 2.5), origin=(10.0, -20.0, 5.0), directions=OBLIQUE)
    volume = volume_from_node(node)
    write_node(node, tmp_path / "oblique.nrrd")
    from_file = read_volume(tmp_path / "oblique.nrrd")
    np.testing.assert_array_equal(volume.array, from_file.array)
    np.testing.assert_allclose(volume.spacing, from_file.spacing, rtol=1e-12)
    np.testing.assert_allclose(volume.origin, from_file.origin, atol=1e-12)
    np.testing.assert_allclose(volume.direction, from_file.direction, atol=1e-12)
    # The copy is independent of the node.
    volume.array[0, 0, 0] = -1.0
    assert slicer.util.arrayFromVolume(node)[0, 0, 0] != -1.0


def test_update_node_from_volume_round_trips_geometry(scene):
    node = add_volume(scene, "source", noisy_array(), spacing=(0.7, 1.1, 2.5), origin=(1.0, 2.0, 3.0), directions=OBLIQUE)
    target = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "target")
    update_node_from_volume(target, volume_from_node(node))
    np.testing.assert_allclose(ijk_to_ras_array(target), ijk_to_ras_array(node), atol=1e-12)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(target), slicer.util.arrayFromVolume(node))


def test_array_on_grid_undoes_the_k_flip_slicer_applies_to_left_handed_files(scene, tmp_path):
    array = noisy_array()
    node = add_volume(scene, "left", array, spacing=(1.0, 2.0, 3.0), origin=(10.0, 20.0, 30.0), directions=LEFT_HANDED)
    write_node(node, tmp_path / "left.nrrd")
    reread = read_file_node(tmp_path / "left.nrrd")
    # Slicer flipped K on read: same voxels in the world, another array order and matrix.
    assert not np.array_equal(ijk_to_ras_array(reread), ijk_to_ras_array(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(reread), array[::-1])
    np.testing.assert_array_equal(array_on_grid(reread, ijk_to_ras_array(node)), array)


def test_array_on_grid_handles_permuted_axes_and_refuses_other_grids(scene):
    array = noisy_array()
    node = add_volume(scene, "a", array, spacing=(1.0, 2.0, 3.0), directions=OBLIQUE)
    matrix = ijk_to_ras_array(node)
    # The same grid described with I and J swapped and K reversed.
    shape_ijk = array.shape[::-1]
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, shape_ijk[2] - 1], [0, 0, 0, 1]], dtype=float)
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "b")
    slicer.util.updateVolumeFromArray(other, np.ascontiguousarray(np.transpose(array, (0, 2, 1))[::-1]))
    vtk_matrix = slicer.util.vtkMatrixFromArray(matrix @ swap)
    other.SetIJKToRASMatrix(vtk_matrix)
    np.testing.assert_array_equal(array_on_grid(other, matrix), array)

    shifted = matrix.copy()
    shifted[:3, 3] += 0.5 * matrix[:3, 0]  # half a voxel off
    with pytest.raises(ValueError, match="voxel grid"):
        array_on_grid(node, shifted)


# --- Refused nodes --------------------------------------------------------------------------------


def test_label_maps_vectors_4d_and_empty_nodes_are_refused_with_advice(scene):
    labels = add_volume(scene, "labels", np.ones((3, 4, 5), np.int16), node_class="vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="label map"):
        check_scalar_volume(labels)

    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(rgb, np.zeros((3, 4, 5, 3), np.uint8))
    with pytest.raises(InputError, match="vector, RGB"):
        check_scalar_volume(rgb)

    multi = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "multi")
    image = vtk.vtkImageData()
    image.SetDimensions(5, 4, 3)
    image.AllocateScalars(vtk.VTK_FLOAT, 2)
    multi.SetAndObserveImageData(image)
    with pytest.raises(InputError, match="2 components"):
        check_scalar_volume(multi)

    with pytest.raises(InputError, match="no voxels"):
        check_scalar_volume(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))

    with pytest.raises(InputError, match="no input volume"):
        check_scalar_volume(None)


def test_a_frame_of_a_sequence_is_refused_as_4d(scene):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "series")
    for index in range(2):
        frame = slicer.vtkMRMLScalarVolumeNode()
        slicer.util.updateVolumeFromArray(frame, noisy_array(seed=index))
        sequence.SetDataNodeAtValue(frame, str(index))
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    scene.module_logics["Sequences"].UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    assert proxy is not None and proxy.GetImageData() is not None
    with pytest.raises(InputError, match="sequence"):
        check_scalar_volume(proxy)

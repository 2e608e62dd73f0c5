"""Tests for reading and writing volume files: geometry and values round trips, DICOM, 4D, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from DeepDenoiseLib.core.validation import InputError, check_volume_object
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import (
    READ_EXTENSIONS,
    WRITE_EXTENSIONS,
    read_volume,
    supported_extensions,
    write_volume,
)

SPACING = (0.7, 0.7, 5.0)
ORIGIN = (-123.456789, 45.678912, -7.891)
OBLIQUE = Rotation.from_euler("xyz", [20.0, -35.0, 50.0], degrees=True).as_matrix()


def oblique_volume(shape: tuple[int, ...] = (4, 5, 6), seed: int = 0) -> Volume:
    array = np.random.default_rng(seed).normal(100.0, 30.0, size=shape).astype(np.float32)
    return Volume(array, SPACING, ORIGIN, OBLIQUE)


def assert_geometry(volume: Volume, extension: str) -> None:
    """Exactness as promised in volume_io's docstring for each format."""
    if extension == ".mha":
        assert volume.spacing == SPACING
        assert volume.origin == ORIGIN
        assert np.array_equal(volume.direction, OBLIQUE)
    elif extension == ".nrrd":
        assert volume.origin == ORIGIN
        np.testing.assert_allclose(volume.spacing, SPACING, rtol=1e-14, atol=0)
        np.testing.assert_allclose(volume.direction, OBLIQUE, rtol=0, atol=1e-14)
    else:
        np.testing.assert_allclose(volume.spacing, SPACING, rtol=1e-6, atol=0)
        np.testing.assert_allclose(volume.origin, ORIGIN, rtol=1e-6, atol=0)
        np.testing.assert_allclose(volume.direction, OBLIQUE, rtol=0, atol=1e-6)


@pytest.mark.parametrize("extension", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_round_trip_keeps_oblique_geometry_and_float_values(tmp_path: Path, extension: str) -> None:
    volume = oblique_volume()
    written = write_volume(volume, tmp_path / f"vol{extension}")
    assert written == tmp_path / f"vol{extension}"
    back = read_volume(written)
    assert back.array.dtype == np.float32
    assert np.array_equal(back.array, volume.array)
    assert_geometry(back, extension)
    assert back.metadata["pixel_type"] == "32-bit float"
    assert back.metadata["source_path"] == str(written)
    assert back.metadata["components"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"vol{extension}"]


def test_int16_file_reads_to_its_values_and_pixel_type(tmp_path: Path) -> None:
    array = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 37 - 1000).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    volume = read_volume(tmp_path / "ct.nii.gz")
    assert volume.array.dtype == np.int16
    assert np.array_equal(volume.array, array)
    assert volume.metadata["pixel_type"] == "16-bit signed integer"


def test_write_as_integer_rounds_and_clips(tmp_path: Path) -> None:
    volume = Volume(np.array([[[-40000.0, -1.6, 2.4, 2.5, 40000.0]]], dtype=np.float32))
    back = read_volume(write_volume(volume, tmp_path / "ct.nrrd", dtype=np.int16))
    assert back.array.dtype == np.int16
    assert back.array.ravel().tolist() == [-32768, -2, 2, 2, 32767]


def test_write_as_integer_refuses_nan(tmp_path: Path) -> None:
    volume = Volume(np.array([[[1.0, np.nan]]], dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        write_volume(volume, tmp_path / "ct.nrrd", dtype=np.int16)
    assert list(tmp_path.iterdir()) == []


def test_mhd_and_nhdr_headers_are_read(tmp_path: Path) -> None:
    volume = oblique_volume()
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(tuple(OBLIQUE.ravel()))
    for name in ("vol.mhd", "vol.nhdr"):
        sitk.WriteImage(image, str(tmp_path / name))
        back = read_volume(tmp_path / name)
        assert np.array_equal(back.array, volume.array)
        assert_geometry(back, ".mha" if name.endswith(".mhd") else ".nrrd")


def test_2d_image_becomes_one_slice_volume(tmp_path: Path) -> None:
    array = np.arange(30, dtype=np.float32).reshape(5, 6)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.25))
    image.SetOrigin((3.0, -4.0))
    sitk.WriteImage(image, str(tmp_path / "slice.nrrd"))
    volume = read_volume(tmp_path / "slice.nrrd")
    assert volume.array.shape == (1, 5, 6)
    assert np.array_equal(volume.array[0], array)
    assert volume.spacing == (0.5, 0.25, 1.0)
    assert volume.origin == (3.0, -4.0, 0.0)
    assert np.array_equal(volume.direction, np.eye(3))


def write_dicom_series(
    folder: Path, array: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, float, float], uid: str
) -> None:
    """One int16 DICOM file per slice, with the tags a series reader needs (SimpleITK's example pattern)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        image_slice = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(str(p) for p in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
            "0018|0050": str(spacing[2]),
        }
        for tag, value in tags.items():
            image_slice.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-2:]}_{k:03d}.dcm"))
        writer.Execute(image_slice)


def test_dicom_folder_reads_the_largest_series(tmp_path: Path) -> None:
    array = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 7 - 300).astype(np.int16)
    main_uid, small_uid = "1.2.826.0.1.3680043.2.1125.10", "1.2.826.0.1.3680043.2.1125.11"
    write_dicom_series(tmp_path, array, (0.7, 0.8, 2.5), (-10.5, 20.25, -30.0), main_uid)
    write_dicom_series(tmp_path, array[:2] + 1, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), small_uid)
    volume = read_volume(tmp_path)
    assert volume.array.shape == (4, 5, 6)
    assert np.array_equal(volume.array, array)
    np.testing.assert_allclose(volume.spacing, (0.7, 0.8, 2.5), rtol=1e-9)
    np.testing.assert_allclose(volume.origin, (-10.5, 20.25, -30.0), rtol=1e-9)
    assert volume.metadata["dicom_series_uid"] == main_uid
    assert volume.metadata["dicom_file_count"] == 4
    assert volume.metadata["dicom_other_series"] == {small_uid: 2}
    assert volume.metadata["pixel_type"] == "16-bit signed integer"


def test_folder_without_dicom_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="holds no DICOM series"):
        read_volume(tmp_path)


def test_4d_nifti_refused_by_default_and_read_when_allowed(tmp_path: Path) -> None:
    frames = np.stack([oblique_volume(seed=t).array for t in range(3)])
    series = Volume(frames, SPACING, ORIGIN, OBLIQUE, {"time_spacing": 2.5})
    path = write_volume(series, tmp_path / "series.nii.gz")
    with pytest.raises(InputError, match="4D series of 3 volumes.*allow_4d=True"):
        read_volume(path)
    back = read_volume(path, allow_4d=True)
    assert back.is_4d
    assert back.array.shape == (3, 4, 5, 6)
    assert np.array_equal(back.array, frames)
    assert back.metadata["time_spacing"] == 2.5
    assert_geometry(back, ".nii.gz")
    rewritten = read_volume(write_volume(back, tmp_path / "again.nii"), allow_4d=True)
    assert np.array_equal(rewritten.array, frames)
    assert rewritten.metadata["time_spacing"] == 2.5
    assert_geometry(rewritten, ".nii")


def test_4d_file_with_one_time_point_reads_as_3d(tmp_path: Path) -> None:
    single = Volume(oblique_volume().array[np.newaxis], SPACING, ORIGIN, OBLIQUE)
    path = write_volume(single, tmp_path / "one.mha")
    assert sitk.ReadImage(str(path)).GetDimension() == 4
    volume = read_volume(path)
    assert volume.array.shape == (4, 5, 6)
    assert_geometry(volume, ".mha")


def test_rgb_image_is_read_with_components_and_refused_by_validation(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, size=(3, 4, 5, 3), dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.nrrd"))
    volume = read_volume(tmp_path / "rgb.nrrd")
    assert volume.array.shape == (3, 4, 5, 3)
    assert volume.metadata["components"] == 3
    assert volume.metadata["pixel_type"] == "vector of 8-bit unsigned integer"
    with pytest.raises(InputError, match="RGB/vector images are not supported"):
        check_volume_object(volume)
    with pytest.raises(InputError, match="RGB/vector"):
        write_volume(volume, tmp_path / "out.nrrd")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.nii.gz"
    with pytest.raises(FileNotFoundError, match="nope.nii.gz") as info:
        read_volume(missing)
    assert info.value.filename == str(missing)


def test_unsupported_extensions_are_refused_with_the_supported_list(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"unsupported file type; use one of \.nii, \.nii\.gz") as info:
        read_volume(tmp_path / "image.png")
    assert "DICOM" in str(info.value)
    for name in ("out.png", "out.nhdr", "out.mhd"):
        with pytest.raises(InputError, match="unsupported file type"):
            write_volume(oblique_volume(), tmp_path / name)
    assert supported_extensions() == READ_EXTENSIONS
    assert supported_extensions(for_writing=True) == WRITE_EXTENSIONS
    assert set(WRITE_EXTENSIONS) < set(READ_EXTENSIONS)


def test_extensions_match_case_insensitively(tmp_path: Path) -> None:
    path = write_volume(oblique_volume(), tmp_path / "VOL.NII.GZ")
    assert np.array_equal(read_volume(path).array, oblique_volume().array)


def test_corrupt_file_raises_input_error(tmp_path: Path) -> None:
    (tmp_path / "broken.nii").write_bytes(b"not a nifti header")
    with pytest.raises(InputError, match="could not read"):
        read_volume(tmp_path / "broken.nii")


def test_missing_output_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="output folder does not exist"):
        write_volume(oblique_volume(), tmp_path / "missing" / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.mha"
    write_volume(oblique_volume(seed=1), target)
    write_volume(oblique_volume(seed=2), target)
    assert np.array_equal(read_volume(target).array, oblique_volume(seed=2).array)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mha"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"previous result")
    attempted: list[str] = []

    def failing_write(image: sitk.Image, file_name: str, *args: object) -> None:
        attempted.append(file_name)
        Path(file_name).write_bytes(b"partial")
        raise error("disk full")

    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    with pytest.raises(error):
        write_volume(oblique_volume(), target)
    temporary = Path(attempted[0])
    assert temporary.parent == tmp_path
    assert temporary.name.startswith(".out.tmp-") and temporary.name.endswith(".nii.gz")
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_failed_write_without_earlier_file_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_write(image: sitk.Image, file_name: str, *args: object) -> None:
        Path(file_name).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(oblique_volume(), tmp_path / "out.nrrd")
    assert list(tmp_path.iterdir()) == []

"""NIfTI files whose grid is sheared (axes not at right angles): ITK refuses to read them and would
make the axes orthogonal when writing; they are read and written with nibabel, keeping the sform."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest

from DeepDenoiseLib.cli import commands as cli
from DeepDenoiseLib.core.sheared_nifti import is_orthonormal
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume_io import header_frames, read_header, read_volume, write_volume
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401

#: A sform (RAS) whose slice axis leans towards the other two, as in dipy's S0_10slices.nii.gz.
SHEARED = np.array([[2.0, 0.0, 1.5, -20.0], [0.0, 2.0, 1.5, -30.0], [0.0, 0.0, 3.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


def sheared_file(path: Path, data: np.ndarray, zooms_t: float = 0.0) -> Path:
    """``data`` (x, y, z[, t], as nibabel holds it) saved with the sheared sform and no qform."""
    image = nibabel.Nifti1Image(data.astype(np.float32), SHEARED)
    image.set_sform(SHEARED, code=1)
    image.set_qform(None, code=0)
    if zooms_t:
        image.header.set_zooms((*image.header.get_zooms()[:3], zooms_t))
    nibabel.save(image, str(path))
    return path


def test_a_sheared_volume_is_read_as_nibabel_reads_it_and_written_back_with_the_same_grid(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((12, 10, 6)).astype(np.float32)
    volume = read_volume(sheared_file(tmp_path / "in.nii.gz", data))
    assert volume.array.shape == (6, 10, 12) and np.array_equal(volume.array, data.transpose(2, 1, 0))
    assert not is_orthonormal(volume.direction) and np.allclose(np.linalg.norm(volume.direction, axis=0), 1.0)
    assert any("sheared grid" in warning for warning in volume.metadata["warnings"])
    assert read_header(tmp_path / "in.nii.gz") == (6, 10, 12) and header_frames(tmp_path / "in.nii.gz") is None
    for name in ("out.nii.gz", "out.nii"):
        write_volume(volume.with_array(volume.array * 2), tmp_path / name)
        written = nibabel.load(str(tmp_path / name))
        assert np.allclose(written.affine, SHEARED, atol=1e-6) and int(written.header["qform_code"]) == 0
        assert np.allclose(np.asarray(written.dataobj), 2 * data)
    assert (tmp_path / "out.nii.gz").read_bytes()[:2] == b"\x1f\x8b" and (tmp_path / "out.nii").read_bytes()[:2] != b"\x1f\x8b"


@pytest.mark.parametrize("name", ["out.nrrd", "out.mha"])
def test_a_sheared_volume_is_not_written_where_its_grid_would_be_lost(tmp_path: Path, name: str) -> None:
    volume = read_volume(sheared_file(tmp_path / "in.nii.gz", np.ones((8, 8, 8))))
    with pytest.raises(InputError, match="only NIfTI keeps"):
        write_volume(volume, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_a_sheared_series_keeps_its_frames_and_time_step_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((8, 8, 6, 5)).astype(np.float32)
    path = sheared_file(tmp_path / "series.nii.gz", data, zooms_t=2.5)
    assert read_header(path) == (5, 6, 8, 8) and header_frames(path) == 5
    with pytest.raises(InputError, match="4D series of 5 volumes"):
        read_volume(path)
    series = read_volume(path, allow_4d=True)
    assert series.array.shape == (5, 6, 8, 8) and series.metadata["time_spacing"] == 2.5
    write_volume(series, tmp_path / "out.nii.gz")
    written = nibabel.load(str(tmp_path / "out.nii.gz"))
    assert written.shape == (8, 8, 6, 5) and written.header.get_zooms()[3] == 2.5 and np.allclose(written.affine, SHEARED, atol=1e-6)
    data[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        read_volume(sheared_file(tmp_path / "nan.nii.gz", data), allow_4d=True)


def test_the_command_line_denoises_a_sheared_file_and_keeps_its_grid(tmp_path: Path, capsys) -> None:
    _, noisy = noisy_phantom((6, 24, 24), sigma=0.1, seed=4)
    source = sheared_file(tmp_path / "in.nii.gz", noisy.transpose(2, 1, 0))
    tiny_config("n2v").save(tmp_path / "tiny.json")
    output = tmp_path / "out.nii.gz"
    code = cli.main(["denoise", str(source), str(output), "--config", str(tmp_path / "tiny.json")])
    assert code == cli.EXIT_OK, capsys.readouterr().err
    written = nibabel.load(str(output))
    assert np.allclose(written.affine, SHEARED, atol=1e-6) and written.shape == (24, 24, 6)
    assert "sheared grid" in capsys.readouterr().err


def test_an_output_that_cannot_keep_a_sheared_grid_is_refused_before_the_run(tmp_path: Path, capsys) -> None:
    _, noisy = noisy_phantom((6, 24, 24), sigma=0.1, seed=4)
    source = sheared_file(tmp_path / "in.nii.gz", noisy.transpose(2, 1, 0))
    tiny_config("n2v").save(tmp_path / "tiny.json")
    code = cli.main(
        [
            "denoise",
            str(source),
            str(tmp_path / "out.nii.gz"),
            "--residual",
            str(tmp_path / "res.nrrd"),
            "--config",
            str(tmp_path / "tiny.json"),
        ]
    )
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT and "only NIfTI keeps" in err and "training" not in err
    assert not (tmp_path / "out.nii.gz").exists() and not (tmp_path / "res.nrrd").exists()

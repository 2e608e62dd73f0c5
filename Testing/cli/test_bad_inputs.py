"""Bad inputs, settings and interrupts, as a hurried user or a broken scanner export produces them
(issue 15): every one is refused early and clearly, or handled and said, and no run loses a file that
existed before it or leaves a partial one.

Every bad file is generated here (truncated, renamed, NaN-filled, oversized headers, DICOM series
with a missing slice); the runs are tiny (4 training steps on 6x24x24 voxels).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DeepDenoiseLib.cli import commands as cli
from DeepDenoiseLib.core import atomic_write, interrupts
from DeepDenoiseLib.core.noise_simulation import add_rician_noise
from DeepDenoiseLib.core.progress import ProgressEvent
from DeepDenoiseLib.core.validation import ResultError, check_noise_model_intensities, check_result
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_header, read_volume, write_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.superres.config import SuperResConfig
from Testing.core.test_volume_io import write_dicom_series
from Testing.support import REPO
from Testing.support.phantoms import single_thread, smooth_phantom, tiny_config  # noqa: F401

SHAPE = (6, 24, 24)


def mri_like(shape=SHAPE, seed: int = 0) -> np.ndarray:
    """A magnitude image: a smooth phantom with Rician noise, positive everywhere, in scanner-like units."""
    return (1000.0 * add_rician_noise(smooth_phantom(shape, seed), 0.05, seed + 1)).astype(np.float32)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    write_volume(Volume(mri_like(), spacing=(0.8, 0.8, 2.0)), tmp_path / "in.nii.gz")
    tiny_config("r2r").save(tmp_path / "tiny.json")
    tiny_config("r2r", prediction={"tta": True}).save(tmp_path / "tiny_tta.json")
    return tmp_path


def run(args: list[str], capsys) -> tuple[int, list[ProgressEvent], str]:
    """``deepdenoise ARGS --progress json`` in this process: exit code, events, stderr."""
    code = cli.main([*map(str, args), "--progress", "json"])
    captured = capsys.readouterr()
    events = [ProgressEvent.from_json(line) for line in captured.out.splitlines() if line.strip()]
    return code, events, captured.err


def contents(path: Path) -> dict[str, bytes]:
    """Every file in ``path`` (hidden ones included) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def refused_before_loading(code: int, events: list[ProgressEvent], words: str) -> None:
    assert code == cli.EXIT_BAD_INPUT, events
    assert [e.stage for e in events] == ["error"], "refused only after work began"
    assert words in events[-1].message, events[-1].message


# --- 1. A failed or interrupted run keeps every file that was there ----------------------------------


class FailOnNthWrite:
    """sitk.WriteImage that writes a partial file and fails on its ``n``-th call (1-based)."""

    def __init__(self, n: int, error: type[BaseException] = OSError) -> None:
        self.n, self.error, self.calls = n, error, 0
        self.real = sitk.WriteImage

    def __call__(self, image, file_name, *args) -> None:
        self.calls += 1
        if self.calls == self.n:
            Path(file_name).write_bytes(b"partial")
            raise self.error("disk full")
        self.real(image, file_name, *args)


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_a_late_write_failure_keeps_the_input_and_earlier_outputs(folder, capsys, monkeypatch, error) -> None:
    """The issue's first defect: output = input (allowed with --force) and a residual whose write
    fails; the input and a residual from an earlier run must come back byte for byte."""
    victim = folder / "victim.nii.gz"
    victim.write_bytes((folder / "in.nii.gz").read_bytes())
    (folder / "r.nii.gz").write_bytes(b"an earlier run's residual")
    before = contents(folder)
    monkeypatch.setattr(sitk, "WriteImage", FailOnNthWrite(2, error))
    code, events, _ = run(
        ["denoise", victim, victim, "--config", folder / "tiny.json", "--force", "--residual", folder / "r.nii.gz"], capsys
    )
    assert code == (cli.EXIT_INTERRUPTED if error is KeyboardInterrupt else cli.EXIT_FAILED)
    assert "writing" in [e.stage for e in events]
    assert contents(folder) == before


def test_apply_and_superres_keep_earlier_files_when_a_write_fails(folder, capsys, monkeypatch) -> None:
    from DeepDenoiseLib.denoise.pipeline import denoise_volume

    config = tiny_config("r2r", prediction={"tta": True})
    model = folder / "m.safetensors"
    denoise_volume(read_volume(folder / "in.nii.gz"), config).save_model(model)
    for name in ("out.nrrd", "res.nrrd", "spread.nrrd", "fine.nii.gz", "fine_spread.nii.gz"):
        (folder / name).write_bytes(f"earlier {name}".encode())
    before = contents(folder)
    monkeypatch.setattr(sitk, "WriteImage", FailOnNthWrite(3))
    code, _, _ = run(["apply", model, folder / "in.nii.gz", folder / "out.nrrd", "--residual", folder / "res.nrrd", "--tta",
                      "--uncertainty", folder / "spread.nrrd"], capsys)  # fmt: skip
    assert code == cli.EXIT_FAILED and contents(folder) == before
    monkeypatch.setattr(sitk, "WriteImage", FailOnNthWrite(2))
    SuperResConfig.from_dict({"training": {"max_steps": 2, "budget_seconds": None, "threads": 1, "device": "cpu",
                                           "patch_size": [8, 16]}, "model": {"depth": 1, "base_channels": 8},
                              "sampling": {"steps": 2, "samples": 2, "patch_size": 16}}).save(folder / "sr.json")  # fmt: skip
    before = contents(folder)
    code, events, err = run(["superres", folder / "in.nii.gz", folder / "fine.nii.gz", "--factor", "2", "--axis", "z",
                             "--self-supervised", "--config", folder / "sr.json", "--uncertainty", folder / "fine_spread.nii.gz"], capsys)  # fmt: skip
    assert code == cli.EXIT_FAILED, err
    assert "writing" in [e.stage for e in events] and contents(folder) == before


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard-links", "no-hard-links"])
def test_a_rename_that_fails_mid_commit_puts_every_target_back(tmp_path, monkeypatch, hard_links) -> None:
    first, second, third = (tmp_path / name for name in ("a.nii", "b.nii", "c.nii"))
    first.write_bytes(b"old a")
    third.write_bytes(b"old c")
    renames = []
    real_replace = os.replace

    def replace(source, target):
        renames.append((Path(source).name, Path(target).name))
        if Path(source).name.startswith(".c.tmp-"):
            raise OSError("the disk went away")
        real_replace(source, target)

    monkeypatch.setattr(atomic_write.os, "replace", replace)
    if not hard_links:
        monkeypatch.setattr(atomic_write.os, "link", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("no links")))
    writers = [
        (path, lambda target, text=text: target.write_bytes(text))
        for path, text in ((first, b"new a"), (second, b"new b"), (third, b"new c"))
    ]
    with pytest.raises(OSError, match="went away"):
        atomic_write.write_files(writers)
    assert any(target == "b.nii" for _, target in renames)  # the commit had begun
    assert contents(tmp_path) == {"a.nii": b"old a", "c.nii": b"old c"}
    atomic_write.write_files(writers[:2])
    assert contents(tmp_path) == {"a.nii": b"new a", "b.nii": b"new b", "c.nii": b"old c"}


SLOW_WRITE_SCRIPT = """
import sys, time
import SimpleITK as sitk
real = sitk.WriteImage
def slow(image, name, *args):
    real(image, name, *args)
    time.sleep(60)
sitk.WriteImage = slow
from DeepDenoiseLib.cli import commands as cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "stop_signal, command", [(signal.SIGTERM, "apply"), (signal.SIGINT, "denoise")], ids=["SIGTERM-apply", "SIGINT-denoise"]
)
def test_a_signal_while_writing_leaves_all_outputs_or_none_and_exits_130(folder, stop_signal, command) -> None:
    """A real process stopped by SIGTERM (a scheduler, Slicer's Cancel) or SIGINT while it writes:
    exit 130, no output, no hidden temporary file, the earlier residual intact."""
    if not hasattr(signal, "SIGTERM") or os.name == "nt":
        pytest.skip("POSIX signals")
    (folder / "r.nii.gz").write_bytes(b"an earlier residual")
    if command == "apply":
        from DeepDenoiseLib.denoise.pipeline import denoise_volume

        denoise_volume(read_volume(folder / "in.nii.gz"), tiny_config("r2r")).save_model(folder / "m.safetensors")
        args = ["apply", str(folder / "m.safetensors"), str(folder / "in.nii.gz"), str(folder / "out.nii.gz")]
    else:
        args = ["denoise", str(folder / "in.nii.gz"), str(folder / "out.nii.gz"), "--config", str(folder / "tiny.json")]
    args += ["--residual", str(folder / "r.nii.gz"), "--progress", "json"]
    before = contents(folder)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE_SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if json.loads(line)["stage"] == "writing":
                break
        else:
            pytest.fail(f"the run ended before writing: {process.stderr.read()}")
        time.sleep(0.5)  # inside the first (slowed) write
        process.send_signal(stop_signal)
        remaining, errors = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == cli.EXIT_INTERRUPTED, errors
    assert "cancelled" in errors and signal.Signals(stop_signal).name in errors
    assert json.loads(remaining.splitlines()[-1])["stage"] == "error"
    assert contents(folder) == before


def test_signals_raise_until_the_outputs_are_in_place_and_wait_while_they_are_renamed() -> None:
    if os.name == "nt":
        pytest.skip("POSIX signals")
    with interrupts.command_signals():
        with pytest.raises(interrupts.Interrupted, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        reached = []
        with pytest.raises(interrupts.Interrupted), interrupts.shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            reached.append("end of the shielded block")
        assert reached == ["end of the shielded block"]
        interrupts.outputs_in_place()
        os.kill(os.getpid(), signal.SIGTERM)  # the run is done: noted, not raised
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --- 7, 8. Output paths are checked before anything is read -------------------------------------------


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in (as root, chmod does not stop it: /proc refuses files)."""
    if os.geteuid() == 0 if hasattr(os, "geteuid") else False:
        return Path("/proc")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing folder", "does not exist; create it first"),
        ("png", "unsupported file type"),
        ("read-only folder", "cannot write the output in the folder"),
        ("a folder", "is a folder"),
        ("output is residual", "the output and the residual (--residual) are the same file"),
        ("residual is uncertainty", "the residual (--residual) and the uncertainty (--uncertainty) are the same file"),
        ("output is input", "is the input file: writing it would replace the input"),
        ("output is input by another name", "is the input file"),
        ("model in read-only folder", "cannot write the saved model (--save-model)"),
        ("model not safetensors", "model files are .safetensors files"),
    ],
)
def test_bad_output_paths_are_refused_before_reading_or_training(folder, capsys, case, words) -> None:
    source, output = folder / "in.nii.gz", folder / "out.nii.gz"
    extra: list = ["--config", folder / "tiny_tta.json"]
    if case == "missing folder":
        output = folder / "nodir" / "out.nii.gz"
    elif case == "png":
        output = folder / "out.png"
    elif case == "read-only folder":
        output = read_only_folder(folder) / "out.nii.gz"
    elif case == "a folder":
        output = folder
    elif case == "output is residual":
        extra += ["--residual", output]
    elif case == "residual is uncertainty":
        extra += ["--residual", folder / "r.nrrd", "--uncertainty", folder / "r.nrrd"]
    elif case == "output is input":
        output = source
    elif case == "output is input by another name":
        output = folder / "." / "sub" / ".." / "in.nii.gz"
        (folder / "sub").mkdir()
    elif case == "model in read-only folder":
        extra += ["--save-model", read_only_folder(folder) / "m.safetensors"]
    else:
        extra += ["--save-model", folder / "m.pt"]
    before = contents(folder)
    code, events, _ = run(["denoise", source, output, *extra], capsys)
    refused_before_loading(code, events, words)
    assert contents(folder) == before


def test_force_lets_a_successful_run_replace_its_input(folder, capsys) -> None:
    source = folder / "in.nii.gz"
    original = read_volume(source).array
    code, events, err = run(["denoise", source, source, "--config", folder / "tiny.json", "--force"], capsys)
    assert code == cli.EXIT_OK, err
    assert events[-1].summary["output"] == str(source)
    assert not np.array_equal(read_volume(source).array, original)
    assert sorted(contents(folder)) == ["in.nii.gz", "tiny.json", "tiny_tta.json"]


def test_every_command_checks_its_outputs_first(folder, capsys) -> None:
    source = folder / "in.nii.gz"
    write_volume(Volume(mri_like(seed=5), spacing=(0.8, 0.8, 2.0)), folder / "second.nii.gz")
    before = contents(folder)
    for args, words in [
        (["apply", folder / "m.safetensors", source, folder / "o.nii.gz", "--residual", folder / "o.nii.gz"], "same file"),
        (["n2n", source, folder / "second.nii.gz", folder / "second.nii.gz", "--config", folder / "tiny.json"], "is the input file"),
        (["supervised", "--noisy", source, "--clean", folder / "second.nii.gz", "--apply-to", source, folder / "x" / "o.nii.gz"],
         "does not exist"),
        (["superres", source, folder / "fine.png", "--factor", "2", "--self-supervised"], "unsupported file type"),
        (["superres", source, source, "--factor", "2", "--self-supervised"], "is the input file"),
    ]:  # fmt: skip
        code, events, _ = run(args, capsys)
        refused_before_loading(code, events, words)
    assert contents(folder) == before


# --- 5. Sizes come from the header --------------------------------------------------------------------


def nifti_header_only(path: Path, shape: tuple[int, ...], datatype: int = 2, bitpix: int = 8) -> Path:
    """A NIfTI-1 file whose header describes ``shape`` (uint8) with no voxel data after it."""
    header = bytearray(352)
    header[0:4] = np.int32(348).tobytes()
    dims = np.zeros(8, np.int16)
    dims[0] = len(shape)
    dims[1 : len(shape) + 1] = shape
    header[40:56] = dims.tobytes()
    header[70:74] = np.array([datatype, bitpix], np.int16).tobytes()
    header[76:108] = np.ones(8, np.float32).tobytes()  # pixdim
    header[108:112] = np.float32(352).tobytes()  # vox_offset
    header[112:116] = np.float32(1).tobytes()  # scl_slope
    header[252:256] = np.array([1, 1], np.int16).tobytes()  # qform and sform codes
    header[280:292] = np.array([1, 0, 0, 0], np.float32).tobytes()[:12]
    header[296:300] = np.array([0], np.float32).tobytes()
    header[300:312] = np.array([0, 1, 0, 0], np.float32).tobytes()[:12]
    header[316:328] = np.array([0, 0, 1, 0], np.float32).tobytes()[:12]
    header[344:348] = b"n+1\x00"
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as stream:
        stream.write(bytes(header))
    return path


@pytest.mark.parametrize("name", ["huge.nii.gz", "huge.nrrd", "huge_series.nii"])
def test_a_volume_too_large_is_refused_from_its_header_at_once(tmp_path, capsys, name) -> None:
    path = tmp_path / name
    if name.endswith(".nrrd"):
        path.write_bytes(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 600 600 600\nencoding: raw\n\n")
    elif "series" in name:
        nifti_header_only(path, (256, 256, 128, 80))  # each frame fits, the series does not
    else:
        nifti_header_only(path, (600, 600, 600))
    started = time.perf_counter()
    with pytest.raises(ValueError, match="too large"):
        read_volume(path, allow_4d=True)
    commands = [["denoise", path, tmp_path / "o.nii.gz"]]
    if "series" not in name:  # (super-resolution refuses any 4D series first)
        commands.append(["superres", path, tmp_path / "o.nii.gz", "--self-supervised"])
    for command in commands:
        code, events, _ = run(command, capsys)
        refused_before_loading(code, events, "too large")
    assert time.perf_counter() - started < 5.0  # reading 216 MB of voxels would not be refused in time


def test_superres_refuses_a_result_too_large_from_the_header(tmp_path, capsys) -> None:
    path = nifti_header_only(tmp_path / "big.nii.gz", (400, 400, 300))  # 48 M voxels: fine in, 384 M out x8
    code, events, _ = run(["superres", path, tmp_path / "o.nii.gz", "--factor", "8", "--self-supervised"], capsys)
    refused_before_loading(code, events, "the result would have")


def test_a_dicom_series_size_is_files_times_rows_times_columns(tmp_path, monkeypatch) -> None:
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    write_dicom_series(tmp_path, array, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), "1.2.826.0.1.3680043.2.1125.20")

    def no_pixels(self):
        raise AssertionError("the header check read the pixels")

    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", no_pixels)
    assert read_header(tmp_path) == (5, 6, 7)


# --- 2, 3. Damaged files and non-finite voxels, in every format ----------------------------------------


def truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz", "v.nrrd", "v_gz.nrrd", "v.mha", "v_gz.mha"])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_a_truncated_file_is_refused_in_every_format(tmp_path, name, keep) -> None:
    """(A .nii.gz that is not compressed is read as it is: test_an_uncompressed_nii_gz_is_read.)"""
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(mri_like()), str(path), name.endswith(".gz") or "_gz" in name)
    truncate(path, keep)
    with pytest.raises(ValueError) as error:
        read_volume(path)
    message = str(error.value)
    assert "truncated" in message or "damaged" in message, message
    assert "No such file or directory" not in message and name in message


def test_an_uncompressed_nii_gz_is_read(tmp_path) -> None:
    write_volume(Volume(mri_like()), tmp_path / "plain.nii")
    (tmp_path / "plain.nii").rename(tmp_path / "plain.nii.gz")
    np.testing.assert_array_equal(read_volume(tmp_path / "plain.nii.gz").array, mri_like())


@pytest.mark.parametrize("header", ["v.mhd", "v.nhdr"])
def test_a_detached_data_file_that_is_truncated_or_missing_is_named(tmp_path, header) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(mri_like()), str(tmp_path / header), False)
    data = next(p for p in tmp_path.iterdir() if p.suffix in (".raw", ".zraw"))
    truncate(data, 0.5)
    with pytest.raises(ValueError, match="truncated|damaged"):
        read_volume(tmp_path / header)
    data.unlink()
    with pytest.raises(ValueError, match=f"missing|could not read '{tmp_path / header}'"):
        read_volume(tmp_path / header)


def test_the_cli_refuses_a_truncated_nifti_before_training(folder, capsys) -> None:
    write_volume(Volume(mri_like()), folder / "good.nii")
    truncate(folder / "good.nii", 0.6)
    code, events, _ = run(["denoise", folder / "good.nii", folder / "o.nii.gz", "--config", folder / "tiny.json"], capsys)
    assert code == cli.EXIT_BAD_INPUT and "training" not in [e.stage for e in events]
    assert "is truncated" in events[-1].message and not (folder / "o.nii.gz").exists()


@pytest.mark.parametrize("extension", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_refused_in_every_format(tmp_path, extension, dtype, bad) -> None:
    array = mri_like().astype(dtype)
    array[2, 3, 4] = bad
    path = tmp_path / f"v{extension}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), extension != ".nii")
    word = "NaN" if np.isnan(bad) else "infinite"
    with pytest.raises(ValueError, match=f"1 {word} voxel value"):
        from DeepDenoiseLib.core.validation import check_volume

        check_volume(read_volume(path).array)


@pytest.mark.parametrize(
    "content, named, words",
    [
        ("png", "scan.nrrd", "holds a PNG image"),
        ("nifti", "scan.nrrd", "holds NIfTI data; rename it to end in .nii"),
        ("nrrd", "scan.nii.gz", "holds NRRD data; rename it to end in .nrrd"),
        ("text", "scan.mha", "holds text"),
        ("empty", "scan.nii", "is empty (0 bytes)"),
        ("dicom", "scan.nrrd", "holds DICOM data; put it in a folder"),
        ("gzipped nifti", "scan.nii", "is a gzip-compressed NIfTI file; rename it to end in .nii.gz"),
        ("gzipped nifti", "scan.nrrd", "holds NIfTI data; rename it to end in .nii"),
    ],
)
def test_content_that_does_not_match_the_extension_is_refused(tmp_path, content, named, words) -> None:
    path = tmp_path / named
    if content == "png":
        sitk.WriteImage(sitk.GetImageFromArray((mri_like()[0] / 10).astype(np.uint8)), str(tmp_path / "x.png"))
        (tmp_path / "x.png").rename(path)
    elif content == "nifti":
        write_volume(Volume(mri_like()), tmp_path / "x.nii")
        (tmp_path / "x.nii").rename(path)
    elif content == "nrrd":
        write_volume(Volume(mri_like()), tmp_path / "x.nrrd")
        (tmp_path / "x.nrrd").rename(path)
    elif content == "gzipped nifti":
        write_volume(Volume(mri_like()), tmp_path / "x.nii.gz")
        (tmp_path / "x.nii.gz").rename(path)
    elif content == "text":
        path.write_text("patient notes\n")
    elif content == "empty":
        path.write_bytes(b"")
    else:
        write_dicom_series(tmp_path, mri_like().astype(np.int16)[:1], (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), "1.2.826.0.1.3680043.2.1125.30")
        next(tmp_path.glob("*.dcm")).rename(path)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        read_volume(path)


def test_a_dicom_series_with_a_missing_or_damaged_slice_is_refused(tmp_path) -> None:
    array = mri_like((8, 16, 16)).astype(np.int16)
    write_dicom_series(tmp_path, array, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), "1.2.826.0.1.3680043.2.1125.40")
    assert read_volume(tmp_path).array.shape == (8, 16, 16)
    damaged = sorted(tmp_path.glob("*.dcm"))[3]
    truncate(damaged, 0.5)
    with pytest.raises(ValueError, match=rf"missing or unevenly spaced slices.*are 4 mm apart where the others are 2 mm.*{damaged.name}"):
        read_volume(tmp_path)
    damaged.unlink()
    with pytest.raises(ValueError, match="missing or unevenly spaced slices"):
        read_volume(tmp_path)


def test_the_dicom_series_chosen_among_several_is_named_with_how_to_choose_another(tmp_path, capsys) -> None:
    series = tmp_path / "dicom"
    series.mkdir()
    main_uid, other_uid = "1.2.826.0.1.3680043.2.1125.50", "1.2.826.0.1.3680043.2.1125.51"
    write_dicom_series(series, mri_like().astype(np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), main_uid)
    write_dicom_series(series, mri_like(seed=3).astype(np.int16)[:3], (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), other_uid)
    tiny_config("r2r").save(tmp_path / "tiny.json")
    code, events, err = run(["denoise", series, tmp_path / "o.nii.gz", "--config", tmp_path / "tiny.json"], capsys)
    assert code == cli.EXIT_OK, err
    (warning,) = [w for w in events[-1].summary["warnings"] if "DICOM series" in w]
    assert main_uid in warning and other_uid in warning and "folder of their own" in warning


# --- 9. Configuration values are type-checked ---------------------------------------------------------


@pytest.mark.parametrize(
    "data, words",
    [
        ({"prediction": {"tta": "false"}}, "prediction.tta must be true or false"),
        ({"model": {"noise_fusion": "no"}}, "model.noise_fusion must be true or false"),
        ({"model": {"depth": 2.5}}, "model.depth must be a whole number; got 2.5"),
        ({"model": {"depth": True}}, "model.depth must be a whole number; got True"),
        ({"training": {"patch_size": "64"}}, "training.patch_size must be a whole number"),
        ({"training": {"learning_rate": "0.01"}}, "training.learning_rate must be a number"),
        ({"allow_label_map": 1}, "allow_label_map must be true or false"),
        ({"noise": {"model": 3}}, "noise.model must be a string"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused(folder, capsys, data, words) -> None:
    with pytest.raises(ValueError, match=words):
        DenoiseConfig.from_dict(data)
    (folder / "bad.json").write_text(json.dumps(data))
    code, events, _ = run(["denoise", folder / "in.nii.gz", folder / "o.nii.gz", "--config", folder / "bad.json"], capsys)
    refused_before_loading(code, events, "bad.json")
    assert words in events[-1].message


def test_superres_and_panel_settings_are_type_checked_too() -> None:
    from DeepDenoiseLib.slicer.settings import PanelSettings, SuperResSettings

    with pytest.raises(ValueError, match="training.patch_size must be a list of 2 values; got 32"):
        SuperResConfig.from_dict({"training": {"patch_size": 32}})
    with pytest.raises(ValueError, match="cascade must be true or false"):
        SuperResConfig.from_dict({"cascade": "no"})
    with pytest.raises(ValueError, match="testTimeAugmentation must be true or false"):
        PanelSettings.from_parameters({"testTimeAugmentation": "false"})
    with pytest.raises(ValueError, match="patchSize must be a whole number"):
        PanelSettings.from_parameters({"patchSize": 32.5})
    with pytest.raises(ValueError, match="factor must be a whole number"):
        SuperResSettings.from_parameters({"factor": 2.0})
    assert PanelSettings.from_parameters({"budgetMinutes": 2}).to_config().training.budget_seconds == 120.0


def test_an_invalid_json_config_is_named_with_the_place_of_the_error(folder, capsys) -> None:
    (folder / "broken.json").write_text('{"training": {"seed": 1,}}')
    for command in (["denoise", folder / "in.nii.gz", folder / "o.nii.gz"], ["superres", folder / "in.nii.gz", folder / "o.nii.gz"]):
        code, events, _ = run([*command, "--config", folder / "broken.json"], capsys)
        refused_before_loading(code, events, "broken.json': not valid JSON")
        assert "line 1, column 25" in events[-1].message


def test_budgets_are_refused_in_the_unit_of_their_flag(folder, capsys) -> None:
    for command in (["denoise", folder / "in.nii.gz", folder / "o.nii.gz"], ["superres", folder / "in.nii.gz", folder / "o.nii.gz"]):
        code, events, _ = run([*command, "--budget-minutes", "0.001"], capsys)
        refused_before_loading(code, events, "--budget-minutes must lie between 0.0167 (one second) and 10080 (one week) minutes")


# --- 4. Intensities the noise model cannot represent ------------------------------------------------------


def ct_like(shape=SHAPE, air_share: float = 0.4, seed: int = 0) -> np.ndarray:
    """Hounsfield units: air at -1024 around a body of soft tissue (about 40 HU) and bone."""
    phantom = smooth_phantom(shape, seed)
    body = phantom > np.quantile(phantom, air_share)
    values = np.where(body, 40.0 + 1500.0 * np.clip(phantom - 0.6, 0.0, None), -1024.0)
    return (values + np.random.default_rng(seed).normal(0.0, 15.0, shape)).astype(np.float32)


@pytest.mark.parametrize("air_share", [0.15, 0.4, 0.9])
@pytest.mark.parametrize("noise_model", ["rician", "poisson", "speckle"])
def test_ct_in_hounsfield_units_is_refused_by_models_of_non_negative_signal(folder, capsys, air_share, noise_model) -> None:
    write_volume(Volume(ct_like(air_share=air_share)), folder / "ct.nrrd")
    code, events, _ = run(["denoise", folder / "ct.nrrd", folder / "o.nrrd", "--config", folder / "tiny.json",
                           "--noise-model", noise_model], capsys)  # fmt: skip
    assert code == cli.EXIT_BAD_INPUT and "training" not in [e.stage for e in events]
    assert f"the {noise_model} noise model" in events[-1].message and "--noise-model gaussian" in events[-1].message
    assert not (folder / "o.nrrd").exists()


def test_the_gaussian_model_keeps_negative_intensities(folder, capsys) -> None:
    ct = ct_like()
    write_volume(Volume(ct), folder / "ct.nrrd")
    code, events, err = run(["denoise", folder / "ct.nrrd", folder / "o.nrrd", "--config", folder / "tiny.json",
                             "--noise-model", "gaussian"], capsys)  # fmt: skip
    assert code == cli.EXIT_OK, err
    result = read_volume(folder / "o.nrrd").array
    air = ct < -500
    assert np.median(result[air]) < -500 and result.min() < -900  # not clipped to 0 (4 training steps: rough)
    assert events[-1].summary["warnings"] == []


def test_an_all_negative_series_is_refused_under_rician(tmp_path, capsys) -> None:
    series = np.stack([mri_like(seed=s) - 5000.0 for s in range(3)])
    write_volume(Volume(series), tmp_path / "negative.nii.gz")
    tiny_config("r2r").save(tmp_path / "tiny.json")
    code, events, _ = run(["denoise", tmp_path / "negative.nii.gz", tmp_path / "o.nii.gz", "--config", tmp_path / "tiny.json"], capsys)
    assert code == cli.EXIT_BAD_INPUT and "100 %" in events[-1].message and "rician" in events[-1].message


def test_a_few_negative_voxels_under_rician_are_noise_and_said_in_the_warnings(folder, capsys) -> None:
    array = mri_like()
    array[0, :2, :] = -35.0  # interpolation overshoot at an edge: 48 of 3456 voxels, 1.4 %
    array[0, 0, :10] = -300.0  # far below the noise: 10 voxels, 0.3 %
    write_volume(Volume(array), folder / "overshoot.nii.gz")
    code, events, err = run(["denoise", folder / "overshoot.nii.gz", folder / "o.nii.gz", "--config", folder / "tiny.json"], capsys)
    assert code == cli.EXIT_OK, err
    (warning,) = events[-1].summary["warnings"]
    assert "48 voxels (1.39 %) are negative, down to -300" in warning and "--noise-model gaussian" in warning


def test_noise_around_zero_is_not_taken_for_negative_signal() -> None:
    rng = np.random.default_rng(0)
    background = rng.normal(0.0, 10.0, (20, 20, 20))  # half negative, none past 4.8 sigma
    assert "negative" in check_noise_model_intensities(background, "rician", noise_sigma=10.0)[0]
    with pytest.raises(ValueError, match="below -40"):
        check_noise_model_intensities(background - 45.0, "rician", noise_sigma=10.0)
    with pytest.raises(ValueError, match="speckle"):
        check_noise_model_intensities(background, "speckle")
    assert check_noise_model_intensities(background - 1000.0, "gaussian") == []


# --- 10. A constant or non-finite result is an error, not a success ------------------------------------


def test_a_constant_or_non_finite_result_is_refused() -> None:
    noisy = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    with pytest.raises(ResultError, match=r"constant \(every voxel 0\) although the input is not"):
        check_result(noisy, np.zeros_like(noisy))
    broken = noisy.copy()
    broken[0, 0, 0] = np.nan
    with pytest.raises(ResultError, match="1 NaN or infinite"):
        check_result(noisy, broken)
    series = np.stack([noisy, noisy])
    with pytest.raises(ResultError, match=r"frame 2 of 2"):
        check_result(series, np.stack([noisy, np.full_like(noisy, 3.0)]))
    check_result(np.ones_like(noisy), np.ones_like(noisy))  # constant in, constant out: fine
    check_result(noisy, noisy * 0.5)


def test_the_cli_exits_1_and_writes_nothing_when_the_result_is_constant(folder, capsys, monkeypatch) -> None:
    from DeepDenoiseLib.denoise import pipeline

    monkeypatch.setattr(pipeline, "_predict", lambda model, prepared, *args: (np.zeros_like(prepared.array), None, prepared.normalized))
    before = contents(folder)
    code, events, _ = run(["denoise", folder / "in.nii.gz", folder / "o.nii.gz", "--config", folder / "tiny.json"], capsys)
    assert code == cli.EXIT_FAILED and "constant (every voxel 0)" in events[-1].message
    assert "ResultError" not in events[-1].message and contents(folder) == before


@pytest.mark.parametrize("steps", [3, 6, 12])
def test_n2v_3d_after_a_few_steps_follows_the_input_instead_of_returning_zeros(steps) -> None:
    """The issue's tenth defect: batch normalisation's running statistics after a few steps made the
    3D network's output nearly constant, and the Rician correction turned it into zeros. With the
    statistics set from training batches the output follows the input at any step count."""
    from DeepDenoiseLib.denoise.pipeline import denoise_volume

    noisy = mri_like((16, 24, 24))
    config = DenoiseConfig.for_method(
        "n2v", model={"dimensions": "3d"},
        training={"budget_seconds": None, "steps_per_epoch": steps, "max_epochs": 1, "min_steps": 0, "threads": 1, "device": "cpu"},
    )  # fmt: skip
    denoised = denoise_volume(Volume(noisy, spacing=(1.0, 1.0, 1.0)), config).denoised.array  # was a ResultError
    tissue = noisy > 300.0  # the background is noise on zero signal: 0 there is right
    assert np.count_nonzero(denoised[tissue]) > 0.8 * np.count_nonzero(tissue)
    assert np.corrcoef(denoised.ravel(), noisy.ravel())[0, 1] > 0.5


def test_batch_norm_statistics_match_the_training_batches_after_recalibration() -> None:
    import torch

    from DeepDenoiseLib.core.training_loop import recalibrate_batch_norm
    from DeepDenoiseLib.nets.unet import UNet

    torch.manual_seed(0)
    network = UNet(2, 1, 1, 2, 8, "batch")
    batch = torch.randn(4, 1, 16, 16) * 5.0 + 3.0  # far from the initial statistics (mean 0, variance 1)

    def outputs() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            network.eval()
            evaluated = network(batch)
            network.train()
            trained = network(batch)
        network.eval()
        return evaluated, trained

    def mismatch() -> float:
        evaluated, trained = outputs()
        return float((evaluated - trained).abs().mean() / trained.std())

    assert mismatch() > 0.3  # running statistics still at their initial values
    recalibrate_batch_norm(network, lambda: batch, lambda batch: batch)
    first = next(m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not network.training and first.momentum == 0.1
    # What remains is the unbiased variance the running statistics keep (4 x 4 x 4 values a channel
    # at the bottleneck); 0.1 % with batches of 64.
    assert mismatch() < 0.05


# --- 11. Messages say what is true ------------------------------------------------------------------------


def test_superres_messages_do_not_point_to_options_it_lacks(tmp_path, capsys) -> None:
    labels = np.zeros(SHAPE, np.int16)
    labels[:, 4:12, 4:12] = 3
    write_volume(Volume(labels), tmp_path / "labels.nrrd", dtype=np.int16)
    code, events, _ = run(["superres", tmp_path / "labels.nrrd", tmp_path / "o.nrrd", "--self-supervised"], capsys)
    assert code == cli.EXIT_BAD_INPUT and "label map" in events[-1].message
    assert "--force" not in events[-1].message and "nearest-neighbour" in events[-1].message
    write_volume(Volume(np.stack([mri_like(), mri_like(seed=1)])), tmp_path / "series.nii.gz")
    code, events, _ = run(["superres", tmp_path / "series.nii.gz", tmp_path / "o.nrrd", "--self-supervised"], capsys)
    refused_before_loading(code, events, "is a 4D series of 2 volumes; super-resolution works on one 3D volume")
    assert "allow_4d" not in events[-1].message and "denoise_series" not in events[-1].message


@pytest.mark.parametrize(
    "shape, config, words",
    [
        (
            (30, 3, 24),
            {"model": {"depth": 2}},
            (
                "the volume (30x3x24 voxels, k x j x i) is too small for this network: every axis it works on needs "
                "at least 4 voxels; set model.depth to 1"
            ),
        ),
        ((20, 24, 24), {"model": {"depth": 5}, "training": {"patch_size": 32}}, "the volume (20x24x24 voxels, k x j x i)"),
        ((30, 1, 24), {"model": {"depth": 1}}, "too few for a network of any depth"),
    ],
)
def test_a_volume_too_small_for_the_network_is_named_as_given(shape, config, words) -> None:
    from DeepDenoiseLib.denoise.pipeline import denoise_volume

    volume = Volume(np.random.default_rng(0).random(shape).astype(np.float32) + 1.0)
    with pytest.raises(ValueError) as error:
        denoise_volume(volume, tiny_config("n2v", **config))
    assert words in str(error.value)
    assert "shallower" not in str(error.value)


def test_a_device_that_is_not_there_is_said_in_the_warnings(folder, capsys, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, events, err = run(["denoise", folder / "in.nii.gz", folder / "o.nii.gz", "--config", folder / "tiny.json",
                             "--device", "cuda"], capsys)  # fmt: skip
    assert code == cli.EXIT_OK, err
    (warning,) = events[-1].summary["warnings"]
    assert "CUDA was requested but is not available, so the run used the CPU; choose --device cpu" in warning


# --- The same checks behind the Slicer jobs -----------------------------------------------------------


def test_slicer_jobs_refuse_bad_voxels_before_starting_and_leave_the_scene(tmp_path) -> None:
    from DeepDenoiseLib.slicer.denoise_job import NodeDenoiseJob
    from DeepDenoiseLib.slicer.sequences import SequenceDenoiseJob
    from DeepDenoiseLib.slicer.superres_job import NodeSuperResJob
    from Testing.slicer.test_sequences import add_sequence
    from Testing.support.slicer_scene import add_volume, headless_scene

    scene = headless_scene()
    with_nan = mri_like()
    with_nan[1, 2, 3] = np.nan
    labels = np.zeros(SHAPE, np.int16)
    labels[:, 4:12, 4:12] = 2
    nodes = {name: add_volume(scene, name, array) for name, array in
             (("nan", with_nan), ("ct", ct_like()), ("labels", labels), ("good", mri_like()))}  # fmt: skip
    sequence = add_sequence(scene, "negative series", np.stack([ct_like(seed=s) for s in range(3)]))
    nodes_before = scene.GetNumberOfNodes()
    jobs = [
        (NodeDenoiseJob(nodes["nan"], DenoiseConfig(), temp_parent=tmp_path), "'nan': the volume holds 1 NaN"),
        (NodeDenoiseJob(nodes["ct"], DenoiseConfig(), temp_parent=tmp_path), "'ct': the volume has"),
        (NodeDenoiseJob(nodes["labels"], DenoiseConfig(), temp_parent=tmp_path), "looks like a label map"),
        (SequenceDenoiseJob(sequence, DenoiseConfig(), temp_parent=tmp_path), "the rician noise model"),
        (NodeSuperResJob(nodes["labels"], SuperResConfig(mode="self-supervised"), temp_parent=tmp_path), "nearest-neighbour"),
        (NodeSuperResJob(nodes["nan"], SuperResConfig(mode="self-supervised"), temp_parent=tmp_path), "NaN"),
    ]
    for job, words in jobs:
        with pytest.raises(ValueError) as error:
            job.start()
        assert words in str(error.value)
        assert job.run is None
    assert scene.GetNumberOfNodes() == nodes_before
    assert list(tmp_path.iterdir()) == []
    ct_config = DenoiseConfig.for_method("n2v", noise={"model": "gaussian"})
    from DeepDenoiseLib.slicer.nodes import check_volume_content

    assert check_volume_content(ct_like(), ct_config, "ct") == []
    assert check_volume_content(ct_like(), DenoiseConfig.for_method("supervised"), "ct") == []  # no noise model applies


def test_cancelling_a_background_run_asks_the_worker_to_stop_before_killing_it(tmp_path) -> None:
    """Slicer's Cancel: the worker gets SIGTERM first, so the command line can restore what it was
    replacing (a saved model in the per-user folder lies outside the removed work folder)."""
    if os.name == "nt":
        pytest.skip("POSIX signals")
    from DeepDenoiseLib.slicer.background import CANCELLED, BackgroundRun

    marker = tmp_path / "cleaned-up"
    script = (
        "import signal, sys, time, pathlib\n"
        f"def stop(number, frame):\n    pathlib.Path({str(marker)!r}).write_text('SIGTERM')\n    sys.exit(130)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        'print(\'{"stage": "training", "fraction": 0.1}\', flush=True)\n'
        "time.sleep(60)\n"
    )
    run = BackgroundRun([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not run.poll() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.cancel() is True and run.state == CANCELLED
    assert marker.read_text() == "SIGTERM"


# --- Beyond the list ------------------------------------------------------------------------------


def test_a_hot_pixel_of_absurd_value_is_refused_before_it_turns_the_result_into_nan(folder, capsys) -> None:
    array = mri_like()
    brightest = float(array.max())
    array[3, 10, 10] = 1e30  # a faulty export; the network's float32 arithmetic overflowed on it
    write_volume(Volume(array), folder / "hot.nii.gz")
    code, events, _ = run(["denoise", folder / "hot.nii.gz", folder / "o.nii.gz", "--config", folder / "tiny.json"], capsys)
    assert code == cli.EXIT_BAD_INPUT and "training" not in [e.stage for e in events]
    assert "1 voxel(s) lie more than a million times the intensity range beyond it" in events[-1].message
    array[3, 10, 10] = 50.0 * brightest  # a bright vessel or metal: kept
    from DeepDenoiseLib.core.normalization import PercentileNormalizer

    PercentileNormalizer.fit(array, 0.5, 99.5)


@pytest.mark.parametrize("size", [0.0, float("nan")])
def test_a_nifti_header_without_a_usable_voxel_size_is_said_in_the_warnings(folder, capsys, size) -> None:
    path = folder / "no_spacing.nii"
    write_volume(Volume(mri_like(), spacing=(0.8, 0.8, 2.0)), path)
    data = bytearray(path.read_bytes())
    data[80:84] = np.float32(size).tobytes()  # pixdim[1]: the size along i
    path.write_bytes(bytes(data))
    code, events, err = run(["denoise", path, folder / "o.nii.gz", "--config", folder / "tiny.json"], capsys)
    assert code == cli.EXIT_OK, err
    (warning,) = events[-1].summary["warnings"]
    assert "no usable voxel size along i" in warning and "read as 1 mm" in warning
    assert read_volume(folder / "o.nii.gz").spacing == pytest.approx((1.0, 0.8, 2.0))


def test_the_paired_methods_refuse_one_volume_given_as_both_of_a_pair(folder, capsys) -> None:
    """A hurried user passes the same file twice: the network would learn the identity, and the run
    would report success with the noise untouched."""
    source = folder / "in.nii.gz"
    copy = folder / "copy.nii.gz"
    copy.write_bytes(source.read_bytes())
    tiny_config("noise2noise").save(folder / "n2n.json")
    tiny_config("supervised").save(folder / "supervised.json")
    for args, words in [
        (["n2n", source, copy, folder / "o.nii.gz", "--config", folder / "n2n.json"], "the two acquisitions are identical"),
        (["supervised", "--noisy", source, "--clean", copy, "--apply-to", source, folder / "o.nii.gz", "--config",
          folder / "supervised.json"], "noisy volume 1 and its clean partner are identical"),
    ]:  # fmt: skip
        code, events, _ = run(args, capsys)
        assert code == cli.EXIT_BAD_INPUT and words in events[-1].message
        assert "training" not in [e.stage for e in events] and not (folder / "o.nii.gz").exists()


def test_the_panels_status_line_shows_the_runs_warnings() -> None:
    from DeepDenoiseLib.slicer.panel import summary_text
    from DeepDenoiseLib.slicer.superres_panel import superres_summary_text

    summary = {"seconds": 3.0, "warnings": ["CUDA was requested but is not available, so the run used the CPU"]}
    assert summary_text(summary) == "Done in 3 s. Warning: CUDA was requested but is not available, so the run used the CPU."
    assert superres_summary_text(summary).endswith("Warning: CUDA was requested but is not available, so the run used the CPU.")

"""The background runner: a worker process followed through its JSON progress lines, and cancelled.

A scripted stand-in for the CLI (fake_worker.py) makes success, a reported error, a crash and a hang
happen on demand, so these tests are fast and deterministic.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.cli.commands import build_parser
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_volume, write_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.slicer.background import CANCELLED, FAILED, RUNNING, SUCCEEDED, BackgroundRun, make_work_folder, remove_work_folder
from DeepDenoiseLib.slicer.worker_commands import denoise_command, worker_environment
from Testing.support import REPO, fake_worker_command
from Testing.support.fake_worker import CRASH_MESSAGE, ERROR_MESSAGE


def start_fake(tmp_path: Path, mode: str, residual: bool = False) -> BackgroundRun:
    volume = Volume(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), spacing=(0.5, 0.7, 2.0))
    write_volume(volume, tmp_path / "input.nrrd")
    DenoiseConfig.for_method("n2v2", training={"budget_seconds": 42.0}).save(tmp_path / "config.json")
    command = denoise_command(
        tmp_path / "input.nrrd",
        tmp_path / "output.nrrd",
        tmp_path / "config.json",
        tmp_path / "residual.nrrd" if residual else None,
        worker=fake_worker_command(mode),
    )
    return BackgroundRun(command, environment=worker_environment(REPO), cwd=tmp_path)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped by its new parent) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return True


def wait_for_event(run: BackgroundRun, stage: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in run.poll():
            if event.stage == stage:
                return event
        time.sleep(0.02)
    raise AssertionError(f"no {stage!r} event within {timeout} s; log: {run.details}")


def test_denoise_command_is_the_cli_contract():
    command = denoise_command("in.nrrd", "out.nrrd", "c.json", "res.nrrd", "unc.nrrd", python="/opt/PythonSlicer")
    assert command == [
        "/opt/PythonSlicer", "-m", "DeepDenoiseLib", "denoise", "in.nrrd", "out.nrrd",
        "--config", "c.json", "--progress", "json", "--residual", "res.nrrd", "--uncertainty", "unc.nrrd",
    ]  # fmt: skip
    # The real command line understands it.
    args = build_parser().parse_args(command[3:])
    assert (args.command, args.input, args.output, args.config) == ("denoise", Path("in.nrrd"), Path("out.nrrd"), Path("c.json"))
    assert (args.progress, args.residual, args.uncertainty) == ("json", Path("res.nrrd"), Path("unc.nrrd"))
    plain = denoise_command("in.nrrd", "out.nrrd", "c.json")
    assert "--residual" not in plain and "--uncertainty" not in plain
    args = build_parser().parse_args(plain[3:])
    assert args.residual is None and args.uncertainty is None


def test_worker_environment_puts_the_library_first_and_unbuffers_output():
    environment = worker_environment("/lib/parent", base={"PYTHONPATH": "/other", "HOME": "/home/x"})
    assert environment["PYTHONPATH"] == os.pathsep.join(["/lib/parent", "/other"])
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert environment["HOME"] == "/home/x"
    # Threads that do not spin while they wait, unless the user chose otherwise.
    assert environment["OMP_WAIT_POLICY"] == "PASSIVE"
    assert worker_environment(base={"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"


def test_successful_run_reports_stages_in_order_and_writes_the_result(tmp_path):
    run = start_fake(tmp_path, "ok", residual=True)
    seen = []
    assert run.wait(timeout=30, on_event=seen.append) == SUCCEEDED
    stages = [event.stage for event in seen]
    assert stages[0] == "loading" and stages[-1] == "done"
    assert stages.index("training") < stages.index("predicting") < stages.index("writing")
    assert run.summary["method"] == "n2v2" and run.summary["budget_seconds"] == 42.0
    assert run.returncode == 0 and run.error_message == ""
    # Lines that are not events (a library warning, stderr) are kept, not mistaken for events.
    assert "UserWarning: a line that is not a progress event" in run.log_lines
    assert "a warning on stderr" in run.log_lines
    noisy = read_volume(tmp_path / "input.nrrd")
    np.testing.assert_array_equal(read_volume(tmp_path / "output.nrrd").array, noisy.array * 0.5)
    np.testing.assert_array_equal(read_volume(tmp_path / "residual.nrrd").array, noisy.array * 0.5)


def test_reported_error_becomes_the_error_message(tmp_path):
    run = start_fake(tmp_path, "error")
    assert run.wait(timeout=30) == FAILED
    assert run.error_message == ERROR_MESSAGE
    assert run.returncode == 2
    assert not (tmp_path / "output.nrrd").exists()


def test_crash_without_an_error_event_surfaces_the_traceback_line(tmp_path):
    run = start_fake(tmp_path, "crash")
    assert run.wait(timeout=30) == FAILED
    assert run.error_message == CRASH_MESSAGE
    assert "Traceback (most recent call last):" in run.details
    assert run.returncode == 1


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_worker_killed_by_a_signal_says_so():
    command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    run = BackgroundRun(command)
    assert run.wait(timeout=30) == FAILED
    assert run.returncode == -signal.SIGKILL
    assert "killed by signal SIGKILL" in run.error_message and "memory" in run.error_message


def test_poll_never_blocks_and_wait_can_time_out(tmp_path):
    run = start_fake(tmp_path, "hang")
    try:
        started = time.monotonic()
        for _ in range(20):
            run.poll()
        assert time.monotonic() - started < 0.5
        assert run.wait(timeout=0.3) == RUNNING
        assert not run.finished
    finally:
        run.cancel()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to check processes")
@pytest.mark.parametrize("with_psutil", [True, False], ids=["psutil", "process-group"])
def test_cancel_kills_the_whole_process_tree(tmp_path, monkeypatch, with_psutil):
    if with_psutil:
        pytest.importorskip("psutil")
    else:
        monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil now raises ImportError
    run = start_fake(tmp_path, "hang")
    child_pid, escaped_pid = (int(pid) for pid in wait_for_event(run, "training").message.split()[1:])
    try:
        assert process_alive(run.pid) and process_alive(child_pid) and process_alive(escaped_pid)

        assert run.cancel() is True
        assert run.state == CANCELLED and run.finished
        # Without psutil only the worker's process group can be found: a child in a session of its
        # own outlives the cancel there.
        victims = [run.pid, child_pid] + ([escaped_pid] if with_psutil else [])
        deadline = time.monotonic() + 5
        while any(process_alive(pid) for pid in victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in victims if process_alive(pid)] == []
        assert run.cancel() is False  # cancelling twice is harmless
        assert not (tmp_path / "output.nrrd").exists()
    finally:
        for pid in (child_pid, escaped_pid):
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_work_folder_is_created_inside_its_parent_and_removed_with_its_files(tmp_path):
    folder = make_work_folder(tmp_path / "slicer-temp")
    assert folder.parent == tmp_path / "slicer-temp" and folder.name.startswith("DeepDenoise-")
    (folder / "sub").mkdir()
    (folder / "sub" / "input.nrrd").write_bytes(b"x" * 100)
    remove_work_folder(folder)
    assert not folder.exists()
    remove_work_folder(folder)  # already gone: nothing to do

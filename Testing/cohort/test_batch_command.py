"""``deepdenoise batch`` (DeepDenoiseLib.cli.batch): the flags of ``denoise`` from the same settings
table, JSON-lines progress and exit codes on a cluster the test starts (``--scheduler``), arguments
refused with exit code 2 before any work, and Ctrl-C at a terminal (SIGINT to the process group)
cancelling a cohort on the embedded cluster without a half-written output."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from DeepDenoiseLib.cli import commands as cli
from DeepDenoiseLib.cli.batch import FLAGS_OF
from DeepDenoiseLib.cli.common import config_from_args
from DeepDenoiseLib.cli.flags import flag_rows
from DeepDenoiseLib.denoise.config import DenoiseConfig
from Testing.support import REPO
from Testing.support.cohort import CORRUPT_NAME, files_under, quick_config, slow_config, write_cohort


def batch_parser() -> argparse.ArgumentParser:
    commands = next(action for action in cli.build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices["batch"]


def test_batch_offers_every_setting_flag_of_denoise_and_they_set_the_same_settings() -> None:
    offered = {option for action in batch_parser()._actions for option in action.option_strings}
    assert {flag.name for flag, _ in flag_rows(DenoiseConfig, FLAGS_OF)} <= offered
    args = batch_parser().parse_args(
        ["in", "--output-dir", "out", "--budget-minutes", "0.5", "--min-steps", "0", "--noise-model", "gaussian"]
    )
    config = config_from_args(args, FLAGS_OF)
    assert config.training.budget_seconds == 30.0 and config.training.min_steps == 0 and config.noise.model == "gaussian"
    assert config.method == DenoiseConfig.method


def test_a_cohort_on_a_given_scheduler_prints_json_lines_and_exits_1_when_a_scan_failed(tmp_path, cluster, capsys) -> None:
    write_cohort(tmp_path / "in")
    quick_config().save(tmp_path / "tiny.json")
    args = ["batch", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--config", str(tmp_path / "tiny.json")]
    args += ["--scheduler", cluster.scheduler_address, "--residual"]
    code = cli.main([*args, "--progress", "json"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_FAILED, captured.err
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert {event["stage"] for event in events} == {"scan", "cohort", "done"} and events[-1]["stage"] == "done"
    assert events[-1]["summary"]["counts"] == {"done": 3, "skipped": 0, "failed": 1, "cancelled": 0}
    assert any(event.get("status") == "failed" and event["scan"] == CORRUPT_NAME for event in events)

    code = cli.main([*args, "--resume"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_FAILED and captured.out == ""
    assert (
        "4 scans: 0 done, 3 skipped, 1 failed, 0 cancelled" in captured.err and f"failed: {tmp_path / 'in' / CORRUPT_NAME}" in captured.err
    )
    assert f"report: {tmp_path / 'out' / 'deepdenoise_report.csv'}" in captured.err


@pytest.mark.parametrize(
    "words, message",
    [
        ([], "--output-dir"),
        (["--output-dir", "{out}", "--model", "m.safetensors", "--method", "n2v", "--budget-minutes", "1"], "--method, --budget-minutes cannot be used with --model"),
        (["--output-dir", "{out}", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "--workers sizes the embedded cluster"),
        (["--output-dir", "{out}", "--uncertainty"], "--tta"),
        (["--output-dir", "{out}", "--train-scan", "{in}/nothing.nii"], "not one of the cohort's scans"),
        (["--output-dir", "{out}", "--model", "{in}/nothing.safetensors"], "nothing.safetensors"),
        (["--output-dir", "{out}", "--pattern", "*.mha"], "found no volume files or DICOM folders matching '*.mha'"),
        (["--bids", "--output-dir", "{out}"], "not a folder"),
        (["--output-dir", "{out}", "--patch-radius", "3"], "apply to method mppca only; method 'r2r' is a network"),
        (["--output-dir", "{out}", "--train-scan", "{in}/b.nii.gz", "--train-scan", "{in}/c.nii"], "'{in}/c.nii' is not one of"),
    ],
    ids=["no-output-dir", "training-flags-with-model", "workers-and-scheduler", "uncertainty-without-tta", "train-scan-not-in-cohort",
         "missing-model", "nothing-found", "bids-not-a-folder", "series-setting-for-volumes", "second-train-scan-not-in-cohort"],
)  # fmt: skip
def test_bad_arguments_exit_with_2_before_any_work(tmp_path, capsys, words, message) -> None:
    source = tmp_path / "in"
    write_cohort(source, ("b.nii.gz",), corrupt=False)
    given = str(source / "b.nii.gz") if "--bids" in words else str(source)
    filled = [word.format(out=tmp_path / "out", **{"in": source}) for word in words]
    code = cli.main(["batch", given, *filled, "--progress", "json"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT, captured.err
    assert message.format(**{"in": source}) in json.loads(captured.out.splitlines()[-1])["message"]
    assert not (tmp_path / "out").exists()


def test_two_scans_on_one_output_are_refused_up_front(tmp_path, capsys) -> None:
    write_cohort(tmp_path / "in", ("a.nii.gz",), corrupt=False)
    write_cohort(tmp_path / "in", ("site2/a.nii.gz",), corrupt=False)
    code = cli.main(["batch", str(tmp_path / "in" / "a.nii.gz"), str(tmp_path / "in" / "site2"), "--output-dir", str(tmp_path / "out")])
    assert code == cli.EXIT_BAD_INPUT and "would both be written to" in capsys.readouterr().err


def test_ctrl_c_cancels_the_cohort_on_the_embedded_cluster_and_leaves_no_output(tmp_path) -> None:
    """SIGINT to the whole process group, as a terminal sends it: the workers ignore it, the command
    stops the running scans before they write, reports them cancelled and exits 130, and no process
    of the group outlives it."""
    if os.name == "nt":
        pytest.skip("POSIX process groups")
    write_cohort(tmp_path / "in", ("b.nii.gz", "c.nrrd", "d.mha"), corrupt=False)
    slow_config().save(tmp_path / "slow.json")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "DeepDenoiseLib", "batch", str(tmp_path / "in"), "--output-dir", str(out), "--per-scan"]
    command += ["--config", str(tmp_path / "slow.json"), "--workers", "2", "--threads", "1", "--progress", "json"]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if json.loads(line).get("event") == "start":
                break
        time.sleep(1.0)  # both scans are sent: each stops at its first check
        os.killpg(process.pid, signal.SIGINT)
        remaining, errors = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == cli.EXIT_INTERRUPTED, errors
    assert "cancelled (SIGINT)" in errors and json.loads(remaining.splitlines()[-1])["stage"] == "error"
    assert files_under(out) == ["deepdenoise_report.csv", "deepdenoise_report.json"]
    scans = json.loads((out / "deepdenoise_report.json").read_text())["scans"]
    assert [row["status"] for row in scans] == ["cancelled"] * 3
    assert sum(row["message"] == "cancelled before its outputs were written" for row in scans) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("worker processes outlived the command")

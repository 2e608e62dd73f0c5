"""The module's Logic outside Qt (DeepDenoiseLib.slicer.logic, job_runner): what a script hands over
becomes a configuration; one job at a time is followed from the timer until its result or error
reaches the callback, or cancelled with nothing left behind; and the worker's packages are installed
only after the user agreed, through the installer this Slicer has."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from DeepDenoiseLib.core.progress import Cancelled, ProgressEvent
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.slicer import logic
from DeepDenoiseLib.slicer.job_runner import JobRunner
from DeepDenoiseLib.slicer.settings import PanelSettings, SuperResSettings
from DeepDenoiseLib.superres.config import SuperResConfig


class Timer:
    def __init__(self) -> None:
        self.active = False

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class Job:
    """A started job that reports ``events`` over as many polls, then ends with ``result`` or ``error``."""

    def __init__(self, events=(), result=None, error=None) -> None:
        self.events = list(events)
        self.result = result or SimpleNamespace(output_node="output")
        self.error = error
        self.input_node = "input"
        self.cancelled = False

    @property
    def finished(self) -> bool:
        return not self.events

    def poll(self):
        return [self.events.pop(0)] if self.events else []

    def wait(self, on_event=None):
        while self.events:
            on_event(self.events.pop(0))

    def finish(self):
        if self.error is not None:
            raise self.error
        return self.result

    def cancel(self) -> None:
        self.cancelled = True


def test_a_script_hands_over_settings_in_any_of_their_forms() -> None:
    assert logic.denoise_config(None) == DenoiseConfig()
    assert logic.denoise_config({"method": "N2V2", "budgetMinutes": 2}).training.budget_seconds == 120.0
    assert logic.denoise_config(PanelSettings(method="N2V")).method == "n2v"
    config = DenoiseConfig.for_method("structn2v")
    assert logic.denoise_config(config) is config
    node = SimpleNamespace(**{setting.parameter: setting.default for setting in PanelSettings.SETTINGS})
    assert logic.denoise_config(node) == DenoiseConfig()
    assert logic.superres_config({"mode": "Self-supervised", "factor": 3}).factor == 3
    assert (
        logic.superres_config(SuperResSettings()).mode == "self-supervised"
        and logic.superres_config(None) == SuperResSettings().to_config()
    )
    assert isinstance(logic.superres_config(SuperResConfig()), SuperResConfig)
    with pytest.raises(ValueError, match="unknown setting"):
        logic.denoise_config({"budget": 2})


def test_a_job_followed_from_the_timer_hands_its_progress_then_its_result_to_the_callbacks() -> None:
    timer, events, outcome, shown = Timer(), [], [], []
    runner = JobRunner(timer)
    job = Job(events=[ProgressEvent("training", 0.5), ProgressEvent("done", 1.0)])
    assert (
        runner.follow(job, False, events.append, lambda result, error: outcome.append((result, error)), lambda j, r: shown.append(r))
        is None
    )
    assert runner.is_running and timer.active
    runner.poll()
    assert [event.stage for event in events] == ["training"] and not outcome
    runner.poll()
    assert not runner.is_running and not timer.active
    assert outcome == [(job.result, None)] and shown == [job.result] and runner.last_result is job.result


def test_a_failed_job_hands_its_error_to_the_callback_and_keeps_the_last_result() -> None:
    runner, outcome = JobRunner(Timer()), []
    runner.follow(Job(events=[ProgressEvent("error")], error=RuntimeError("worker died")), False, None, lambda r, e: outcome.append(e))
    runner.poll()
    assert isinstance(outcome[0], RuntimeError) and runner.last_result is None and not runner.is_running


def test_cancelling_kills_the_job_and_says_cancelled() -> None:
    timer, outcome = Timer(), []
    runner = JobRunner(timer)
    job = Job(events=[ProgressEvent("training")] * 3)
    runner.follow(job, False, None, lambda r, e: outcome.append(e))
    runner.cancel()
    assert job.cancelled and not timer.active and not runner.is_running and isinstance(outcome[0], Cancelled)
    runner.cancel()  # nothing running: nothing happens
    assert len(outcome) == 1


def test_a_job_waited_for_returns_its_output_node_or_is_cancelled_when_waiting_fails() -> None:
    runner, events = JobRunner(Timer()), []
    assert runner.follow(Job(events=[ProgressEvent("done", 1.0)]), True, events.append) == "output"
    assert [event.stage for event in events] == ["done"] and not runner.is_running
    job = Job(error=Cancelled("the run was cancelled"))
    with pytest.raises(Cancelled):
        runner.follow(job, True)

    class Interrupted(Job):
        def wait(self, on_event=None):
            raise KeyboardInterrupt

    job = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        runner.follow(job, True)
    assert job.cancelled


@pytest.fixture
def missing(monkeypatch):
    """The worker's missing packages, as a list the test changes (installs take them away)."""
    state = ["torch", "scipy>=1.9"]
    monkeypatch.setattr(logic, "missing_worker_packages", lambda path: list(state))
    return state


def test_pytorch_comes_from_the_pytorch_extension_and_a_refusal_stops_there(missing) -> None:
    asked = []
    assert not logic.ensure_worker_packages("requirements.txt", lambda: False, None, asked.append, None)
    assert asked == []  # nothing else was offered once PyTorch was declined

    def install_torch():
        missing.remove("torch")
        return True

    def confirm(names):
        asked.append(names)
        return True

    installed = []

    def pip_install(names):
        installed.append(names)
        missing.clear()

    assert logic.ensure_worker_packages("requirements.txt", install_torch, None, confirm, pip_install)
    assert asked == [["scipy>=1.9"]] and installed == ["scipy>=1.9"]


def test_the_other_packages_are_installed_only_after_the_user_agreed(missing) -> None:
    missing.remove("torch")
    installed = []
    assert not logic.ensure_worker_packages("requirements.txt", None, None, lambda names: False, installed.append)
    assert installed == []


def test_slicers_own_installer_is_used_where_there_is_one(missing) -> None:
    missing.remove("torch")
    assert not logic.ensure_worker_packages("requirements.txt", None, lambda: False, None, None)  # declined

    def pip_ensure():
        missing.clear()
        return True

    assert logic.ensure_worker_packages("requirements.txt", None, pip_ensure, None, None)

"""A denoising run in a separate process, followed through its JSON progress lines and cancellable.

The Slicer module must stay responsive while a model trains for minutes, so the work runs in another
Python process (``PythonSlicer`` inside Slicer, ``sys.executable`` elsewhere) that prints one
:class:`~DeepDenoiseLib.core.progress.ProgressEvent` per line on stdout (``--progress json``). This module
starts that process, reads its output on two threads into a queue, and hands the parsed events to
whoever calls :meth:`BackgroundRun.poll` (a Qt timer in Slicer; a loop in :meth:`BackgroundRun.wait`
for scripts). Nothing here imports Slicer or Qt.

>>> run = BackgroundRun(denoise_command("in.nrrd", "out.nrrd", "config.json"))
>>> state = run.wait(on_event=print)
>>> run.error_message if state == FAILED else "ok"
"""

from __future__ import annotations

import collections
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Callable, Optional, Union

from DeepDenoiseLib.core.progress import ProgressEvent

PathLike = Union[str, "os.PathLike[str]"]

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

#: How many lines of the worker's other output (warnings, tracebacks) are kept for error reports.
LOG_LINES_KEPT = 200
#: How long to keep reading a worker's output after it exited (its pipes close with its last child).
OUTPUT_GRACE_SECONDS = 2.0
#: How long a cancel waits for the killed worker's last output.
CANCEL_GRACE_SECONDS = 0.5
#: How long a cancel gives the worker, asked to stop with SIGTERM, to remove its temporary files and
#: put back what it was replacing (a saved model's file), before it kills the process tree.
TERMINATE_GRACE_SECONDS = 3.0


def make_work_folder(parent: Optional[PathLike] = None) -> Path:
    """A new, empty temporary folder for one run's files (inside ``parent`` if given)."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="DeepDenoise-", dir=None if parent is None else str(parent)))


def remove_work_folder(folder: PathLike, attempts: int = 20) -> None:
    """Delete ``folder`` and everything in it; retries for a moment while a killed worker's files are
    still held open (Windows). Raises ``OSError`` if it still cannot."""
    folder = Path(folder)
    for attempt in range(attempts):
        try:
            shutil.rmtree(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


class BackgroundRun:
    """One worker process, started at construction, whose stdout carries JSON progress events.

    :meth:`poll` never blocks: it returns the events that arrived since the last call and updates
    :attr:`state` (``running``, then ``succeeded``, ``failed`` or ``cancelled``). Lines that are not
    events (library warnings, a traceback on stderr) are kept in :attr:`log_lines`. A run has failed
    when the worker exits with a non-zero code or reports stage ``error``; :attr:`error_message` then
    holds the worker's own words.
    """

    def __init__(
        self,
        command: Sequence[str],
        environment: Optional[Mapping[str, str]] = None,
        cwd: Optional[PathLike] = None,
    ) -> None:
        self.command = list(command)
        self.state = RUNNING
        self.events: list[ProgressEvent] = []
        self.log_lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES_KEPT)
        self.error_message = ""
        self.returncode: Optional[int] = None
        self._stderr_lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES_KEPT)
        self._queue: queue.Queue[Union[ProgressEvent, str]] = queue.Queue()
        self._cancel_requested = False
        self._exited_at: Optional[float] = None
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(environment) if environment is not None else None,
            cwd=None if cwd is None else str(cwd),
            text=True,
            encoding="utf-8",
            errors="replace",
            **_new_process_group_options(),
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self._process.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self._process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @property
    def last_event(self) -> Optional[ProgressEvent]:
        return self.events[-1] if self.events else None

    @property
    def summary(self) -> dict:
        """The closing figures of the ``done`` event (empty until the run succeeded)."""
        for event in reversed(self.events):
            if event.stage == "done":
                return event.summary
        return {}

    @property
    def details(self) -> str:
        """The worker's non-event output, newest last: what to show under "details" on failure."""
        return "\n".join(self.log_lines)

    def poll(self) -> list[ProgressEvent]:
        """The events received since the last call, without waiting; settles :attr:`state` once the
        worker has exited and all its output has been read."""
        new_events = self._drain()
        if self.state == RUNNING and self._process.poll() is not None:
            if self._exited_at is None:
                self._exited_at = time.monotonic()
            readers_done = not any(reader.is_alive() for reader in self._readers)
            # A leftover grandchild can hold the pipes open after the worker exited: stop waiting for it.
            if readers_done or time.monotonic() - self._exited_at > OUTPUT_GRACE_SECONDS:
                new_events += self._drain()
                self._settle()
        return new_events

    def wait(self, timeout: Optional[float] = None, on_event: Optional[Callable[[ProgressEvent], None]] = None) -> str:
        """Block until the run ends (or ``timeout`` seconds pass), handing each event to ``on_event``;
        returns :attr:`state` (still ``running`` after a timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if self.finished or (deadline is not None and time.monotonic() >= deadline):
                return self.state
            time.sleep(0.05)

    def cancel(self) -> bool:
        """Stop the worker and every process it started; True if it was still running. The worker
        first gets SIGTERM, which the command line handles like Ctrl-C (all outputs or none, no
        temporary file left: a model saved outside the work folder matters), and a moment to exit;
        then the whole tree is killed. The state becomes ``cancelled`` once the process is reaped."""
        if self.finished:
            return False
        self._cancel_requested = True
        _kill_process_tree(self._process)
        self._process.wait()
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        for reader in self._readers:
            reader.join(timeout=max(deadline - time.monotonic(), 0.0))
        self._drain()
        self._settle()
        return True

    def _drain(self) -> list[ProgressEvent]:
        new_events: list[ProgressEvent] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return new_events
            if isinstance(item, ProgressEvent):
                self.events.append(item)
                new_events.append(item)
            else:
                self.log_lines.append(item)

    def _settle(self) -> None:
        self.returncode = self._process.returncode
        error_events = [event for event in self.events if event.stage == "error"]
        if self._cancel_requested:
            self.state = CANCELLED
        elif self.returncode == 0 and not error_events:
            self.state = SUCCEEDED
        else:
            self.state = FAILED
            self.error_message = self._failure_message(error_events)

    def _failure_message(self, error_events: list[ProgressEvent]) -> str:
        if error_events and error_events[-1].message:
            return error_events[-1].message
        stderr = [line.strip() for line in self._stderr_lines if line.strip()]
        if stderr:
            return stderr[-1]
        code = self.returncode if self.returncode is not None else 0
        if code < 0:
            name = _signal_name(-code)
            hint = " (the system may have run out of memory)" if name == "SIGKILL" else ""
            return f"the worker was killed by signal {name}{hint}"
        return f"the worker stopped with exit code {code} without saying why"

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                self._queue.put(ProgressEvent.from_json(text))
            except ValueError:
                self._queue.put(text)
        stream.close()

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            text = line.rstrip("\r\n")
            self._stderr_lines.append(text)
            self._queue.put(text)
        stream.close()


def _new_process_group_options() -> dict:
    """Popen options that put the worker in its own process group, so that the whole group can be
    killed without psutil; on Windows also no console window."""
    if os.name == "nt":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def _kill_process_tree(process: subprocess.Popen, grace_seconds: float = TERMINATE_GRACE_SECONDS) -> None:
    """Kill ``process`` and all its descendants: its process group (POSIX), plus, with psutil, every
    descendant that left the group; without psutil on Windows, ``taskkill /T``. On POSIX the process
    first gets SIGTERM and up to ``grace_seconds`` to exit by itself."""
    try:
        import psutil
    except ImportError:
        psutil = None
    descendants = []
    if psutil is not None:
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    if os.name != "nt" and grace_seconds > 0 and process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=grace_seconds)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    if os.name != "nt":
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elif psutil is None and process.poll() is None:
        subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    for descendant in descendants:
        try:
            descendant.kill()
        except psutil.Error:
            pass
    if process.poll() is None:
        process.kill()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)

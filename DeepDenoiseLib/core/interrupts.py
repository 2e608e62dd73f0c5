"""How a run reacts to SIGINT (Ctrl-C) and SIGTERM (a cluster scheduler, a process manager, ``kill``).

Both end a command-line run the same way: :func:`command_signals` turns either signal into
:class:`Interrupted` (a ``KeyboardInterrupt``), so the run unwinds through the same clean-up as for
Ctrl-C (temporary files removed, files that existed before restored) and the command exits with 130.

While files are renamed into place, :func:`shielded` holds both signals back, so that an interrupt
cannot split a set of outputs; one that arrives meanwhile is handled when the renaming is done.
(Blocking them with ``pthread_sigmask`` would not do: it blocks one thread, and torch's threads
would take the signal.)
Once a run's outputs are all in place (:func:`outputs_in_place`), an interrupt no longer cancels it:
the outputs stay and the run ends as it would have.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Optional

#: The signals a run treats as a request to stop.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop by a signal (SIGINT or SIGTERM)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(_signal_name(signal_number))
        self.signal_number = signal_number


class _State:
    """Whether the current command's outputs are in place, and a signal that came after that."""

    def __init__(self) -> None:
        self.outputs_in_place = False
        self.late_signal: Optional[int] = None


_state = _State()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signal_number: int, frame: Optional[FrameType]) -> None:
    if _state.outputs_in_place:
        _state.late_signal = signal_number
        return
    raise Interrupted(signal_number)


@contextmanager
def command_signals() -> Iterator[None]:
    """For the duration of one command: SIGINT and SIGTERM raise :class:`Interrupted` until the
    command's outputs are in place, and are noted but ignored after that. The previous handlers come
    back at the end. Outside the main thread (where Python cannot set handlers) it changes nothing."""
    _state.outputs_in_place = False
    _state.late_signal = None
    if not _in_main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    for number in _replaceable(STOP_SIGNALS):
        previous[number] = signal.signal(number, _handler)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _state.outputs_in_place = False


def outputs_in_place() -> None:
    """Says that the current command's outputs are all written: a later interrupt no longer cancels it."""
    _state.outputs_in_place = True


@contextmanager
def shielded() -> Iterator[None]:
    """Holds SIGINT and SIGTERM back while the block runs: one that arrives meanwhile is noted, and
    handled as it would have been (by the handler that was in place) when the block ends. Signals
    are handled in the main thread only, so elsewhere this changes nothing."""
    if not _in_main_thread():
        yield
        return
    received: list[int] = []

    def defer(signal_number: int, frame: Optional[FrameType]) -> None:
        received.append(signal_number)

    previous = {number: signal.signal(number, defer) for number in _replaceable(STOP_SIGNALS)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            _deliver(received[0], previous[received[0]])


def _replaceable(numbers: tuple[int, ...]) -> list[int]:
    """The signals whose handler Python can put back afterwards: not those whose handler was set
    outside Python (an application embedding it), for which ``getsignal`` says None."""
    return [number for number in numbers if signal.getsignal(number) is not None]


def _deliver(signal_number: int, handler: Any) -> None:
    """Handles a signal held back by :func:`shielded` as ``handler`` (what was in place) would have."""
    if callable(handler):
        handler(signal_number, None)
    elif handler in (signal.SIG_DFL, None):
        os.kill(os.getpid(), signal_number)  # the default action, now that it is in place again


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

"""Set-up of every worker process the embedded cluster starts (a Dask preload: ``dask_setup`` runs in
the worker as it starts, and again in each worker started in place of one that died).

Ctrl-C at a terminal sends SIGINT to every process of the foreground group, the workers included.
The command line handles it (cancelling the cohort: each running scan stops at its next check and
writes nothing); a worker that took it itself would die mid-scan instead, so workers ignore it.
SIGTERM still ends a worker, as the cluster does when it closes.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

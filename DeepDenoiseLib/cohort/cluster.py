"""The Dask cluster a cohort runs on: an embedded ``LocalCluster`` sized by a worker plan
(workers.py), or an existing cluster given by its scheduler's address (or a connected ``Client``).

The embedded cluster's workers are processes running one scan at a time, with the plan's torch
threads and, on GPUs, one ``CUDA_VISIBLE_DEVICES`` each, without Dask's ``MALLOC_TRIM_THRESHOLD_``
(it slows torch, see :func:`pre_spawn_environment`); they ignore SIGINT (worker_setup.py). A
worker that dies (out of memory: Dask's nanny ends a worker past its memory limit) fails the scan it
was running at once (``allowed-failures`` 0) rather than retrying it on the next worker, and is
replaced. An existing cluster keeps its own settings.

>>> with cohort_client(None, plan_workers(cpu_cores(), [], "cpu")) as client:
...     client.submit(run_scan, job).result()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional, Union

from DeepDenoiseLib.cohort.workers import WorkerPlan
from DeepDenoiseLib.core.validation import InputError

#: The module each embedded worker runs as it starts.
WORKER_SETUP = "DeepDenoiseLib.cohort.worker_setup"
#: Dask's variables for a worker process's start, and the one of them that slows torch (see pre_spawn_environment).
PRE_SPAWN_ENVIRONMENT = "distributed.nanny.pre-spawn-environ"
SLOW_MALLOC_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
#: How long to wait for an existing cluster's scheduler to answer.
CONNECT_TIMEOUT_SECONDS = 30


@contextmanager
def cohort_client(scheduler: Union[str, Any, None], plan: Optional[WorkerPlan]) -> Iterator[Any]:
    """A ``distributed.Client`` for the cohort: ``scheduler`` itself when it is a Client, connected
    to the scheduler at the address ``scheduler``, or (None) to an embedded cluster started by
    ``plan``, closed at the end with the process environment put back as it was (Dask's nanny sets
    thread variables in it when it starts workers)."""
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_SECONDS)
        except (OSError, TimeoutError, ValueError) as error:
            raise InputError(f"could not connect to the Dask scheduler at '{scheduler}': {error}") from error
        with client:
            yield client
        return
    if plan is None:
        raise ValueError("an embedded cluster needs a worker plan")
    environment = dict(os.environ)
    try:
        with start_local_cluster(plan) as cluster, Client(cluster) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(environment)


def start_local_cluster(plan: WorkerPlan) -> Any:
    """A ``LocalCluster`` of ``plan.workers`` processes, each running one task at a time with
    ``plan.threads`` torch threads, sharing the memory evenly; on GPUs each sees only its own."""
    import dask
    from distributed import LocalCluster

    environment = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads)}
    options: dict[str, Any] = dict(
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
        preload=[WORKER_SETUP],
        env=environment,
        memory_limit=1.0 / plan.workers,
    )
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, PRE_SPAWN_ENVIRONMENT: pre_spawn_environment()}):
        if not plan.uses_gpus:
            return LocalCluster(n_workers=plan.workers, **options)
        cluster = LocalCluster(n_workers=0, **options)
        for index, gpu in enumerate(plan.gpus):
            spec = cluster.new_spec
            worker_environment = dict(environment, CUDA_VISIBLE_DEVICES=str(gpu))
            cluster.worker_spec[f"gpu-{index}"] = {"cls": spec["cls"], "options": dict(spec["options"], env=worker_environment)}
        cluster.scale(plan.workers)
        cluster.wait_for_workers(plan.workers)  # their nannies read the configuration above as they start
        return cluster


def pre_spawn_environment() -> dict[str, Any]:
    """Dask's variables for a worker process's start, without ``MALLOC_TRIM_THRESHOLD_``: set at all,
    it turns off glibc's adaptive mmap threshold, and torch's training then runs 2 to 3 times slower
    (measured here: 29 to 41 s instead of 12 to 16 s for the same 50 steps)."""
    import dask

    return {name: value for name, value in dict(dask.config.get(PRE_SPAWN_ENVIRONMENT, {})).items() if name != SLOW_MALLOC_VARIABLE}


def worker_threads(client: Any) -> int:
    """How many scans the cluster runs at once now: the sum of its workers' threads."""
    return int(sum(client.nthreads().values()))


def check_workers_import_library(client: Any) -> dict[str, str]:
    """Where each worker imports DeepDenoiseLib from (task.library_location); refuses (InputError)
    a cluster whose workers cannot import it, before any scan is sent."""
    from DeepDenoiseLib.cohort.task import library_location

    try:
        return dict(client.run(library_location))
    except Exception as error:  # noqa: BLE001 - what a remote worker raises comes back as its own type
        raise InputError(
            f"the Dask workers cannot run DeepDenoise ({type(error).__name__}: {error}); install deepdenoise and torch "
            "in the workers' environment"
        ) from error

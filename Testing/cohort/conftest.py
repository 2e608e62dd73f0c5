"""The Dask cluster the cohort tests share: the embedded cluster batch starts (two worker processes,
one torch thread each), started once for the folder; tests reach it by its address, as
``--scheduler`` does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="package")
def cluster() -> Iterator[Any]:
    pytest.importorskip("distributed")
    from DeepDenoiseLib.cohort.cluster import start_local_cluster
    from DeepDenoiseLib.cohort.workers import WorkerPlan

    environment = dict(os.environ)  # Dask's nanny sets thread variables in this process when it starts workers
    with start_local_cluster(WorkerPlan(2, 1, (None, None))) as local:
        yield local
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture(scope="package")
def client(cluster) -> Iterator[Any]:
    from distributed import Client

    with Client(cluster) as connected:
        yield connected

"""The embedded cluster's plan (DeepDenoiseLib.cohort.workers): workers and torch threads by cores,
one worker per GPU pinned to it, the GPUs found without torch (here from a fake list: no GPU on
the machines the tests run on)."""

from __future__ import annotations

import os

import pytest

from DeepDenoiseLib.cohort.workers import WorkerPlan, plan_workers, visible_gpus


@pytest.mark.parametrize(
    "cores, workers, threads, expected",
    [(16, None, None, (8, 2)), (2, None, None, (1, 2)), (1, None, None, (1, 1)), (3, None, None, (1, 3)), (8, 3, None, (3, 2)),
     (8, None, 4, (2, 4)), (2, 2, 1, (2, 1))],
)  # fmt: skip
def test_on_the_cpu_half_as_many_workers_as_cores_with_two_threads_each(cores, workers, threads, expected) -> None:
    plan = plan_workers(cores, [], "auto", workers, threads)
    assert (plan.workers, plan.threads) == expected and not plan.uses_gpus and plan.gpus == (None,) * plan.workers


def test_one_worker_per_gpu_each_pinned_to_its_own_and_sharing_the_cores() -> None:
    plan = plan_workers(16, ["0", "1", "GPU-5f2c"], "auto")
    assert plan == WorkerPlan(3, 5, ("0", "1", "GPU-5f2c")) and plan.uses_gpus
    assert plan.describe() == "3 workers on GPUs (CUDA devices 0, 1, GPU-5f2c), 5 torch threads each"
    assert plan_workers(16, ["0", "1"], "cuda", workers=4).gpus == ("0", "1", "0", "1")


def test_gpus_are_left_alone_when_the_run_asks_for_the_cpu() -> None:
    assert not plan_workers(16, ["0"], "cpu").uses_gpus and not plan_workers(16, ["0"], "mps").uses_gpus


def test_a_plan_of_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        plan_workers(4, [], "auto", workers=0)


def test_visible_gpus_follow_cuda_visible_devices_else_nvidia_smi() -> None:
    never = lambda: pytest.fail("nvidia-smi asked although CUDA_VISIBLE_DEVICES is set")  # noqa: E731
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}, never) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, never) == [] and visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, never) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, never) == ["0"]
    assert visible_gpus({}, lambda: "0\n1\n") == ["0", "1"]
    assert visible_gpus({}, lambda: None) == [] and visible_gpus({}, lambda: "No devices were found\n") == []


def test_gpu_workers_each_see_only_their_own_device() -> None:
    """The embedded cluster of a GPU plan (no GPU is needed to start it: the workers only get the
    variable); each worker also goes without Dask's MALLOC_TRIM_THRESHOLD_."""
    pytest.importorskip("distributed")
    from distributed import Client

    from DeepDenoiseLib.cohort.cluster import start_local_cluster

    environment = dict(os.environ)  # Dask's nanny sets variables in this process when it starts workers
    try:
        with start_local_cluster(WorkerPlan(2, 1, ("0", "1"))) as cluster, Client(cluster) as client:
            seen = client.run(lambda: (os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("MALLOC_TRIM_THRESHOLD_")))
            names = sorted(worker["name"] for worker in client.scheduler_info()["workers"].values())
    finally:
        os.environ.clear()
        os.environ.update(environment)
    assert sorted(seen.values()) == [("0", None), ("1", None)] and names == ["gpu-0", "gpu-1"]

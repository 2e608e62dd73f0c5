"""Cohorts: ``deepdenoise batch`` and :func:`~DeepDenoiseLib.cohort.api.batch_denoise` denoise many scans
as independent tasks on a Dask cluster (an embedded ``LocalCluster`` by default, or one given by its
scheduler's address).

Finding the scans (scans.py, bids.py), naming and checking their outputs (outputs.py), the worker
plan (workers.py) and the cluster (cluster.py, worker_setup.py), the task one scan is (task.py,
jobs.py), the loop that runs them (engine.py), the shared model (shared_model.py), resuming
(resume.py), progress (progress.py) and the report (report.py); api.py puts them together.
Nothing here is imported by ``import DeepDenoiseLib``, and only the workers load torch.
"""

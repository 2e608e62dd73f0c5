"""``--resume``: which scans an earlier run already wrote. Writes are all or none, so a scan whose
every planned output exists is complete, unless the earlier run's report says that the scan failed
(its outputs are then older still, and it is run again).

>>> to_skip = scans_to_skip(plans, read_report_rows(output_dir), [str(scan.source) for scan in scans])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Optional

from DeepDenoiseLib.cohort.outputs import ScanOutputs
from DeepDenoiseLib.cohort.report import ScanRow

#: The statuses of an earlier row that let a scan with all its outputs be skipped.
COMPLETE_STATUSES = ("done", "skipped")


def is_complete(outputs: ScanOutputs, previous: Optional[ScanRow]) -> bool:
    """Whether a scan can be skipped: all its outputs exist and no earlier row says otherwise."""
    if not all(path.is_file() for path in outputs.paths):
        return False
    return previous is None or previous.status in COMPLETE_STATUSES


def scans_to_skip(plans: Sequence[ScanOutputs], previous: Mapping[str, ScanRow], sources: Sequence[str]) -> dict[int, ScanRow]:
    """The indices of the scans to skip, each with its ``skipped`` row: the earlier run's figures
    (noise sigma, device, model) where its report has them."""
    skipped = {}
    for index, (plan, source) in enumerate(zip(plans, sources)):
        earlier = previous.get(source)
        if is_complete(plan, earlier):
            base = earlier if earlier is not None else ScanRow(source, str(plan.output), "skipped")
            skipped[index] = dataclasses.replace(
                base, output=str(plan.output), status="skipped", seconds=0.0, message="its outputs are from an earlier run"
            )
    return skipped

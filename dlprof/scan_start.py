"""What ``dlprof scan`` settles before its first trial: when the command started (its budget
covers the start-up), the target's digest, and the saved scan that ``--resume`` goes on from."""
from __future__ import annotations

import os
import time

from dlprof.errors import DlprofError

# Writing the reports and exiting after the last trial: 0.75 s and 0.74 s in a quick scan of
# recipes/startup_cost.py on our 2-core machine
FINISH_RESERVE_S = 1.5


def process_started_at() -> float:
    """When this command started, on the time.monotonic() clock: the budget covers its start-up
    (importing torch takes over a second) too."""
    import psutil

    try:
        age = time.time() - psutil.Process().create_time()
    except psutil.Error:
        age = 0.0
    return time.monotonic() - max(0.0, age)


def file_sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def resumable(out: str, target: str, digest: str):
    """The saved, unfinished scan in ``out`` of the same target, unchanged since."""
    from dlprof.records import load_json
    from dlprof.scan_records import ScanResult

    path = os.path.join(out, "results.json")
    if not os.path.exists(path):
        raise DlprofError(f"nothing to resume: no {path} (run the scan without --resume first)")
    result = ScanResult.from_dict(load_json(path))
    if result.target != target:
        raise DlprofError(f"{path} is a scan of {result.target}, not {target}: give the same target or another --out")
    if result.target_sha256 and digest and result.target_sha256 != digest:
        raise DlprofError(f"{target} changed since the scan in {out} began: its trials would not compare; "
                          "scan again without --resume")
    if result.complete:
        raise DlprofError(f"the scan in {out} is complete: nothing to resume (drop --resume to scan again)")
    result.notes = [n for n in result.notes if not n.startswith("interrupted:")]
    result.notes.append(f"resumed after an interruption: the first {len(result.trials)} trials come from the earlier run")
    return result

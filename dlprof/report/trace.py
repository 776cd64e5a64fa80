"""A profile run as a Chrome trace-event file, for Perfetto (ui.perfetto.dev) or chrome://tracing.

One track for the training loop (wait, transfer, step and each epoch's start-up), one per
worker (fetch, collate), and one for the pin-memory thread. Times are microseconds from the
start of the run.
"""
from __future__ import annotations

import json

from dlprof.records import MAIN_PROCESS, ProfileRun

_LOOP_TID, _PIN_TID, _WORKER_TID0 = 0, 1, 10


def _worker_tid(worker_id: int) -> int:
    return _LOOP_TID if worker_id == MAIN_PROCESS else _WORKER_TID0 + worker_id


class TraceRenderer:
    def render(self, run: ProfileRun) -> str:
        origin = run.epochs[0].iter_start_ns if run.epochs else 0
        events: list[dict] = [
            {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "dlprof: DataLoader"}},
            {"ph": "M", "name": "thread_name", "pid": 1, "tid": _LOOP_TID, "args": {"name": "training loop (main)"}},
        ]

        def span(name: str, tid: int, start_ns: int, end_ns: int, **args) -> None:
            if end_ns > start_ns:
                events.append({"ph": "X", "name": name, "pid": 1, "tid": tid, "ts": (start_ns - origin) / 1e3,
                               "dur": (end_ns - start_ns) / 1e3, "args": args})

        workers = sorted({b.worker_id for b in run.batches if b.worker_id != MAIN_PROCESS})
        for w in workers:
            events.append({"ph": "M", "name": "thread_name", "pid": 1, "tid": _worker_tid(w),
                           "args": {"name": f"worker {w}"}})
        if any(b.pin_end_ns for b in run.batches):
            events.append({"ph": "M", "name": "thread_name", "pid": 1, "tid": _PIN_TID,
                           "args": {"name": "pin-memory thread"}})
        for e in run.epochs:
            if e.first_batch_ns:
                span("startup", _LOOP_TID, e.iter_start_ns, e.first_batch_ns, epoch=e.epoch,
                     workers_reused=e.workers_reused)
        for b in run.batches:
            ids = {"epoch": b.epoch, "batch": b.index, "samples": b.samples}
            producer = _worker_tid(b.worker_id)
            if b.fetch_start_ns:
                span("fetch", producer, b.fetch_start_ns, b.fetch_end_ns, pid=b.worker_pid, **ids)
                span("collate", producer, b.collate_start_ns, b.collate_end_ns, **ids)
            span("pin", _PIN_TID, b.pin_start_ns, b.pin_end_ns, **ids)
            span("wait", _LOOP_TID, b.wait_start_ns, b.wait_end_ns, **ids)
            after_copy = b.wait_end_ns + b.transfer_ns
            span("transfer", _LOOP_TID, b.wait_end_ns, after_copy, **ids)
            span("step", _LOOP_TID, after_copy, after_copy + b.step_ns, **ids)
        return json.dumps({"traceEvents": events, "displayTimeUnit": "ms"})

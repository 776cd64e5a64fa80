"""Tables the reports draw from, derived from scan and profile records. Pure, no plotting.

Column names carry units (``samples_per_s``, ``fetch_ms``, ``start_ms``).
"""
from __future__ import annotations

import pandas as pd

from dlprof.records import MAIN_PROCESS, ProfileRun
from dlprof.scan_records import ScanResult

PRODUCER_STAGES = ("fetch", "collate", "pin", "transfer")
LOOP_STAGES = ("wait", "step")


def trials_frame(scan: ScanResult) -> pd.DataFrame:
    """One row per successful trial (final re-measurements included), in the order run."""
    rows = []
    for i, t in enumerate(scan.trials, 1):
        if t.status != "ok":
            continue
        s = t.settings
        rows.append({
            "trial": i, "purpose": t.purpose, "num_workers": s.num_workers, "prefetch_factor": s.prefetch_factor,
            "persistent_workers": s.persistent_workers, "pin_memory": s.pin_memory, "batch_size": s.batch_size,
            "samples_per_s": t.samples_per_s, "ci_pct": t.ci_pct, "wait_pct": t.wait_pct,
            "is_baseline": scan.baseline is not None and s == scan.baseline.settings,
            "is_recommendation": scan.recommendation is not None and s == scan.recommendation.settings,
            **{f"{k}_ms": t.stage_ms.get(k, 0.0) for k in PRODUCER_STAGES + LOOP_STAGES},
        })
    return pd.DataFrame(rows)


def series_label(row) -> str:
    """The settings other than num_workers: one line of the throughput plot each."""
    return (f"prefetch={int(row.prefetch_factor) if row.num_workers else '-'}, "
            f"persistent={row.persistent_workers if row.num_workers else '-'}, "
            f"pin={row.pin_memory}, batch={row.batch_size}")


def timeline_frame(run: ProfileRun, max_batches: int = 400) -> pd.DataFrame:
    """Spans to draw per track: each worker's fetch and collate, the loop's wait and step."""
    origin = run.epochs[0].iter_start_ns if run.epochs else 0
    rows = []
    for b in run.batches[:max_batches]:
        track = "main" if b.worker_id == MAIN_PROCESS else f"worker {b.worker_id}"
        for stage, start, end in (("fetch", b.fetch_start_ns, b.fetch_end_ns),
                                  ("collate", b.collate_start_ns, b.collate_end_ns),
                                  ("pin", b.pin_start_ns, b.pin_end_ns)):
            if end > start > 0:
                rows.append({"track": track if stage != "pin" else "pin thread", "stage": stage,
                             "start_ms": (start - origin) / 1e6, "duration_ms": (end - start) / 1e6})
        rows.append({"track": "loop", "stage": "wait", "start_ms": (b.wait_start_ns - origin) / 1e6,
                     "duration_ms": (b.wait_end_ns - b.wait_start_ns) / 1e6})
        rows.append({"track": "loop", "stage": "step", "start_ms": (b.wait_end_ns - origin) / 1e6,
                     "duration_ms": (b.transfer_ns + b.step_ns) / 1e6})
    return pd.DataFrame(rows, columns=["track", "stage", "start_ms", "duration_ms"])


def process_frame(run: ProfileRun) -> pd.DataFrame:
    """Sampler ticks: CPU % and RSS per process over time, workers labelled by their id."""
    origin = run.epochs[0].iter_start_ns if run.epochs else 0
    worker_of = {b.worker_pid: b.worker_id for b in run.batches if b.worker_id != MAIN_PROCESS}
    rows = [{"t_s": (p.t_ns - origin) / 1e9, "process": "main" if p.role == "main" else
             (f"worker {worker_of[p.pid]}" if p.pid in worker_of else f"pid {p.pid}"),
             "cpu_pct": p.cpu_pct, "rss_mb": p.rss_bytes / 2**20} for p in run.processes]
    return pd.DataFrame(rows, columns=["t_s", "process", "cpu_pct", "rss_mb"])


def gpu_frame(run: ProfileRun) -> pd.DataFrame:
    origin = run.epochs[0].iter_start_ns if run.epochs else 0
    rows = [{"t_s": (g.t_ns - origin) / 1e9, "gpu": g.index, "util_pct": g.util_pct,
             "mem_used_mb": g.mem_used_bytes / 2**20} for g in run.gpus]
    return pd.DataFrame(rows, columns=["t_s", "gpu", "util_pct", "mem_used_mb"])


# -- what a results file keeps of a run, so that reports need no per-trial dump ------------

DECIMALS = 3  # times kept to the microsecond (ms columns) or the millisecond (s columns)


def to_columns(frame: pd.DataFrame) -> dict[str, list]:
    """A table as column name -> values (floats rounded), the form a results file keeps."""
    return {name: [round(v, DECIMALS) if isinstance(v, float) else v for v in frame[name].tolist()]
            for name in frame.columns}


def from_columns(columns: dict[str, list], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({n: columns.get(n, []) for n in names}, columns=names)


TIMELINE_COLUMNS = ["track", "stage", "start_ms", "duration_ms"]
PROCESS_COLUMNS = ["t_s", "process", "cpu_pct", "rss_mb"]
GPU_COLUMNS = ["t_s", "gpu", "util_pct", "mem_used_mb"]


def pruned(tree: dict, total: int | None = None, share: float = 1e-3) -> dict:
    """A call tree without the nodes under ``share`` of the root's samples: a flame graph 1,000
    units wide leaves those out anyway (narrower than one unit), so it draws the same."""
    total = tree["value"] if total is None else total
    return {"name": tree["name"], "value": tree["value"],
            "children": [pruned(c, total, share) for c in tree["children"] if c["value"] >= share * total]}

"""Judgements about one measured trial that the search (sweep.policy, sweep.search) and the
diagnosis (analysis.bottleneck) both make: each written once, its threshold named once with its
reason. Pure: records in, answers out."""
from __future__ import annotations

from dlprof.analysis.thresholds import MIN_GAIN
from dlprof.scan_records import TrialResult

# A process computes when the CPU it used is at least this share of the time it was busy; below
# it, most of its busy time went to waiting (storage, network, sleep, locks). Half: midway
# between pure compute (CPU = busy time) and pure waiting (CPU near 0), so a clear case of either
# stays on its side whatever the sampling noise of the two readings.
COMPUTE_SHARE = 0.5
# The trial's processes together used at least this share of the cores: more workers would only
# share them (a fifth left idle is more than scheduling jitter leaves on a loaded machine).
CORES_BUSY = 0.8
# ... and at most this share: the cores had room to spare, so the CPU cannot be what limits
# throughput. Apart from CORES_BUSY on purpose: between the two, neither judgement is made.
CORES_SPARE = 0.6


def computes(cpu_pct: float, busy_pct: float) -> bool:
    """A process that used ``cpu_pct`` of a core while busy ``busy_pct`` of the time computed."""
    return cpu_pct >= COMPUTE_SHARE * max(busy_pct, 1.0)


def fetch_usage(t: TrialResult) -> tuple[float, float]:
    """(CPU % of a core, busy % of the time) of what fetched the batches: one worker on average,
    or, with num_workers=0, the main process, which fetches while the loop waits."""
    if t.settings.num_workers:
        return t.worker_cpu_pct, t.worker_busy_pct
    s = t.stage_ms
    wait, step = s.get("wait", 0.0), s.get("step", 0.0)
    return t.main_cpu_pct, 100.0 * wait / max(wait + step, 1e-9)


def fetch_waits_on_io(t: TrialResult) -> bool:
    """The fetching process spent its busy time waiting, and used under half a core."""
    cpu, busy = fetch_usage(t)
    return not computes(cpu, busy) and cpu < COMPUTE_SHARE * 100


def workers_compute(t: TrialResult) -> bool:
    """The trial's workers computed while busy."""
    return t.settings.num_workers > 0 and computes(t.worker_cpu_pct, t.worker_busy_pct)


def _cores_used(t: TrialResult) -> float:
    """Share of ``cores`` the trial's processes used together, in % of one core."""
    return t.settings.num_workers * t.worker_cpu_pct + t.main_cpu_pct


def cores_busy(t: TrialResult, cores: int) -> bool:
    return _cores_used(t) >= CORES_BUSY * 100 * cores


def cores_spare(t: TrialResult, cores: int) -> bool:
    return _cores_used(t) < CORES_SPARE * 100 * cores


def shared_cores(others_cores: float | None, steal_cores: float | None, cores: int) -> str | None:
    """A warning when, on average over the scan, other processes (``others_cores`` of a core)
    or other virtual machines (``steal_cores``, the hypervisor's steal) used more than MIN_GAIN
    of the cores the scan ran on: the scan acts on differences of that size, so a load that
    large can decide its comparisons, and a quieter machine may give another answer. (An idle
    machine of ours: 0.006 of its 2 cores, a tenth of the 0.06 that warns there.)"""
    if others_cores is None or cores <= 0:
        return None
    parts = []
    if others_cores > MIN_GAIN * cores:
        parts.append(f"other processes used {others_cores:.2f} of the {cores} cores")
    if steal_cores is not None and steal_cores > MIN_GAIN * cores:
        parts.append(f"the hypervisor gave {steal_cores:.2f} of the {cores} cores to other machines (steal)")
    if not parts:
        return None
    return (" and ".join(parts) + " on average during the scan: the measurements, and the speedup, hold for "
            "a machine this busy; on a quieter one the answer may differ (scan again when it is idle)")

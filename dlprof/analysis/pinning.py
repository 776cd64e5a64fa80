"""The pin-memory thread: what it costs, and whether pinning pays. Pure functions of records.

With ``pin_memory=True`` the DataLoader runs one thread in the training process that copies
every batch into page-locked memory before the loop gets it. The copy to the device is then
faster and can overlap the step, but the pinning itself costs CPU time in the training
process, and one thread pins every batch in turn: when it falls behind, the loop waits on it
although the workers are done. Both are measured per batch (``pin_cpu_ms``: the thread's CPU
time; ``pin_wait_ms``: the part of the loop's wait that fell while the batch was queued for or
being pinned), and a scan that measured the same configuration with and without pinning says
which way it went.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlprof.analysis.thresholds import BALANCED_PCT, MIN_GAIN
from dlprof.analysis.throughput import noise_margin
from dlprof.scan_records import Purpose, Status, TrialResult

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class PinCost:
    """Means per batch over the batches that were pinned."""

    batches: int
    pin_ms: float  # wall time pinning
    pin_cpu_ms: float  # CPU time of the pin-memory thread
    pin_wait_ms: float  # the loop's wait that fell on the pin-memory thread
    loop_ms: float  # wait + transfer + step

    @property
    def wait_pct(self) -> float:
        """Share of the loop's time spent waiting on the pin-memory thread."""
        return 100.0 * self.pin_wait_ms / self.loop_ms if self.loop_ms > 0 else 0.0


def pin_cost(frame: pd.DataFrame) -> PinCost | None:
    """From a batch frame (``stages.batch_frame``); None when no batch was pinned."""
    pinned = frame[frame["pin_ms"] > 0]
    if pinned.empty:
        return None
    loop = pinned["wait_ms"] + pinned["transfer_ms"] + pinned["step_ms"]
    return PinCost(len(pinned), float(pinned["pin_ms"].mean()), float(pinned["pin_cpu_ms"].mean()),
                   float(pinned["pin_wait_ms"].mean()), float(loop.mean()))


def pin_note(cost: PinCost) -> str:
    text = (f"pin-memory thread: {cost.pin_ms:.2f} ms a batch pinning ({cost.pin_cpu_ms:.2f} ms of CPU "
            f"in the training process); the loop waited {cost.pin_wait_ms:.2f} ms a batch on it "
            f"({cost.wait_pct:.0f}% of its time)")
    if cost.wait_pct >= BALANCED_PCT:
        text += (": one thread pins every batch and it falls behind; try pin_memory=False, or fewer, larger "
                 "tensors per batch")
    return text


def _same_but_pinning(a: TrialResult, b: TrialResult) -> bool:
    return (a.settings.num_workers, a.settings.prefetch_factor, a.settings.persistent_workers,
            a.settings.batch_size) == (b.settings.num_workers, b.settings.prefetch_factor,
                                       b.settings.persistent_workers, b.settings.batch_size)


def pinning_effect(trials: list[TrialResult]) -> str | None:
    """What pinning did, from the last pair of trials that differ only in ``pin_memory``:
    a sentence when it measurably hurt, None when it helped, made no measurable difference,
    or no such pair was measured."""
    ok = [t for t in trials if t.status == Status.OK
          and t.purpose not in (Purpose.FINAL_BASELINE, Purpose.FINAL_RECOMMENDATION)]
    pairs = [(on, off) for on in ok if on.settings.pin_memory
             for off in ok if not off.settings.pin_memory and _same_but_pinning(on, off)]
    if not pairs:
        return None
    on, off = pairs[-1]
    if on.samples_per_s >= off.samples_per_s * (1 - noise_margin(on.ci_pct, off.ci_pct, MIN_GAIN)):
        return None
    s_on, s_off = on.stage_ms, off.stage_ms
    loss = 100.0 * (1 - on.samples_per_s / off.samples_per_s)
    return (f"pinning hurts here: pin_memory=True delivered {on.samples_per_s:,.0f} samples/s against "
            f"{off.samples_per_s:,.0f} without ({loss:.0f}% fewer). The pin-memory thread spent "
            f"{s_on.get('pin_cpu', 0.0):.2f} ms of CPU a batch and the loop waited {s_on.get('pin_wait', 0.0):.2f} ms "
            f"a batch on it, while the copy to the device took {s_on.get('transfer', 0.0):.2f} ms pinned against "
            f"{s_off.get('transfer', 0.0):.2f} ms unpinned: keep pin_memory=False")

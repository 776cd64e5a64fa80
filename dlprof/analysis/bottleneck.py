"""Diagnosis of a scan: verdict, the stage to blame, its kind, and the evidence. Pure.

Verdict from the baseline's wait share (``thresholds.verdict``, the TensorFlow profiler's
cut-offs), measured until its 95% interval clears them where the trial's time allows; the
evidence says when it could not (the share sits at a cut-off). The stage names what limits throughput:
  step      compute-bound or balanced: the training step takes most of the loop (80% or more
            by the cut-offs), so it sets the pace; the evidence still names the largest
            producer stage and the most that removing every wait could gain;
  startup   starting workers takes a real share of each (short) epoch;
  main      the loop waits although the workers are mostly idle: per-batch cost in the main
            process (receiving tiny batches from workers) dominates;
  collate / fetch / pin / transfer  the largest producer stage per batch;
and for fetch, ``io`` when the producing process is idle while fetching (CPU well under its
busy time), else ``cpu``.
"""
from __future__ import annotations

from dlprof.analysis.judgements import computes, fetch_usage, fetch_waits_on_io, workers_compute
from dlprof.analysis.pinning import pinning_effect
from dlprof.analysis.thresholds import interval_text, spanned_cutoffs, verdict as judge
from dlprof.scan_records import Bottleneck, TrialResult

STARTUP_SHARE = 0.3  # start-up above this share of an epoch is the problem to fix
IDLE_WORKERS_PCT = 50.0  # workers busy less than this while the loop waits: not their fault
PRODUCERS = ("fetch", "collate", "pin", "transfer")


def diagnose(baseline: TrialResult | None, trials: list[TrialResult], cores: int
             ) -> tuple[Bottleneck, list[str]]:
    warnings = _warnings(baseline, trials, cores)
    if baseline is None or baseline.status != "ok":
        return Bottleneck("unknown", "fetch", None, ["the baseline configuration did not run"]), warnings
    s, w = baseline.stage_ms, baseline.settings.num_workers
    verdict = judge(baseline.wait_pct)
    evidence = [f"the training loop waited for data {interval_text(baseline.wait_pct, baseline.wait_ci_pct)} "
                f"of its time ({s['wait']:.2f} ms a batch, against {s['step']:.2f} ms in the step)"]
    cuts = spanned_cutoffs(baseline.wait_pct, baseline.wait_ci_pct)
    if len(cuts) == 1:
        evidence.append(f"borderline: the interval spans the {cuts[0]:.0f}% cut-off, so another run could read "
                        f"{'one band lower' if baseline.wait_pct >= cuts[0] else 'one band higher'}")
    elif cuts:
        evidence.append(f"borderline: the interval spans both cut-offs ({cuts[0]:.0f}% and {cuts[1]:.0f}%), so "
                        "another run could read any of the three verdicts")
    if not baseline.has_train_step:
        evidence.append("no train_step in the target: the loader was measured alone")

    later = baseline.startup_ms[1:]
    startup = sum(later) / len(later) if later else (baseline.startup_ms[0] if baseline.startup_ms else 0.0)
    epoch_ms, projected = epoch_ms_of(baseline, startup)
    if w and epoch_ms and startup > STARTUP_SHARE * epoch_ms and verdict != "compute-bound":
        evidence.append(f"starting the workers took {startup:.0f} ms of each {epoch_ms:.0f} ms epoch"
                        + (" (projected: start-up plus the epoch's samples at the measured rate)" if projected else "")
                        + "; persistent_workers=True keeps them across epochs")
        return Bottleneck(verdict, "startup", None, evidence), warnings
    produce = {k: s.get(k, 0.0) for k in PRODUCERS}
    largest = max(produce, key=produce.get)
    if verdict != "data-bound":
        gain = 100.0 / max(100.0 - baseline.wait_pct, 1e-9)
        evidence.append(f"the step takes {100.0 - baseline.wait_pct:.0f}% of the loop and sets its pace; the largest "
                        f"producer stage is {largest} ({produce[largest]:.2f} ms a batch), and removing every wait "
                        f"would make the loop at most {gain:.2f}x faster")
        if verdict == "compute-bound":
            evidence.append("the data arrives faster than the step uses it: more workers would only burn CPU")
        return Bottleneck(verdict, "step", None, evidence), warnings

    if w and baseline.worker_busy_pct < IDLE_WORKERS_PCT and s["wait"] > 0.5 * (s["fetch"] + s["collate"]) / w:
        evidence.append(f"yet the {w} workers were busy only {baseline.worker_busy_pct:.0f}% of the time: the "
                        f"main process spends the time receiving each batch ({baseline.settings.batch_size} "
                        "samples) from a worker; fewer workers or larger batches help")
        return Bottleneck(verdict, "main", None, evidence), warnings
    stage = largest
    kind = None
    if stage == "fetch":
        cpu, busy = fetch_usage(baseline)
        kind = "io" if fetch_waits_on_io(baseline) else "cpu"
        where = f"each of the {w} workers" if w else "the main process (num_workers=0)"
        evidence.append(f"fetching a batch took {s['fetch']:.2f} ms ({s['fetch_per_sample']:.3f} ms a sample) in {where}")
        if kind == "io":
            evidence.append(f"the fetching process used {cpu:.0f}% of a core while busy {busy:.0f}% of the time: "
                            "the dataset waits on I/O; more workers than cores help")
        else:
            evidence.append(f"the fetching process used {cpu:.0f}% of a core: the dataset's own CPU work "
                            f"({'decoding, transforms' if s['fetch_per_sample'] > 0.05 else 'per-sample work'}); "
                            f"workers help up to the {cores} cores available")
    else:
        evidence.append(f"{stage} took {_ms(produce[stage])} ms a batch, more than fetch ({_ms(s['fetch'])} ms)")
        if stage == "pin":
            evidence.append(f"the pin-memory thread spent {s.get('pin_cpu', 0.0):.2f} ms of CPU a batch in the "
                            f"training process; the loop waited {s.get('pin_wait', 0.0):.2f} ms a batch on it")
    return Bottleneck(verdict, stage, kind, evidence), warnings


def _ms(x: float) -> str:
    """Milliseconds with the digits a per-batch time needs (0.006, not 0.00)."""
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def epoch_ms_of(t: TrialResult, startup_ms: float) -> tuple[float, bool]:
    """An epoch's time, start-up included, and whether it is projected: measured when the trial
    finished an epoch; else the start-up plus the epoch's samples at the window's rate (a
    window inside the first epoch holds no restart, so the rate is the steady one). Without the
    projection, whether a trial happened to finish an epoch decided the start-up verdict."""
    if t.epoch_ms:
        return t.epoch_ms, False
    samples = t.samples_per_epoch or t.dataset_len or 0
    if not samples or t.samples_per_s <= 0:
        return 0.0, False
    return startup_ms + 1000.0 * samples / t.samples_per_s, True


def _warnings(baseline: TrialResult | None, trials: list[TrialResult], cores: int) -> list[str]:
    warnings = []
    if baseline is not None and baseline.stream_repeats:
        warnings.append("the IterableDataset does not shard across workers: every worker yields the same "
                        "samples, so with num_workers=N each sample is seen N times per epoch. Split the "
                        "stream in __iter__ with torch.utils.data.get_worker_info()")
    failed = [t for t in trials if t.status != "ok"]
    for t in failed:
        warnings.append(f"trial {t.settings.label()} {t.status}: {t.error}")
    grown = [t for t in trials if t.status == "ok" and t.memory_warning]
    if grown:  # the same dataset in every trial: one warning, from the trial with the most workers
        warnings.append(max(grown, key=lambda t: t.settings.num_workers).memory_warning)
    pinning = pinning_effect(trials)
    if pinning:
        warnings.append(pinning)
    contention = _step_slowed_by_workers(trials, cores)
    if contention:
        warnings.append(contention)
    if baseline is not None and baseline.settings.num_workers > cores:
        if computes(baseline.worker_cpu_pct, 100.0):  # half a core or more each
            warnings.append(f"num_workers={baseline.settings.num_workers} exceeds the {cores} cores available "
                            "to this process while the workers are CPU-bound")
    return warnings


def step_contention(trials: list[TrialResult]) -> tuple[TrialResult, float] | None:
    """The training step itself got slower once workers ran: they compete for the cores with
    the step's intra-op threads. Only a scan that keeps the real step in the loop can see this.
    Returns the trial whose step was slowed most and the step's time alone (ms), or None."""
    ok = [t for t in trials if t.status == "ok" and t.has_train_step and t.stage_ms.get("step", 0) > 0]
    alone = [t.stage_ms["step"] for t in ok if t.settings.num_workers == 0]
    # workers that computed while busy and together took half a core or more; each one's share
    # can be well under 50% when they and the step split 2 cores
    busy = [t for t in ok if workers_compute(t) and computes(t.settings.num_workers * t.worker_cpu_pct, 100.0)]
    if not alone or not busy:
        return None
    step0 = min(alone)
    worst = max(busy, key=lambda t: t.stage_ms["step"])
    return (worst, step0) if worst.stage_ms["step"] >= 1.5 * step0 else None


def _step_slowed_by_workers(trials: list[TrialResult], cores: int) -> str | None:
    contention = step_contention(trials)
    if contention is None:
        return None
    worst, step0 = contention
    return (f"the training step took {worst.stage_ms['step']:.2f} ms a batch with num_workers="
            f"{worst.settings.num_workers} against {step0:.2f} ms with none: busy workers and the step's "
            f"intra-op threads share {cores} cores. torch.set_num_threads() in the training process, "
            "lowered to the cores the workers leave, can be worth more than extra workers")

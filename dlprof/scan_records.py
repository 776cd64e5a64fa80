"""Records of a scan: trial configurations, their measurements, the diagnosis. No torch.

Schema history of ``dlprof.scan`` results files (bump ``SCAN_SCHEMA_VERSION`` on every
incompatible change and say what changed):
  1  first version.
  2  trials: ``failure_kind``, ``failed_index``, ``traceback`` (why a trial failed),
     ``memory_warning`` (worker memory growing with the samples read), ``batch_bytes``,
     ``hotspots`` and ``hotspots_note`` (py-spy; since 2026-11 on trials of purpose
     "hotspots: baseline" and "hotspots: recommendation" after the side-by-side rounds,
     before that on the final side-by-side trials);
     results: ``budget_s``, ``elapsed_s`` and ``target_sha256`` (for ``--resume``).
     Version 1 files are still read (the new fields take their defaults).
  3  trials: ``wait_ci_pct`` (half-width of the wait share's 95% interval, percentage
     points; null when too few batches), printed with the verdict; results: ``speedup_ci``
     (the 95% interval [low, high] of ``speedup``, null when the configuration is kept).
     Versions 1 and 2 are still read (their wait shares count as exact, no speedup interval).
  4  ``baseline`` and ``recommendation`` are references, ``{"trial": i}`` (0-based, into
     ``trials``), not copies: a report of the saved file then knows that a kept configuration is
     the baseline itself. Versions 1-3 are still read: their copies are matched to the trial they
     copy. ``config.num_threads``: torch.set_num_threads() in the training process (null: as the
     process had it; absent in older files); ``config.in_order`` (DataLoader in_order; absent:
     true); trials: ``produce_p50_ms``, ``produce_p99_ms`` (a batch's fetch + collate).
  5  trials: ``views`` (null, or what the reports draw of that trial's run: ``timeline``,
     ``processes`` and ``gpus`` as columns, ``flames`` as call trees per stage), kept on the
     baseline's and the recommendation's trials and on trials with sampled stacks, so that a
     report rendered again from the results file alone is the report the scan wrote. Versions 1-4
     are still read (no views: ``dlprof report`` takes them from the per-trial dumps if present).
  6  results: ``check`` (null, or the side-by-side check's outcome: ``outcome`` one of "faster",
     "tie", "undecided" (the budget ended it before an answer), "failed"; ``ratio``, ``low``,
     ``high`` (its 95% interval, null with one pair), ``pairs``), so that a kept configuration
     says whether the check found a tie or ran out of time. Versions 1-5 are still read (no check).
     ``environment``: ``other_processes_cores`` and ``steal_cores``, what other processes and
     other virtual machines took from the scan's cores while it ran (cores on average).

A trial's own file (written by the trial process, read by the scan) is
``{"schema": "dlprof.trial", "schema_version": 1, "trial": {...}}``, the trial in the same form as
in ``trials``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from dlprof.records import ResultsFileError, check_schema

SCAN_SCHEMA_NAME = "dlprof.scan"
SCAN_SCHEMA_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
TRIAL_SCHEMA_NAME = "dlprof.trial"
TRIAL_SCHEMA_VERSION = 1


class _Text(str, Enum):
    """A str enum that prints, formats, compares and saves as its value on every Python."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Status(_Text):
    """How a trial ended."""

    OK = "ok"
    FAILED = "failed"  # the pipeline raised
    TIMEOUT = "timeout"
    ERROR = "error"  # the target itself could not be used


class Purpose(_Text):
    """Why a trial ran."""

    BASELINE = "baseline"
    FALLBACK = "fallback"  # the simplest configuration, after the user's failed
    WORKERS = "workers"
    PERSISTENT_WORKERS = "persistent_workers"
    PREFETCH_FACTOR = "prefetch_factor"
    EPOCH_IN_FLIGHT = "epoch in flight"
    PIN_MEMORY = "pin_memory"
    BATCH_SIZE = "batch_size"
    NUM_THREADS = "torch threads"
    IN_ORDER = "in_order"
    FINAL_BASELINE = "final: baseline"  # the side-by-side measurement
    FINAL_RECOMMENDATION = "final: recommendation"
    HOTSPOTS_BASELINE = "hotspots: baseline"  # stacks sampled, apart from the measurement
    HOTSPOTS_RECOMMENDATION = "hotspots: recommendation"

    @property
    def searched(self) -> bool:
        """A trial of the search itself: not the baseline, a re-measurement or a sampling."""
        return self not in (Purpose.BASELINE, Purpose.FALLBACK) and not self.measured_again

    @property
    def measured_again(self) -> bool:
        """A configuration measured again after the search: side by side, or for its stacks."""
        return self in (Purpose.FINAL_BASELINE, Purpose.FINAL_RECOMMENDATION,
                        Purpose.HOTSPOTS_BASELINE, Purpose.HOTSPOTS_RECOMMENDATION)


DEFAULT_PREFETCH = 2  # torch's prefetch_factor with workers, when none is given


@dataclass(frozen=True)
class LoaderSettings:
    """The DataLoader keyword arguments a scan varies."""

    num_workers: int
    pin_memory: bool
    prefetch_factor: int | None  # None with num_workers=0
    persistent_workers: bool
    batch_size: int | None
    # torch.set_num_threads() in the training process; None: as the process has it
    num_threads: int | None = None
    # DataLoader(in_order=...) (torch >= 2.6): False hands batches over as workers finish them
    in_order: bool = True

    def key(self) -> tuple:
        return dataclasses.astuple(self)

    def label(self) -> str:
        parts = [f"num_workers={self.num_workers}", f"batch_size={self.batch_size}"]
        if self.num_workers:
            parts += [f"prefetch_factor={self.prefetch_factor}", f"persistent_workers={self.persistent_workers}"]
        parts.append(f"pin_memory={self.pin_memory}")
        if self.num_threads:
            parts.append(f"torch threads={self.num_threads}")
        if not self.in_order:
            parts.append("in_order=False")
        return ", ".join(parts)


@dataclass
class RunViews:
    """What the reports draw of one trial's run, kept in the results file: tables as columns
    (column name, with its unit, -> values; see ``analysis.views``) and call trees."""

    timeline: dict[str, list] = field(default_factory=dict)  # track, stage, start_ms, duration_ms
    processes: dict[str, list] = field(default_factory=dict)  # t_s, process, cpu_pct, rss_mb
    gpus: dict[str, list] = field(default_factory=dict)  # t_s, gpu, util_pct, mem_used_mb
    flames: dict[str, dict] = field(default_factory=dict)  # stage -> {"name", "value", "children"}


@dataclass
class TrialResult:
    """One configuration measured in one child process."""

    settings: LoaderSettings
    status: Status
    purpose: Purpose = Purpose.BASELINE
    samples_per_s: float = 0.0  # steady state, epoch restarts inside the window included
    ci_pct: float = 0.0  # half-width of the 95% confidence interval, % of samples_per_s
    batches: int = 0  # measured (after warm-up)
    epochs: int = 0
    seconds: float = 0.0  # wall time of the measured window
    wait_pct: float = 0.0  # share of the loop's time spent waiting for data
    wait_ci_pct: float | None = None  # half-width of its 95% interval, percentage points; None: unknown
    stage_ms: dict[str, float] = field(default_factory=dict)  # mean per batch: fetch, collate, ...
    startup_ms: list[float] = field(default_factory=list)  # per epoch
    epoch_ms: float = 0.0  # mean duration of a completed epoch (0 if none completed)
    samples_per_epoch: int = 0  # of the first completed epoch (0 if none)
    dataset_len: int | None = None  # samples in the dataset, when it has a length
    worker_cpu_pct: float = 0.0  # mean CPU use of one worker while measuring, % of a core
    worker_busy_pct: float = 0.0  # share of the window a worker spent in fetch + collate
    main_cpu_pct: float = 0.0
    error: str = ""  # one line; the full traceback is in ``log``
    failure_kind: str = ""  # see dlprof.sweep.faults: dataset, collate, worker-died, shared-memory...
    failed_index: Any = None  # the dataset index whose __getitem__ raised, when found
    traceback: str = ""  # of the failure (a worker's own traceback when it came from a worker)
    hotspots: list[dict[str, Any]] = field(default_factory=list)  # rows of analysis.hotspots (sampled trials)
    hotspots_note: str = ""  # why a trial meant to be sampled has no hotspots
    batch_bytes: int = 0  # tensors in one batch as the training loop received it
    produce_p50_ms: float = 0.0  # a batch's fetch + collate, median over the window
    produce_p99_ms: float = 0.0  # ... and its 99th percentile: a heavy tail blocks the in-order queue
    memory_warning: str = ""  # workers' memory grew with the samples they read (analysis.memory)
    log: str = ""  # path of the trial's output log
    profile: str = ""  # path of the trial's full profile run (dlprof.profile results file)
    has_train_step: bool = True
    dataset_kind: str = "map"
    stream_repeats: bool = False  # an IterableDataset gave every worker the same samples
    info: dict[str, Any] = field(default_factory=dict)  # baseline only: target facts, environment
    views: RunViews | None = None  # what the reports draw of this run (see RunViews); None: not kept

    def to_dict(self) -> dict[str, Any]:
        """The one serialized form of a trial: its fields, the settings under ``config``."""
        d = dataclasses.asdict(self)
        d["config"] = d.pop("settings")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialResult":
        d = dict(d)
        d["settings"] = LoaderSettings(**d.pop("config"))
        if d.get("views") is not None:
            d["views"] = RunViews(**d["views"])
        return cls(**d)

    def __setattr__(self, name: str, value: Any) -> None:
        """``status`` and ``purpose`` hold their enums however they are set (a value given as
        text is converted; an unknown one raises ValueError)."""
        if name == "status":
            value = Status(value)
        elif name == "purpose":
            value = Purpose(value)
        super().__setattr__(name, value)

    def to_file_dict(self) -> dict[str, Any]:
        """A trial's own file: the trial, tagged with its schema."""
        return {"schema": TRIAL_SCHEMA_NAME, "schema_version": TRIAL_SCHEMA_VERSION, "trial": self.to_dict()}

    @classmethod
    def from_file_dict(cls, data: dict[str, Any]) -> "TrialResult":
        check_schema(data, TRIAL_SCHEMA_NAME, (TRIAL_SCHEMA_VERSION,), "trial")
        try:
            return cls.from_dict(data["trial"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ResultsFileError(f"malformed trial file: {exc}") from None


@dataclass
class Bottleneck:
    verdict: str  # data-bound | balanced | compute-bound | unknown
    stage: str  # fetch | collate | pin | transfer | step | startup | main
    kind: str | None  # "cpu" or "io" for fetch
    evidence: list[str] = field(default_factory=list)


class CheckOutcome(_Text):
    """How the side-by-side check of the best candidate against the baseline ended."""

    FASTER = "faster"  # measurably faster: recommended
    TIE = "tie"  # the interval excludes a gain worth a change, or more pairs could not make one
    UNDECIDED = "undecided"  # the budget ended it while a gain and none were both in its interval
    FAILED = "failed"  # a side failed in it: nothing is claimed


@dataclass
class Check:
    """The side-by-side check: its outcome, the candidate's ratio to the baseline and its 95%
    interval (``low``, ``high``: None with a single pair), over ``pairs`` pairs of turns."""

    outcome: CheckOutcome
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    pairs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "ratio": self.ratio, "low": self.low, "high": self.high,
                "pairs": self.pairs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Check":
        return cls(CheckOutcome(d["outcome"]), d.get("ratio"), d.get("low"), d.get("high"), int(d.get("pairs", 0)))


@dataclass
class ScanResult:
    target: str
    baseline: TrialResult | None = None
    recommendation: TrialResult | None = None
    speedup: float | None = None  # measured, interleaved, recommendation / baseline
    speedup_samples: list[float] = field(default_factory=list)  # per-round ratios behind it
    speedup_ci: list[float] | None = None  # 95% interval [low, high] of speedup; None: kept
    bottleneck: Bottleneck | None = None
    warnings: list[str] = field(default_factory=list)
    trials: list[TrialResult] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    complete: bool = False  # False while the scan runs or when it was interrupted
    budget_s: float = 0.0
    elapsed_s: float = 0.0  # spent on trials so far, across resumed runs
    target_sha256: str = ""  # of the target file, so --resume refuses a changed target
    check: Check | None = None  # the side-by-side check; None: none ran (or an older file)

    def to_dict(self) -> dict[str, Any]:
        def ref(t: TrialResult | None):
            """The trial itself when it is one of ``trials`` (it always is in a scan's own results)."""
            if t is None:
                return None
            index = next((i for i, x in enumerate(self.trials) if x is t), None)
            return {"trial": index} if index is not None else t.to_dict()

        return {
            "schema": SCAN_SCHEMA_NAME,
            "schema_version": SCAN_SCHEMA_VERSION,
            "target": self.target,
            "complete": self.complete,
            "baseline": ref(self.baseline),
            "recommendation": ref(self.recommendation),
            "speedup": self.speedup,
            "speedup_samples": self.speedup_samples,
            "speedup_ci": self.speedup_ci,
            "bottleneck": dataclasses.asdict(self.bottleneck) if self.bottleneck else None,
            "warnings": self.warnings,
            "trials": [t.to_dict() for t in self.trials],
            "environment": self.environment,
            "notes": self.notes,
            "budget_s": self.budget_s,
            "elapsed_s": self.elapsed_s,
            "target_sha256": self.target_sha256,
            "check": self.check.to_dict() if self.check else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScanResult":
        check_schema(data, SCAN_SCHEMA_NAME, READABLE_VERSIONS, "scan results")

        try:
            trials = [TrialResult.from_dict(t) for t in data.get("trials", [])]

            def ref(d):
                """A reference (version 4), or a copy (versions 1-3): the trial it copies, if any."""
                if d is None:
                    return None
                if set(d) == {"trial"}:
                    return trials[d["trial"]]
                copy = TrialResult.from_dict(d)
                return next((t for t in trials if t == copy), copy)

            return cls(
                target=data["target"], complete=data.get("complete", False),
                baseline=ref(data.get("baseline")), recommendation=ref(data.get("recommendation")),
                speedup=data.get("speedup"), speedup_samples=list(data.get("speedup_samples", [])),
                speedup_ci=list(data["speedup_ci"]) if data.get("speedup_ci") else None,
                bottleneck=Bottleneck(**data["bottleneck"]) if data.get("bottleneck") else None,
                warnings=list(data.get("warnings", [])), trials=trials,
                environment=dict(data.get("environment", {})), notes=list(data.get("notes", [])),
                budget_s=float(data.get("budget_s", 0.0)), elapsed_s=float(data.get("elapsed_s", 0.0)),
                target_sha256=data.get("target_sha256", ""),
                check=Check.from_dict(data["check"]) if data.get("check") else None,
            )
        except (TypeError, KeyError, IndexError, ValueError) as exc:  # ValueError: an unknown status or purpose
            raise ResultsFileError(f"malformed scan results file: {exc}") from None

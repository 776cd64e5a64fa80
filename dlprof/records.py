"""Plain records of what was measured, and their JSON form.

Everything here is a plain dataclass with no torch import, so a saved results file can be
loaded, analysed and rendered on a machine without torch. All times are integer nanoseconds
of ``time.perf_counter_ns()``, which on Linux is CLOCK_MONOTONIC and therefore shared by the
main process and the DataLoader workers: spans from different processes line up on one
timeline.

Schema history (bump ``SCHEMA_VERSION`` and add a line on every incompatible change):
  1  first version: loader config, epochs, batches, process and GPU samples, notes.
     ``batches[].sample_marks_ns`` is delta-encoded: the first mark, then differences.
  2  ``stacks_raw``: py-spy's raw stacks of the run (``sample_stacks=True``), "" otherwise;
     ``processes[].pss_bytes`` (read with the USS).
  3  ``batches[].pin_cpu_ns``: CPU time of the pin-memory thread on the batch (0 without one).
  4  ``tuning``: what ``dlprof.autotune`` did (its windows, what it settled on, the side-by-side
     speedup; ``sweep.online.tuning_to_dict``), null otherwise. Versions 1 to 3 are still read.
     A key added to ``tuning`` later is optional, read with ``.get``: ``receive_ms`` (what
     receiving a batch from a worker costs, timed for an iterable dataset without workers).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from array import array
from dataclasses import dataclass, field
from typing import Any, Sequence

SCHEMA_NAME = "dlprof.profile"
SCHEMA_VERSION = 4

MAIN_PROCESS = -1  # worker_id of batches produced in the main process (num_workers=0)


@dataclass(slots=True)
class BatchRecord:
    """One batch, from the worker that built it to the end of the training step that used it.

    ``*_start_ns``/``*_end_ns`` pairs are absolute timestamps; a pair is 0/0 when the stage did
    not happen (no pin-memory thread, no device copy).
    """

    epoch: int
    index: int  # position in the epoch, in the order the training loop received it
    worker_id: int  # MAIN_PROCESS when fetched in the main process
    worker_pid: int
    samples: int
    fetch_start_ns: int
    fetch_end_ns: int
    # Clock marks between samples: sample k was fetched from marks[k] to marks[k+1]. Empty when
    # per-sample times are unknown (``__getitems__`` fetches the whole batch in one call). An
    # ``array("q")``: one object a batch, not a Python int a mark (``probe.hooks``).
    sample_marks_ns: Sequence[int]
    collate_start_ns: int
    collate_end_ns: int
    wait_start_ns: int  # the training loop asked for the batch
    wait_end_ns: int  # ... and got it
    pin_start_ns: int = 0
    pin_end_ns: int = 0
    transfer_ns: int = 0  # host-to-device copy (CUDA events on GPU)
    step_ns: int = 0  # user's time from receiving this batch to asking for the next
    fetch_mode: str = "sample"  # "sample" (__getitem__ per index), "batch" (__getitems__), "stream"
    pin_cpu_ns: int = 0  # CPU time the pin-memory thread spent on this batch


@dataclass(slots=True)
class EpochRecord:
    epoch: int
    iter_start_ns: int  # before iter(loader): includes starting workers
    iter_ready_ns: int  # iter(loader) returned
    first_batch_ns: int  # first batch handed to the training loop (0 if none)
    end_ns: int  # loader exhausted, or the loop left early
    batches: int
    workers_reused: bool  # persistent_workers kept the workers of a previous epoch
    completed: bool  # False when the loop broke out early or an exception ended it


@dataclass(slots=True)
class ProcessSample:
    t_ns: int
    pid: int
    role: str  # "main" or "worker"
    cpu_pct: float  # percent of one core since the previous sample of this pid
    rss_bytes: int
    uss_bytes: int | None  # None when not measured at this tick
    pss_bytes: int | None = None  # proportional set size (shared pages split among sharers), with USS


@dataclass(slots=True)
class GpuSample:
    t_ns: int
    index: int
    util_pct: float
    mem_used_bytes: int
    mem_total_bytes: int


@dataclass(slots=True)
class LoaderConfig:
    """The DataLoader as the user built it (keyword arguments a user would recognise)."""

    batch_size: int | None
    num_workers: int
    pin_memory: bool
    prefetch_factor: int | None
    persistent_workers: bool
    drop_last: bool
    dataset_type: str
    dataset_kind: str  # "map" or "iterable"
    dataset_len: int | None
    sampler: str
    collate_fn: str
    device: str | None


@dataclass
class ProfileRun:
    """Everything one ``dlprof.profile`` session measured."""

    loader: LoaderConfig | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    epochs: list[EpochRecord] = field(default_factory=list)
    batches: list[BatchRecord] = field(default_factory=list)
    processes: list[ProcessSample] = field(default_factory=list)
    gpus: list[GpuSample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stacks_raw: str = ""  # py-spy --format raw, main process and workers (analysis.hotspots)
    tuning: dict[str, Any] | None = None  # dlprof.autotune's windows and decision (sweep.online)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "loader": dataclasses.asdict(self.loader) if self.loader else None,
            "environment": self.environment,
            "epochs": [dataclasses.asdict(e) for e in self.epochs],
            "batches": [_batch_to_dict(b) for b in self.batches],
            "processes": [dataclasses.asdict(p) for p in self.processes],
            "gpus": [dataclasses.asdict(g) for g in self.gpus],
            "notes": list(self.notes),
            "stacks_raw": self.stacks_raw,
            "tuning": self.tuning,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProfileRun":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
            raise ResultsFileError("not a dlprof profile results file (missing 'schema': 'dlprof.profile')")
        version = data.get("schema_version")
        if version not in (1, 2, 3, SCHEMA_VERSION):
            raise ResultsFileError(
                f"results file has schema version {version!r}; this dlprof reads version {SCHEMA_VERSION}"
            )
        try:
            return cls(
                loader=LoaderConfig(**data["loader"]) if data.get("loader") else None,
                environment=dict(data.get("environment", {})),
                epochs=[EpochRecord(**e) for e in data.get("epochs", [])],
                batches=[_batch_from_dict(b) for b in data.get("batches", [])],
                processes=[ProcessSample(**p) for p in data.get("processes", [])],
                gpus=[GpuSample(**g) for g in data.get("gpus", [])],
                notes=list(data.get("notes", [])),
                stacks_raw=str(data.get("stacks_raw", "")),
                tuning=data.get("tuning"),
            )
        except TypeError as exc:  # unknown or missing field in a record
            raise ResultsFileError(f"malformed results file: {exc}") from None


def _batch_to_dict(batch: BatchRecord) -> dict[str, Any]:
    data = dataclasses.asdict(batch)
    marks = list(data["sample_marks_ns"])
    # stored as the first mark then differences: per-sample durations, a third of the size
    data["sample_marks_ns"] = marks[:1] + [b - a for a, b in zip(marks, marks[1:])]
    return data


def _batch_from_dict(data: dict[str, Any]) -> BatchRecord:
    data = dict(data)
    marks = data.get("sample_marks_ns") or []
    for i in range(1, len(marks)):
        marks[i] += marks[i - 1]
    data["sample_marks_ns"] = array("q", marks)  # as recorded
    return BatchRecord(**data)


class ResultsFileError(ValueError):
    """A results file that cannot be read; the message is fit for a one-line CLI error."""


def check_schema(data: Any, name: str, versions: tuple[int, ...], what: str) -> None:
    """Raise ResultsFileError unless ``data`` is a ``name`` file of a version this dlprof reads."""
    if not isinstance(data, dict) or data.get("schema") != name:
        raise ResultsFileError(f"not a dlprof {what} file (missing 'schema': '{name}')")
    if data.get("schema_version") not in versions:
        raise ResultsFileError(f"{what} file has schema version {data.get('schema_version')!r}; this dlprof reads "
                               f"version {', '.join(map(str, versions))}")


def save_json(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Write atomically (temp file + rename), so a crash never leaves a half-written file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dlprof-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_json(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ResultsFileError(f"results file not found: {os.fspath(path)}") from None
    except IsADirectoryError:
        raise ResultsFileError(f"{os.fspath(path)} is a folder: give its results.json") from None
    except UnicodeDecodeError:
        raise ResultsFileError(f"{os.fspath(path)} is not a results file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{os.fspath(path)} is not valid JSON: {exc}") from None

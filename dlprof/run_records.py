"""Records of ``dlprof run``: every DataLoader a program iterated, each with its profile. No torch.

Schema history of ``dlprof.run`` files (each process of the job writes one,
``process-<pid>.json``; ``dlprof run`` merges them into ``results.json``):
  1  first version: ``command`` (argv), ``exit_code`` (null in a process's own file),
     ``loaders``: ``name`` (the variable it was assigned to, else where it was made), ``site``
     (file:line), ``pid``, ``rank`` (torchrun's RANK, null outside a job), ``run`` (a
     ``dlprof.profile`` results object, every epoch of that DataLoader object), ``facts`` (in a
     torchrun job: what the ranks' report needs, as in ``dlprof.distributed``: rank, world_size,
     local_rank, local_world_size, host, cores, backend, sampler).
  2  ``stacks_raw``: py-spy's raw stacks of the whole command (``dlprof run --stacks``, sampled
     from outside, its processes and their children), "" otherwise; ``stacks_note``: why there
     are none where they were asked for; ``device_sync`` (``--device-sync``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from dlprof.records import ProfileRun, ResultsFileError, check_schema, load_json, save_json

RUN_SCHEMA_NAME = "dlprof.run"
# What ``dlprof run`` tells the command's processes (set by run_command, read by probe.autowrap)
OUT_ENV = "DLPROF_RUN_OUT"  # the folder each process writes its file into
SYNC_ENV = "DLPROF_RUN_DEVICE_SYNC"  # "1": --device-sync
AUTOTUNE_ENV = "DLPROF_RUN_AUTOTUNE"  # --autotune: seconds of exploring, or "default"
RUN_SCHEMA_VERSION = 2


@dataclass
class RunLoader:
    name: str
    site: str
    pid: int
    rank: int | None
    run: ProfileRun
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def batches(self) -> int:
        return len(self.run.batches)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "site": self.site, "pid": self.pid, "rank": self.rank, "run": self.run.to_dict(),
                "facts": self.facts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunLoader":
        return cls(name=d["name"], site=d["site"], pid=int(d["pid"]), rank=d.get("rank"),
                   run=ProfileRun.from_dict(d["run"]), facts=dict(d.get("facts") or {}))


@dataclass
class RunResult:
    command: list[str]
    loaders: list[RunLoader] = field(default_factory=list)
    exit_code: int | None = None
    stacks_raw: str = ""
    stacks_note: str = ""
    device_sync: bool = False

    def headline(self) -> RunLoader | None:
        """The training loader: the one with the most batches (validation and test run fewer)."""
        return max(self.loaders, key=lambda x: x.batches, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": RUN_SCHEMA_NAME, "schema_version": RUN_SCHEMA_VERSION, "command": list(self.command),
                "exit_code": self.exit_code, "loaders": [x.to_dict() for x in self.loaders],
                "stacks_raw": self.stacks_raw, "stacks_note": self.stacks_note, "device_sync": self.device_sync}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        check_schema(data, RUN_SCHEMA_NAME, (1, RUN_SCHEMA_VERSION), "run results")
        try:
            return cls(command=list(data["command"]), exit_code=data.get("exit_code"),
                       loaders=[RunLoader.from_dict(x) for x in data["loaders"]],
                       stacks_raw=str(data.get("stacks_raw", "")), stacks_note=str(data.get("stacks_note", "")),
                       device_sync=bool(data.get("device_sync", False)))
        except (TypeError, KeyError, ValueError) as exc:
            raise ResultsFileError(f"malformed run results file: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunResult":
        return cls.from_dict(load_json(path))


def ranks_merged(result: RunResult) -> dict | None:
    """A torchrun job's training loaders, one a rank (the most batches), in the form of
    ``dlprof.distributed`` merged results (``analysis.ranks.analyse_ranks`` reads it); None
    outside a job of two ranks or more."""
    by_rank: dict[int, RunLoader] = {}
    for x in result.loaders:
        if x.rank is not None and x.facts and (x.rank not in by_rank or x.batches > by_rank[x.rank].batches):
            by_rank[x.rank] = x
    if len(by_rank) < 2:
        return None
    return {"schema": "dlprof.distributed", "schema_version": 1, "world_size": len(by_rank),
            "ranks": [{"facts": by_rank[r].facts, "run": by_rank[r].run.to_dict()} for r in sorted(by_rank)]}


def merge(parts: list[RunResult], command: list[str], exit_code: int | None) -> RunResult:
    """The processes' files as one result: loaders by rank, then process, then first epoch."""
    loaders = [x for p in parts for x in p.loaders]
    loaders.sort(key=lambda x: (x.rank if x.rank is not None else -1, x.pid,
                                x.run.epochs[0].iter_start_ns if x.run.epochs else 0))
    return RunResult(command=list(command), loaders=loaders, exit_code=exit_code)

"""Profiles of every rank of a torch.distributed job, gathered to rank 0 and written as one.

Each rank records its own loader as usual. ``gather_runs`` (what ``prof.save()`` and
``DLPROF_OUT`` use inside a process group) sends every rank's records to rank 0 over the job's
own process group with ``torch.distributed.gather_object``, gloo or nccl alike: no transport of
dlprof's own. It is a collective: every rank must call it, as every rank calls ``save``/``close``.
"""
from __future__ import annotations

import os
import socket

from dlprof.records import ProfileRun

SCHEMA_NAME = "dlprof.distributed"
SCHEMA_VERSION = 1


def in_process_group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_facts(run: ProfileRun) -> dict:
    """What rank 0 needs to know about this rank beyond its records."""
    import torch.distributed as dist

    from dlprof.probe.environment import available_cores

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return {"rank": dist.get_rank(), "world_size": dist.get_world_size(),
            "local_rank": int(os.environ.get("LOCAL_RANK", "0") or 0), "local_world_size": local_world,
            "host": socket.gethostname(), "cores": available_cores(), "backend": str(dist.get_backend()),
            "sampler": run.loader.sampler if run.loader else None}


def gather_runs(run: ProfileRun) -> dict | None:
    """Gather every rank's run to rank 0: the merged results (schema ``dlprof.distributed``) on
    rank 0, None on the others."""
    import torch.distributed as dist

    payload = {"facts": rank_facts(run), "run": run.to_dict()}
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(payload, gathered, dst=0)
    if dist.get_rank() != 0:
        return None
    return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "world_size": len(gathered),
            "ranks": sorted(gathered, key=lambda p: p["facts"]["rank"])}

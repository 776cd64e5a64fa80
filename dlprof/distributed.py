"""Profiles of every rank of a torch.distributed job, gathered to rank 0 and written as one.

Each rank records its own loader as usual. ``gather_runs`` (what ``prof.save()`` and
``DLPROF_OUT`` use inside a process group) sends every rank's records to rank 0 over the job's
own process group with ``torch.distributed`` collectives (``all_gather`` of the sizes, ``gather``
of the JSON bytes), gloo or nccl alike: no transport of dlprof's own. It is a collective: every
rank must call it, as every rank calls ``save``/``close``.

Why not ``gather_object``: its tensors are made in Python, and gloo's worker thread drops its
last references to them a moment after ``wait()`` returns, which needs the GIL. If the user's
next lines are ``barrier()`` and ``destroy_process_group()``, the process group can be destroyed
by DDP's reducer with the GIL held while it joins that thread: a deadlock at exit (seen once in
15 runs of a 2-rank gloo job; stacks in reports/distributed/exit-hang-stacks.txt). So the gather
returns only once the backend has let go of every tensor it was given.
"""
from __future__ import annotations

import json
import os
import time

from dlprof.records import ProfileRun

SCHEMA_NAME = "dlprof.distributed"
SCHEMA_VERSION = 1


def in_process_group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_facts(run: ProfileRun) -> dict:
    """What rank 0 needs to know about this rank beyond its records."""
    import torch.distributed as dist

    from dlprof.probe.environment import job_facts

    return job_facts(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()),
                     run.loader.sampler if run.loader else None)


def gather_runs(run: ProfileRun) -> dict | None:
    """Gather every rank's run to rank 0: the merged results (schema ``dlprof.distributed``) on
    rank 0, None on the others."""
    import torch.distributed as dist

    payload = {"facts": rank_facts(run), "run": run.to_dict()}
    gathered = gather_json(payload)
    if gathered is None:
        return None
    return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "world_size": len(gathered),
            "ranks": sorted(gathered, key=lambda p: p["facts"]["rank"])}


def gather_json(payload: dict, release_timeout_s: float = 10.0) -> list[dict] | None:
    """Every rank's JSON-able ``payload``, in rank order, on rank 0; None on the others."""
    import torch
    import torch.distributed as dist

    backend = str(dist.get_backend())
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = json.dumps(payload).encode()
    size = torch.tensor([len(data)], dtype=torch.long, device=device)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(int(s.item()) for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    padded = padded.to(device)
    outputs = [torch.empty(longest, dtype=torch.uint8, device=device) for _ in range(world)] if rank == 0 else None
    dist.gather(padded, outputs, dst=0)
    _wait_released([size, *sizes, padded, *(outputs or [])], release_timeout_s)
    if rank != 0:
        return None
    return [json.loads(bytes(out[:int(n.item())].cpu().numpy().tobytes()).decode())
            for out, n in zip(outputs, sizes)]


def _wait_released(tensors: list, timeout_s: float) -> None:
    """Sleep (the GIL released) until the backend holds none of ``tensors``: then its worker
    threads never need the GIL for them again (see the module's docstring)."""
    deadline = time.monotonic() + timeout_s
    while any(t._use_count() > 1 for t in tensors) and time.monotonic() < deadline:
        time.sleep(0.001)

"""Worker memory that grows with the samples a worker touched. Pure, no torch.

The classic case (pytorch/pytorch issue 13246): a dataset holds its records in Python lists or
dicts. A forked worker shares the parent's pages, but reading a Python object writes its
reference count, so every page a worker reads from becomes its own copy: the worker's unique
memory (USS) climbs with the samples it has fetched although the dataset is read-only, and
by the end of an epoch each worker may hold a full copy. numpy arrays or tensors have no
per-item reference counts, so their pages stay shared.
"""
from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from dlprof.records import ProfileRun

if TYPE_CHECKING:
    import pandas as pd

MIB = 1024 * 1024
MIN_POINTS = 4  # USS readings of one worker before a trend means anything
MIN_RANK_CORR = 0.7  # memory must rise with the samples fetched (Spearman), not jump once
MIN_GROWTH_MIB = 8.0  # and by at least this much, and a quarter of where it started
MIN_SAMPLES = 1000  # samples a worker read: fewer say more about start-up than about the data
# A page copied on access was resident and shared with the parent before: it moves from shared to
# unique, so the worker's shared memory (RSS - USS) falls by what its USS gains (fraction ~1).
# Memory a worker allocates for itself (an allocator or cache warming up, buffers) adds unique
# pages and leaves the shared ones alone (~0). Half splits the two.
MIN_FROM_SHARED = 0.5


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def _rank_corr(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation: copy-on-access growth rises fast, then saturates, so a
    straight-line fit would understate how closely it follows the samples read."""
    rx, ry = _ranks(xs), _ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else 0.0


GROWTH_COLUMNS = ["pid", "readings", "samples", "uss_start_mib", "uss_end_mib", "pss_end_mib", "rss_end_mib",
                  "growth_mib", "growth_mib_per_1k_samples", "from_shared", "rank_corr"]


def worker_memory_growth(run: ProfileRun) -> pd.DataFrame:
    """``worker_memory_rows`` as a DataFrame."""
    import pandas as pd

    return pd.DataFrame(worker_memory_rows(run), columns=GROWTH_COLUMNS)


def worker_memory_rows(run: ProfileRun) -> list[dict]:
    """One row per worker process: its USS against the samples it had fetched (plain Python: the
    training process computes it without pandas).

    Columns: ``pid``, ``readings``, ``samples``, ``uss_start_mib``, ``uss_end_mib``,
    ``pss_end_mib`` (shared pages split among the processes sharing them), ``rss_end_mib``,
    ``growth_mib``, ``growth_mib_per_1k_samples``, ``from_shared`` (the fraction of the USS
    growth that the shared memory, RSS - USS, lost: copied pages), ``rank_corr``.
    """
    rows = []
    by_pid: dict[int, list[tuple[int, int]]] = {}
    for b in run.batches:
        if b.worker_id >= 0 and b.collate_end_ns:
            by_pid.setdefault(b.worker_pid, []).append((b.collate_end_ns, b.samples))
    for pid, done in by_pid.items():
        done.sort()
        # from the end of the worker's first batch: its start-up (imports, first buffers) is
        # growth too, but not the kind that scales with the data
        settled = done[0][0]
        readings = sorted((p.t_ns, p.uss_bytes, p.rss_bytes) for p in run.processes
                          if p.pid == pid and p.role == "worker" and p.uss_bytes and p.t_ns >= settled)
        if not readings:
            continue
        xs, ys, count, i = [], [], 0, 0
        for t, uss, _ in readings:
            while i < len(done) and done[i][0] <= t:
                count += done[i][1]
                i += 1
            xs.append(float(count))
            ys.append(uss / MIB)
        pss = [p.pss_bytes for p in sorted(run.processes, key=lambda p: p.t_ns) if p.pid == pid and p.pss_bytes]
        rss = [p.rss_bytes for p in sorted(run.processes, key=lambda p: p.t_ns) if p.pid == pid and p.rss_bytes]
        read = xs[-1] - xs[0]
        growth = ys[-1] - ys[0]
        (_, uss0, rss0), (_, uss1, rss1) = readings[0], readings[-1]
        shared_lost = ((rss0 - uss0) - (rss1 - uss1)) / MIB if rss0 and rss1 else float("nan")
        rows.append({"pid": pid, "readings": len(xs), "samples": int(xs[-1]), "uss_start_mib": ys[0],
                     "uss_end_mib": ys[-1], "pss_end_mib": pss[-1] / MIB if pss else float("nan"),
                     "rss_end_mib": rss[-1] / MIB if rss else float("nan"),
                     "growth_mib": growth,
                     "growth_mib_per_1k_samples": 1000.0 * growth / read if read > 0 else 0.0,
                     "from_shared": shared_lost / growth if growth > 0 else float("nan"),
                     "rank_corr": _rank_corr(xs, ys) if len(xs) >= 2 else 0.0})
    return rows


def memory_growth_warning(growth: list[dict], samples_per_epoch: int | None, workers: int) -> str | None:
    """A warning when workers' unique memory rises steadily with the samples they fetch, out of the
    memory they shared with the parent (copies of its pages, not memory of their own). ``growth``:
    the rows of ``worker_memory_rows``."""
    steady = [r for r in growth if r["readings"] >= MIN_POINTS and r["rank_corr"] >= MIN_RANK_CORR
              and r["from_shared"] >= MIN_FROM_SHARED  # NaN (no RSS reading): not known to be copies
              and r["samples"] >= MIN_SAMPLES
              and r["growth_mib"] >= MIN_GROWTH_MIB and r["growth_mib"] >= 0.25 * r["uss_start_mib"]]
    if not steady or workers < 1:
        return None
    per_1k = float(statistics.median(r["growth_mib_per_1k_samples"] for r in steady))
    start = float(statistics.median(r["uss_start_mib"] for r in steady))
    end = float(statistics.median(r["uss_end_mib"] for r in steady))
    read = int(statistics.median(r["samples"] for r in steady))
    share = (samples_per_epoch or read * workers) / workers  # samples one worker reads per epoch
    projected = end + per_1k * max(0.0, share - read) / 1000.0
    return (f"worker memory grows with the samples fetched: unique memory (USS) went from {start:,.0f} to "
            f"{end:,.0f} MiB a worker over {read:,} samples ({per_1k:.2f} MiB per 1,000); at that rate about "
            f"{projected:,.0f} MiB a worker by the end of an epoch ({workers} workers: {projected * workers:,.0f} "
            "MiB). The dataset's records are probably Python objects (lists, dicts, strings): reading one "
            "writes its reference count, so forked workers copy every page they read (pytorch issue 13246). "
            "Keep them in numpy arrays or tensors (e.g. np.array of fixed-width strings, or offsets into one "
            "bytes buffer)")


def shm_shortfall(batch_bytes: int, workers: int, prefetch_factor: int | None, free_bytes: int | None) -> str | None:
    """Batches travel from workers to the main process through shared memory (/dev/shm), up to
    num_workers x prefetch_factor of them at once. A warning when that will not fit."""
    if not workers or not batch_bytes or free_bytes is None:
        return None
    in_flight = workers * (prefetch_factor or 2)
    need = batch_bytes * in_flight
    if need <= 0.8 * free_bytes:
        return None
    suggest_gib = max(1, -(-2 * need // (1024 ** 3)))
    return (f"num_workers={workers} x prefetch_factor={prefetch_factor or 2} batches of {batch_bytes / MIB:,.1f} MiB "
            f"need about {need / MIB:,.0f} MiB of shared memory at once, and /dev/shm has {free_bytes / MIB:,.0f} MiB "
            f"free: workers would die of a Bus error (SIGBUS). Raise it (docker run --shm-size={suggest_gib}g) or "
            "lower num_workers or prefetch_factor")

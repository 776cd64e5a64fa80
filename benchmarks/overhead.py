"""Overhead of dlprof.profile: the same loader iterated bare and profiled, alternately.

Runs A B A B ... (bare, profiled) so drift of the machine hits both alike, and prints the
throughput ratio profiled/bare per case: the median of the per-pair ratios and its IQR.
The loop body is empty, the worst case: nothing hides the profiler's per-batch cost.
The profiled runs include the system sampler (psutil at 10 Hz), as users get it by default.

    python benchmarks/overhead.py [--pairs 10] [--out reports/benchmarks/overhead.txt]

Goal (issue 2): ratio >= 0.99 for ~1 ms of work per sample, >= 0.95 for ~20 us.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import dlprof  # noqa: E402
from dlprof.probe.environment import available_cores  # noqa: E402


class WorkDataset(Dataset):
    def __init__(self, length: int, cost_s: float) -> None:
        self.length = length
        self.cost_s = cost_s

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        end = time.perf_counter() + self.cost_s
        while time.perf_counter() < end:
            pass
        return torch.full((16,), index, dtype=torch.float32)


# name, seconds of work per sample, samples per run, goal
CASES = [("1ms", 1e-3, 64 * 16, 0.99), ("20us", 20e-6, 64 * 300, 0.95)]
BATCH_SIZE = 64


def one_run(loader, profiled: bool) -> float:
    """Samples per second over one pass, iterator creation (worker start-up) included.

    A profiled run creates its profiler outside the timed region and waits for the system
    sampler's first tick: the sampler process's one-off start is reported separately (below),
    since it is paid once per profiler, not per epoch.
    """
    iterable = loader
    if profiled:
        iterable = dlprof.profile(loader)
        deadline = time.perf_counter() + 5
        while not iterable.result().run.processes and time.perf_counter() < deadline:
            time.sleep(0.01)
    start = time.perf_counter()
    samples = 0
    for batch in iterable:
        samples += len(batch)
    elapsed = time.perf_counter() - start
    if profiled:
        iterable.close()
    return samples / elapsed


def fixed_costs(loader, repeats: int = 5) -> tuple[float, float]:
    """Median ms to create a profiler (wrap the loader) and CPU ms its sampler process needs to start."""
    create_ms, sampler_cpu_ms = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        prof = dlprof.profile(loader)
        create_ms.append((time.perf_counter() - t0) * 1e3)
        while not prof.result().run.processes:
            time.sleep(0.01)
        prof.close()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sampler_cpu_ms.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1e3)
    return statistics.median(create_ms), statistics.median(sampler_cpu_ms)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()

    lines = [
        "# dlprof overhead benchmark: throughput profiled / bare (empty loop, batch 64)",
        f"# command: python benchmarks/overhead.py --pairs {args.pairs}",
        f"# machine: {platform.platform()}, python {platform.python_version()}, torch {torch.__version__}, "
        f"{available_cores()} cores available",
        f"# {args.pairs} A/B pairs per case after one warm-up pair; ratio = median of per-pair ratios",
        "",
        f"{'case':<8}{'workers':>8}{'bare samples/s':>16}{'profiled samples/s':>20}"
        f"{'ratio':>8}{'IQR':>16}{'goal':>7}{'met':>5}",
    ]
    print("\n".join(lines), flush=True)
    for name, cost, length, goal in CASES:
        for workers in (0, 2):
            loader = DataLoader(WorkDataset(length, cost), batch_size=BATCH_SIZE, num_workers=workers)
            one_run(loader, False), one_run(loader, True)  # warm-up: imports, page cache, allocator
            bare, prof, ratios = [], [], []
            for _ in range(args.pairs):
                b = one_run(loader, False)
                p = one_run(loader, True)
                bare.append(b)
                prof.append(p)
                ratios.append(p / b)
            q1, med, q3 = quartiles(ratios)
            line = (f"{name:<8}{workers:>8}{statistics.median(bare):>16,.0f}{statistics.median(prof):>20,.0f}"
                    f"{med:>8.3f}{f'[{q1:.3f}, {q3:.3f}]':>16}{goal:>7.2f}{'yes' if med >= goal else 'NO':>5}")
            lines.append(line)
            print(line, flush=True)
    create_ms, sampler_cpu_ms = fixed_costs(DataLoader(WorkDataset(64, 0.0), batch_size=BATCH_SIZE))
    for line in ["", "# one-off costs per profiler (not in the ratios above):",
                 f"#   dlprof.profile(loader) call: {create_ms:.2f} ms (median of 5)",
                 f"#   system sampler process start, to its first tick: {sampler_cpu_ms:.0f} ms of CPU "
                 "in that process (median of 5)"]:
        lines.append(line)
        print(line, flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

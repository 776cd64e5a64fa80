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
CASES = [("1ms", 1e-3, 64 * 12, 0.99), ("20us", 20e-6, 64 * 150, 0.95)]
BATCH_SIZE = 64


def one_run(loader, profiled: bool) -> float:
    """Samples per second over one pass, iterator creation (worker start-up) included."""
    start = time.perf_counter()
    iterable = dlprof.profile(loader) if profiled else loader
    samples = 0
    for batch in iterable:
        samples += len(batch)
    return samples / (time.perf_counter() - start)


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
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

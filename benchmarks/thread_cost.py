"""What a thread started once costs a training loop that has none, and whether dlprof.autotune
leaves one behind.

    python benchmarks/thread_cost.py [--rounds 12] [--epochs 4] [--kinds none,thread,autotune]
        [--default-threads] [--out FILE] [recipes/stream.py]

Each run is a fresh interpreter with ``OMP_NUM_THREADS=1`` (torch starts no intra-op threads:
the process stays single-threaded unless something starts a thread). It loads the recipe, runs
one epoch of the loop as written, does its kind's action, then times --epochs epochs of the loop
as written, in this process's CPU time a batch (not wall time: the other core's noise stays out):
- ``none``: no action (the reference);
- ``thread``: a Python thread started and joined, nothing else (glibc's ``__libc_single_threaded``
  goes false for good: every mutex, the GIL's included, and ``malloc`` take their locked path);
- ``autotune``: one epoch of ``dlprof.autotune`` of the loader (it settles), kept open;
- ``tuned``: the same, then the timed epochs through the settled tuned loader, not as written.
Each round runs the kinds once, in a shuffled order; ratio = the kind's CPU a batch / none's of
the same round, geometric mean over the rounds with its 95% interval.

``--default-threads``: torch keeps its default intra-op threads (``OMP_NUM_THREADS`` as the
environment has it), as the recipes run in benchmarks/autotune.py; the process is then
multi-threaded from ``import torch`` on, and the wall time a batch is reported beside the CPU
time (the loop's cost as the acceptance benchmark counts it, after the tuner's first epoch).
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time

from emit import emit

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
KINDS = ("none", "thread", "autotune", "tuned")


def child(kind: str, recipe: str, epochs: int) -> None:
    sys.path.insert(0, ROOT)
    from dlprof.sweep.target import load_target

    target = load_target(recipe)
    for batch in target.loader:
        target.train_step(batch)
    if kind == "thread":
        import threading

        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
    elif kind in ("autotune", "tuned"):
        import dlprof

        tuned = dlprof.autotune(target.loader)
        for batch in tuned:
            target.train_step(batch)
        if tuned.tuner.tuning.settled is None:
            raise SystemExit(f"{recipe}: dlprof.autotune did not settle in one epoch")
    del batch
    loader = tuned if kind == "tuned" else target.loader
    n, start, wall = 0, time.process_time(), time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            target.train_step(batch)
            n += 1
    print(f"{(time.process_time() - start) / n * 1e3:.6f} {(time.perf_counter() - wall) / n * 1e3:.6f}")


def cpu_ms(kind: str, recipe: str, epochs: int, default_threads: bool) -> tuple[float, float]:
    """(CPU ms, wall ms) a batch of the timed epochs, in a fresh interpreter."""
    env = dict(os.environ) if default_threads else dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, recipe, "--child", kind, "--epochs", str(epochs)],
                         env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"benchmarks/thread_cost.py: {kind} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    cpu, wall = out.stdout.split()[-2:]
    return float(cpu), float(wall)


def ratio_line(name: str, kind: list[float], none: list[float]) -> str:
    """kind / none, round by round: geometric mean and its 95% interval, as dlprof's side-by-side
    check combines pairs (analysis.throughput.paired_ratio)."""
    from dlprof.analysis.throughput import paired_ratio

    ratio, low, high = paired_ratio(list(zip(none, kind)))
    return (f"{name} / none: {ratio:.3f} (95% interval {low:.3f}-{high:.3f}; "
            f"rounds: {' '.join(f'{a / b:.3f}' for a, b in zip(kind, none))})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/stream.py")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--kinds", default="none,thread,autotune")
    parser.add_argument("--default-threads", action="store_true",
                        help="torch's default intra-op threads (not OMP_NUM_THREADS=1); wall time reported too")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", choices=KINDS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.recipe, args.epochs)
        return 0
    kinds = args.kinds.split(",")
    if not set(kinds) <= set(KINDS) or kinds[0] != "none" or args.rounds < 2:
        parser.error(f"--kinds: none first, then some of {', '.join(KINDS[1:])}; --rounds: 2 or more")
    ms: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for k in random.sample(kinds, len(kinds)):
            ms[k].append(cpu_ms(k, args.recipe, args.epochs, args.default_threads))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {ms[k][-1][0]:.4f} ms" for k in kinds),
              file=sys.stderr, flush=True)
    sys.path.insert(0, ROOT)
    threads = "torch's default intra-op threads" if args.default_threads else "OMP_NUM_THREADS=1"
    lines = [f"# CPU a batch of the loop as written after each kind, {threads}, fresh interpreters",
             f"# command: python benchmarks/thread_cost.py --rounds {args.rounds} --epochs {args.epochs} "
             f"--kinds {args.kinds}{' --default-threads' if args.default_threads else ''} {args.recipe}",
             f"# machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} cores",
             f"none     {statistics.median(c for c, _ in ms['none']):.4f} ms a batch (median of {args.rounds} rounds)"]
    for k in kinds[1:]:
        lines.append(ratio_line(f"{k:<8}", [c for c, _ in ms[k]], [c for c, _ in ms["none"]]))
        if args.default_threads:
            lines.append(ratio_line(f"{k:<8} wall", [w for _, w in ms[k]], [w for _, w in ms["none"]]))
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What dlprof's profiling costs a many-worker configuration of a recipe, measured whole.

The recipe's loader rebuilt with the given settings, its train_step in the loop, plain against
``dlprof.Profiler(uss_every=2)`` (what a scan's trials use), interleaved, in one process:

    python benchmarks/sampler_cost.py [recipes/mnist_mlp.py] [--workers 16] [--prefetch 6] [--rounds 3]

Prints the median samples/s of each and their ratio (1.00 = no cost).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import dlprof  # noqa: E402
from dlprof.sweep.loaders import build_loader, settings_of  # noqa: E402
from dlprof.sweep.target import load_target  # noqa: E402


def rate(target, settings, profiled: bool, epochs: int) -> float:
    loader = build_loader(target.loader, settings)
    it = dlprof.Profiler(uss_every=2).wrap(loader) if profiled else loader
    for batch in it:  # the first epoch starts the workers: not measured
        target.train_step(batch)
    began, samples = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in it:
            target.train_step(batch)
            samples += len(batch[0])
    result = samples / (time.perf_counter() - began)
    if profiled:
        it.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/mnist_mlp.py")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--prefetch", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    target = load_target(args.recipe)
    settings = dataclasses.replace(settings_of(target.loader), num_workers=args.workers,
                                   prefetch_factor=args.prefetch, persistent_workers=True)
    plain, profiled = [], []
    for _ in range(args.rounds):
        plain.append(rate(target, settings, False, args.epochs))
        profiled.append(rate(target, settings, True, args.epochs))
    p, q = statistics.median(plain), statistics.median(profiled)
    print(f"# command: python benchmarks/sampler_cost.py {args.recipe} --workers {args.workers} "
          f"--prefetch {args.prefetch} --epochs {args.epochs} --rounds {args.rounds}")
    print(f"plain {p:,.0f} samples/s, profiled {q:,.0f} samples/s (medians of {args.rounds}); ratio {q / p:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

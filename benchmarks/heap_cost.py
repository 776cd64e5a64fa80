"""What dlprof leaves in a process costs the training loop after it, in instructions a batch.

    python benchmarks/heap_cost.py [--batches 300] [--kinds none,kept,closed] [--cache-sim] [--out FILE]
        [recipes/stream.py]

Wall time cannot tell a 1-2% cost on a 2-core machine whose runs of the same loop differ by more;
instructions can: each kind runs under valgrind (cachegrind, ``--cache-sim=no``; PYTHONHASHSEED=0,
one intra-op thread), twice: with 0 and with --batches batches measured at the end, so the
difference is the loop's own instructions for those batches, whatever the start-up cost. Every
run: the recipe loaded, 50 batches of its loop as written, the kind's action, 50 batches more,
then the measured ones, as written:
- ``none``: no action (the reference);
- ``kept``: ``dlprof.autotune`` of the loader until it settles, kept alive, its records as they
  were made, batch by batch, between the loop's own objects;
- ``closed``: the same as ``kept``, then the tuner closed and dropped.
ratio = the kind's instructions a batch / none's. --cache-sim: valgrind's simulated first-level
data cache and last-level cache too, their misses a batch as ratios to none's (a model of a
cache, not this machine's). Needs valgrind (about 3 minutes a run, two at
a time).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from emit import emit

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
KINDS = ("none", "kept", "closed")


def child(kind: str, recipe: str, batches: int) -> None:
    import itertools

    sys.path.insert(0, ROOT)
    import dlprof
    from dlprof.sweep.target import load_target

    target = load_target(recipe)

    def run(n: int) -> None:
        for batch in itertools.islice(target.loader, n):
            target.train_step(batch)

    run(50)
    if kind != "none":
        tuned = dlprof.autotune(target.loader)
        for _ in range(50):
            for batch in tuned:
                target.train_step(batch)
            if tuned.tuner.tuning.settled is not None:
                break
        else:
            raise SystemExit(f"{recipe}: not settled after 50 epochs")
        del batch
        if kind == "closed":
            tuned.close()
            del tuned
    run(50)
    run(batches)


COUNTS = {"I": r"I\s+refs:\s+([\d,]+)", "D1": r"D1\s+misses:\s+([\d,]+)", "LL": r"LL misses:\s+([\d,]+)"}


def counts(kind: str, recipe: str, batches: int, cache_sim: bool) -> dict[str, int]:
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    out = subprocess.run(["valgrind", "--tool=cachegrind", f"--cache-sim={'yes' if cache_sim else 'no'}",
                          "--cachegrind-out-file=/dev/null",
                          sys.executable, __file__, recipe, "--child", kind, "--batches", str(batches)],
                         env=env, capture_output=True, text=True, timeout=3600)
    found = {name: re.search(pattern, out.stderr) for name, pattern in COUNTS.items()}
    if out.returncode != 0 or found["I"] is None or (cache_sim and None in found.values()):
        raise SystemExit(f"benchmarks/heap_cost.py: {kind} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return {name: int(m.group(1).replace(",", "")) for name, m in found.items() if m is not None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/stream.py")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--kinds", default="none,kept,closed")
    parser.add_argument("--cache-sim", action="store_true", help="also the simulated caches' misses")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", choices=KINDS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.recipe, args.batches)
        return 0
    kinds = args.kinds.split(",")
    if not set(kinds) <= set(KINDS) or "none" not in kinds:
        parser.error(f"--kinds: some of {', '.join(KINDS)}, none among them")
    if shutil.which("valgrind") is None:
        raise SystemExit("benchmarks/heap_cost.py: needs valgrind (apt-get install valgrind)")
    jobs = [(k, n) for k in kinds for n in (0, args.batches)]
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(jobs, pool.map(lambda j: counts(j[0], args.recipe, j[1], args.cache_sim), jobs)))
    names = list(COUNTS) if args.cache_sim else ["I"]
    per_batch = {k: {n: (runs[(k, args.batches)][n] - runs[(k, 0)][n]) / args.batches for n in names} for k in kinds}
    lines = ["# Instructions a batch of the loop as written, after what each kind left in the process (valgrind)",
             f"# command: python benchmarks/heap_cost.py --batches {args.batches} --kinds {args.kinds}"
             f"{' --cache-sim' if args.cache_sim else ''} {args.recipe}",
             f"# machine: {platform.platform()}, python {platform.python_version()}"]
    for k in kinds:
        i = per_batch[k]["I"]
        lines.append(f"{k:<9} {i:>12,.0f} instructions a batch  ratio {i / per_batch['none']['I']:.4f}"
                     + "".join(f"; {n} misses {per_batch[k][n]:,.0f} a batch, ratio "
                               f"{per_batch[k][n] / per_batch['none'][n]:.4f}" for n in names[1:]))
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

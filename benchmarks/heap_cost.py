"""What dlprof leaves in a process costs the training loop after it, in instructions a batch.

    python benchmarks/heap_cost.py [--batches 300] [--kinds none,kept,repacked] [--out FILE] [recipes/stream.py]

Wall time cannot tell a 1-2% cost on a 2-core machine whose runs of the same loop differ by more;
instructions can: each kind runs under valgrind (cachegrind, ``--cache-sim=no``; PYTHONHASHSEED=0,
one intra-op thread), twice: with 0 and with --batches batches measured at the end, so the
difference is the loop's own instructions for those batches, whatever the start-up cost. Every
run: the recipe loaded, 50 batches of its loop as written, the kind's action, 50 batches more,
then the measured ones, as written:
- ``none``: no action (the reference);
- ``kept``: ``dlprof.autotune`` of the loader until it settles, kept alive, its records as they
  were made, batch by batch, between the loop's own objects;
- ``repacked``: the same, then ``iter()`` of the tuned loader (the next epoch's start, where it
  rebuilds its records in one go: ``dlprof.records.repacked``);
- ``closed``: the same as ``kept``, then the tuner closed and dropped.
ratio = the kind's instructions a batch / none's. Needs valgrind (about 3 minutes a run, two at
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
KINDS = ("none", "kept", "repacked", "closed")


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
        if kind == "repacked":
            iter(tuned)
        elif kind == "closed":
            tuned.close()
            del tuned
    run(50)
    run(batches)


def instructions(kind: str, recipe: str, batches: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                          sys.executable, __file__, recipe, "--child", kind, "--batches", str(batches)],
                         env=env, capture_output=True, text=True, timeout=3600)
    m = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise SystemExit(f"benchmarks/heap_cost.py: {kind} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return int(m.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/stream.py")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--kinds", default="none,kept,repacked")
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
        counts = dict(zip(jobs, pool.map(lambda j: instructions(j[0], args.recipe, j[1]), jobs)))
    per_batch = {k: (counts[(k, args.batches)] - counts[(k, 0)]) / args.batches for k in kinds}
    lines = ["# Instructions a batch of the loop as written, after what each kind left in the process (valgrind)",
             f"# command: python benchmarks/heap_cost.py --batches {args.batches} --kinds {args.kinds} {args.recipe}",
             f"# machine: {platform.platform()}, python {platform.python_version()}"]
    for k in kinds:
        lines.append(f"{k:<9} {per_batch[k]:>12,.0f} instructions a batch  ratio {per_batch[k] / per_batch['none']:.4f}")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

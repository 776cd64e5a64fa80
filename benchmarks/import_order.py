"""Does it matter when dlprof's modules are loaded: before the program's model and data, or after?

    python benchmarks/import_order.py [--turns 12] [--epochs 4] [--out FILE] [recipes/stream.py]

Each turn runs three fresh interpreters (not forked: each its own address-space layout and, as
pyperf does, the turn's own random PYTHONHASHSEED, so that no one heap layout is measured over
and over), in an order that alternates between turns; each loads the recipe with runpy (not
through dlprof), runs one epoch untimed and --epochs timed, of its loop as written:
- ``none``: dlprof never imported;
- ``early``: ``import dlprof.tuned`` (the tuner and the modules it loads, about 40) before the
  recipe, as imports at a script's top;
- ``late``: the same after the recipe, before the timed epochs (where the first
  ``dlprof.autotune()`` call loads them).
Nothing of dlprof runs in any arm: the loop is the recipe's own. ratio = arm / none, over the
--epochs timed, geometric mean of the turns' and its 95% interval (Student's t). A ratio above
1.00 is what loading the modules alone leaves the loop to pay.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import time

from emit import emit

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ARMS = ("none", "early", "late")


def child(arm: str, recipe: str, epochs: int) -> None:
    """One fresh interpreter: prints the seconds of ``epochs`` epochs of the recipe's loop."""
    import runpy

    import torch  # noqa: F401  (first, as a training script's imports)

    sys.path.insert(0, ROOT)
    if arm == "early":
        import dlprof.tuned  # noqa: F401
    ns = runpy.run_path(recipe)  # __name__ is not "__main__": the recipe's own run is skipped
    loader, step = ns["loader"], ns["train_step"]
    if arm == "late":
        import dlprof.tuned  # noqa: F401, F811

    def one() -> float:
        start = time.perf_counter()
        for batch in loader:
            step(batch)
        return time.perf_counter() - start

    one()
    print(sum(one() for _ in range(epochs)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/stream.py")
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", choices=ARMS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.recipe, args.epochs)
        return 0
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bytecode import compiled

    from dlprof.analysis.throughput import paired_ratio

    header = compiled()
    seconds: dict[str, list[float]] = {a: [] for a in ARMS}
    for turn in range(args.turns):
        env = dict(os.environ, PYTHONHASHSEED=str(random.randrange(1, 2**32)))
        for arm in ARMS if turn % 2 == 0 else ARMS[::-1]:
            out = subprocess.run([sys.executable, __file__, args.recipe, "--child", arm, "--epochs", str(args.epochs)],
                                 env=env, capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                raise SystemExit(f"benchmarks/import_order.py: the {arm} child failed: "
                                 f"{(out.stderr.strip().splitlines() or ['?'])[-1]}")
            seconds[arm].append(float(out.stdout.split()[-1]))
        print(f"turn {turn + 1}/{args.turns}: " + ", ".join(f"{a} {seconds[a][-1]:.3f} s" for a in ARMS),
              file=sys.stderr, flush=True)
    lines = ["# Loading dlprof's modules before the program's objects or after: the loop as written, fresh processes",
             f"# command: python benchmarks/import_order.py --turns {args.turns} --epochs {args.epochs} {args.recipe}",
             f"# machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs",
             header,
             f"none: median {sorted(seconds['none'])[len(seconds['none']) // 2]:.3f} s for {args.epochs} epochs"]
    for arm in ARMS[1:]:
        # paired_ratio takes rates: seconds inverted, so the ratio reads arm seconds / none seconds
        ratio, low, high = paired_ratio([(1 / t, 1 / b) for b, t in zip(seconds["none"], seconds[arm])])
        lines.append(f"{arm:<6}/ none: {ratio:.3f} (95% interval {low:.3f}-{high:.3f}, {args.turns} turns: "
                     + " ".join(f"{t / b:.3f}" for b, t in zip(seconds["none"], seconds[arm])) + ")")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

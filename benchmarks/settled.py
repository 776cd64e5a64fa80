"""What a settled ``dlprof.autotune`` costs the rest of a run, epoch by epoch.

    python benchmarks/settled.py [--rounds 6] [--runs 4] [--epochs 6] [--kinds none,import,...]
        [--forked N] [recipes/stream.py]

--rounds 0 skips part 1, --runs 0 part 2; part 3 runs with --forked N.

1. In one process: the recipe's loop as written and through a settled ``dlprof.autotune``
   (epochs until it has decided first), one epoch each in turn, --rounds times: the tuned loader's
   own per-epoch cost once it has decided (ratio tuned / as written: the rounds' median and IQR,
   and their geometric mean with its 95% interval).
2. In fresh processes (--runs of each kind, in turn): the loop as written, --epochs epochs,
   then the same epochs again after something happened in the process: ``none``, ``epochs`` (4
   epochs of the loop as written: what the process's age alone does), ``epoch`` (one), ``kept``
   (one epoch of ``dlprof.profile`` without the sampler, its records kept, as a settled tuner
   keeps its first window's), ``stdlib`` (13 standard-library modules imported, nothing called:
   what loading code alone costs), ``pandas`` (``import pandas``), ``import`` (``import
   dlprof.tuned``; ``import_epoch``: then one epoch as written; ``source``: compiled from source), ``autotune`` (a ``dlprof.autotune`` of the
   loader that settles, then dropped), ``alive`` (the same, kept open), ``quiet`` (the same
   without the system sampler), ``profile`` / ``profile_quiet`` (a ``dlprof.profile`` of 4
   epochs with / without the sampler, closed). The ratio after / before
   of the plain loop says what the process itself carries after dlprof was there.
3. (--forked N) The same kinds side by side: N rounds of one child a kind forked from one
   process that loaded the recipe, in turn; each child does its kind, then an epoch untimed and
   --epochs timed. The ratio kind / the first of --kinds, geometric mean of the rounds' and its
   95% interval: the children start from the same memory and run a minute apart at most, so
   the host's drift, which spreads part 2's control over several percent in a noisy hour,
   mostly cancels.
The recipe's loader and train_step are those of ``dlprof.sweep.target.load_target``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

KINDS = ("none", "epochs", "epoch", "kept", "stdlib", "pandas", "import", "import_epoch", "source", "autotune",
         "alive", "quiet", "profile", "profile_quiet")
PROFILED_EPOCHS = 4  # kinds "profile": about as many as the tuner records on stream.py before it decides
_KEPT: list = []  # kind "alive": the settled tuner, kept as a training loop keeps it
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bytecode import compiled  # noqa: E402


def _epochs(loader, step, n: int) -> float:
    """Seconds an epoch, over ``n`` epochs."""
    start = time.perf_counter()
    for _ in range(n):
        for batch in loader:
            step(batch)
    return (time.perf_counter() - start) / n


def _until_settled(tuned, step, recipe: str, most: int = 50) -> None:
    for _ in range(most):
        _epochs(tuned, step, 1)
        if tuned.tuner.tuning.settled is not None:
            return
    raise SystemExit(f"{recipe}: not settled after {most} epochs; this benchmark measures a settled tuner")


def in_one_process(recipe: str, rounds: int) -> list[tuple[float, float]]:
    import dlprof
    from dlprof.sweep.target import load_target

    target = load_target(recipe)
    tuned = dlprof.autotune(target.loader)
    _until_settled(tuned, target.train_step, recipe)
    pairs = []
    for _ in range(rounds):
        plain = _epochs(target.loader, target.train_step, 1)
        pairs.append((plain, _epochs(tuned, target.train_step, 1)))
    tuned.close()
    return pairs


def _happen(kind: str, target, recipe: str) -> float:
    """What ``kind`` does to the process; the seconds it took."""
    start = time.perf_counter()
    if kind == "stdlib":
        import asyncio, concurrent.futures, decimal, difflib, email.mime.multipart, http.server  # noqa: F401, E401
        import logging.handlers, pydoc, sqlite3, tarfile, unittest, xml.etree.ElementTree, zipfile  # noqa: F401, E401
    elif kind == "pandas":
        import pandas  # noqa: F401
    elif kind == "import":
        import dlprof.tuned  # noqa: F401
    elif kind == "import_epoch":
        import dlprof.tuned  # noqa: F401, F811

        _epochs(target.loader, target.train_step, 1)
    elif kind == "source":
        import tempfile

        with tempfile.TemporaryDirectory() as empty:
            sys.dont_write_bytecode = True
            sys.pycache_prefix = empty  # no .pyc found there: what is imported now is compiled
            import dlprof.tuned  # noqa: F401, F811
    elif kind == "epochs":
        _epochs(target.loader, target.train_step, PROFILED_EPOCHS)
    elif kind == "epoch":
        _epochs(target.loader, target.train_step, 1)
    elif kind == "kept":
        import dlprof

        profiler = dlprof.Profiler(sample_system=False)
        _epochs(profiler.wrap(target.loader), target.train_step, 1)
        profiler.close()
        _KEPT.append(profiler)
    elif kind in ("profile", "profile_quiet"):
        import dlprof

        with dlprof.Profiler(sample_system=kind == "profile") as profiler:
            _epochs(profiler.wrap(target.loader), target.train_step, PROFILED_EPOCHS)
    elif kind in ("autotune", "alive", "quiet"):
        import dlprof

        tuned = dlprof.autotune(target.loader, sample_system=kind != "quiet")
        _until_settled(tuned, target.train_step, recipe)
        if kind == "alive":
            _KEPT.append(tuned)
        else:
            tuned.close()
            del tuned
    return time.perf_counter() - start


def child(recipe: str, kind: str, epochs: int) -> None:
    """One fresh process: --epochs as written, then ``kind``, then --epochs again; prints the ratio
    and the seconds ``kind`` took."""
    from dlprof.sweep.target import load_target

    target = load_target(recipe)
    before = _epochs(target.loader, target.train_step, epochs)
    took = _happen(kind, target, recipe)
    after = _epochs(target.loader, target.train_step, epochs)
    print(after / before, took)


def part3(recipe: str, kinds: list[str], rounds: int, epochs: int) -> None:
    """Part 3, in a process of its own that has run no loop (a child forked after torch's threads
    ran can hang): the recipe loaded once, then ``rounds`` rounds of one child a kind forked by
    recommend.py's ``forked`` (its time limit and process-group kill), in turn (the order reversed
    every other round): ``kind``, one epoch untimed, --epochs timed. Every child starts from the
    same memory and the kinds run side by side in time, so what the host does over minutes
    cancels in each round's ratio kind / the first kind."""
    from recommend import forked

    from dlprof.analysis.throughput import paired_ratio
    from dlprof.sweep.target import load_target

    target = load_target(recipe)

    def one_child(spec: str, kind: dict, seconds: float) -> dict:
        _happen(kind["kind"], target, spec)
        _epochs(target.loader, target.train_step, 1)
        return {"seconds": _epochs(target.loader, target.train_step, epochs)}

    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    failed = None
    for i in range(rounds):
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            out = forked(recipe, {"kind": kind}, 300.0, loop=one_child)
            if "seconds" not in out:
                failed = f"part 3: the child for {kind} failed or hung in round {i + 1}; the whole rounds before it:"
                break
            seconds[kind].append(out["seconds"])
        if failed:
            break
    n = min(len(v) for v in seconds.values())  # whole rounds: every kind measured
    if failed:
        print(failed, flush=True)
    for kind in kinds[1:] if n >= 2 else []:
        pairs = list(zip(seconds[kinds[0]][:n], seconds[kind][:n]))
        ratio, low, high = paired_ratio(pairs)
        print(f"3. forked side by side, {kind:<8}/ {kinds[0]}: {ratio:.3f} (95% interval {low:.3f}-{high:.3f}, "
              f"{n} rounds: {' '.join(f'{b / a:.3f}' for a, b in pairs)})", flush=True)
    if failed:
        raise SystemExit(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/stream.py")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--kinds", default=",".join(KINDS), help="the kinds of parts 2 and 3, comma-separated")
    parser.add_argument("--forked", type=int, default=0, metavar="N",
                        help="part 3: N rounds of forked children, the first of --kinds against each other")
    parser.add_argument("--child", choices=KINDS + ("forked",), help=argparse.SUPPRESS)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: one of {', '.join(KINDS)}, comma-separated")
    if args.child == "forked":
        part3(args.recipe, kinds, args.forked, args.epochs)
        return 0
    if args.child:
        child(args.recipe, args.child, args.epochs)
        return 0
    print(f"# command: python benchmarks/settled.py --rounds {args.rounds} --runs {args.runs} "
          f"--epochs {args.epochs}{'' if args.kinds == ','.join(KINDS) else ' --kinds ' + args.kinds}"
          f"{' --forked %d' % args.forked if args.forked else ''} {args.recipe}")
    print(f"# machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} cores")
    print(compiled())
    if args.rounds:
        part1(args)
    if args.runs:
        part2(args, kinds)
    if args.forked:
        out = subprocess.run([sys.executable, __file__, args.recipe, "--child", "forked", "--kinds", args.kinds,
                              "--forked", str(args.forked), "--epochs", str(args.epochs)],
                             capture_output=True, text=True, cwd=ROOT)
        print(out.stdout, end="")
        if out.returncode:
            last = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
            raise SystemExit(f"part 3 failed: {last[0]}")
    return 0


def part1(args) -> None:
    from dlprof.analysis.throughput import paired_ratio

    pairs = in_one_process(args.recipe, args.rounds)  # (plain s, tuned s) an epoch
    ratios = [tuned / plain for plain, tuned in pairs]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    ratio, low, high = paired_ratio(pairs)  # of seconds: tuned / plain
    print(f"1. settled autotune / as written, one epoch each in turn, one process: median "
          f"{statistics.median(ratios):.3f} (IQR {q[0]:.3f}-{q[2]:.3f}, {len(ratios)} rounds); geometric mean "
          f"{ratio:.3f}, 95% interval {low:.3f}-{high:.3f}", flush=True)


def part2(args, kinds: list[str]) -> None:
    after: dict[str, list[float]] = {k: [] for k in kinds}
    took: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.runs):
        for kind in kinds:
            out = subprocess.run([sys.executable, __file__, args.recipe, "--child", kind, "--epochs", str(args.epochs)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            ratio, seconds = out.stdout.strip().splitlines()[-1].split()
            after[kind].append(float(ratio))
            took[kind].append(float(seconds))
    for kind in kinds:
        r = after[kind]
        print(f"2. plain loop after / before, {kind:<8}: median {statistics.median(r):.3f} "
              f"(range {min(r):.3f}-{max(r):.3f}, {len(r)} processes); {kind} took "
              f"{statistics.median(took[kind]):.3f} s (median)")


if __name__ == "__main__":
    sys.exit(main())

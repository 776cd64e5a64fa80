"""Online tuning against the user's configuration and the grid's best (`make bench-autotune`).

    python benchmarks/autotune.py [--seconds 120] [--runs 1] [--rounds 3] [--final-seconds 4] [--lengthen 2]
        [--out FILE] [recipes/x.py ...]
    python benchmarks/autotune.py --quality-of 0,None,False,64 [--rounds 3] [--final-seconds 4] recipes/x.py

Per recipe, each run of steps 1-2 in a fresh interpreter (``import torch``, then the recipe
loaded with runpy, as a script runs; the autotuned run imports dlprof first, at the top, where a
script has its imports; the baseline never imports it). Not forked: forked children share one
heap layout and hash seed, and whatever that layout does to the loop repeats in every pair and
reads as the tuner's cost or gain; as pyperf runs its workers, each turn has its own random
PYTHONHASHSEED, and each process its own address-space layout (benchmarks/import_order.py):
1. baseline: the recipe's loader as written and its train_step, epoch after epoch until
   --seconds have passed: its epoch count E.
2. then --runs pairs in turn (which runs first alternates): E epochs as written, E epochs through
   ``dlprof.autotune(loader)`` (default budget), wall times with worker start-ups and the tuner's
   set-up. With --plain-after, a third run in each turn: autotuned until the decision, then
   the loader as written; its phases after the decision tell the tuned loader's cost from
   what the process carries. ratio = autotuned / baseline wall time,
   the geometric mean of the pairs' and, from two pairs, its 95% interval (Student's t over their
   log ratios, as the side-by-side check's): this machine's runs of the same loop differ by up to
   10-15% (`benchmarks/autotune_cost.py --control`), so one pair cannot tell a few percent
   (goal: <= 1.00; on a compute-bound recipe the tuner's cost, under 1.03). When the autotuned
   run ended before the tuner decided (its budget is seconds: a recipe it makes much faster
   ends its epochs first), the recipe's runs are doubled, up to --lengthen times.
3. quality: the settled configuration and the grid's best (from reports/benchmarks/recommend.txt,
   the exhaustive grid of `make bench-recommend`) measured by recommend.py's plain loop in
   --rounds interleaved rounds of --final-seconds; quality = settled / grid best (median of the
   per-round ratios; goal >= 0.90).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bytecode import compiled  # noqa: E402
from emit import emit  # noqa: E402
from recommend import forked  # noqa: E402

from dlprof.analysis.throughput import paired_ratio  # noqa: E402
from dlprof.probe.environment import available_cores  # noqa: E402
from dlprof.sweep.trial import preload_torch  # noqa: E402

FRESH_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fresh_run.py")
GRID = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reports", "benchmarks", "recommend.txt")
# stream: an iterable dataset (configurations change only between its epochs)
RECIPES = ("slow_storage", "image_folder", "mnist_mlp", "heavy_tail", "startup_cost", "compute_bound", "stream")


def fresh(spec: str, plan: dict, seconds: float, seed: int) -> dict:
    """benchmarks/fresh_run.py's ``timed_run`` in a fresh interpreter with PYTHONHASHSEED
    ``seed``, in a session of its own (killed with its workers after); it must answer within
    2 x ``seconds`` + 120 s. {} when it failed or hung."""
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    child = subprocess.Popen([sys.executable, FRESH_RUN, spec, json.dumps(plan), str(seconds)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             start_new_session=True)
    try:
        out, _ = child.communicate(timeout=2 * seconds + 120)
    except subprocess.TimeoutExpired:
        out = ""
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()
    try:
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    except json.JSONDecodeError:
        return {}


def grid_best() -> dict[str, dict]:
    """Recipe -> the grid's best configuration, from the committed bench-recommend results."""
    best = {}
    with open(GRID, encoding="utf-8") as fh:
        for line in fh:
            m = re.match(r"(\S+\.py)\s.*\|\s*\((\d+), (\w+), (\w+), (\d+)\)\s*\|", line)
            if m:
                w, p, keep, bs = m.group(2, 3, 4, 5)
                best[m.group(1)] = {"num_workers": int(w), "prefetch_factor": None if p == "None" else int(p),
                                    "persistent_workers": keep == "True", "batch_size": int(bs), "pin_memory": False}
    return best


def one_recipe(recipe: str, args, best: dict) -> dict:
    first = fresh(recipe, {"epochs": 0, "tune": False}, args.seconds, random.randrange(1, 2**32))
    if "epochs" not in first:
        raise SystemExit(f"benchmarks/autotune.py: {recipe} as written failed or hung (run it: python "
                         f"benchmarks/fresh_run.py {recipe} '{{\"epochs\": 1, \"tune\": false}}' 60)")
    epochs, wall_s, undecided = first["epochs"], first["wall_s"], []
    while True:
        # then --runs pairs, baseline and autotuned in turn: the ratio is the median of the pairs'
        pairs, by_epoch, plain_after = [], [], []
        for i in range(args.runs):
            # in turn, the first of a pair alternating: the second process of two in a row may run
            # otherwise than the first (the page cache, the host's frequency), and that must not
            # count as the tuner's
            runs, seed = {}, random.randrange(1, 2**32)
            arms = ("base", "tuned", "plain_after") if args.plain_after else ("base", "tuned")
            for arm in arms if i % 2 == 0 else arms[::-1]:
                plan = {"epochs": epochs, "tune": arm != "base", "plain_after": arm == "plain_after"}
                runs[arm] = fresh(recipe, plan, wall_s * 3, seed)
            base, tuned = runs["base"], runs["tuned"]
            pairs.append((base.get("wall_s", 0.0), tuned.get("wall_s", 0.0)))
            by_epoch.append((base.get("epoch_s"), tuned.get("epoch_s"), tuned.get("decided_in")))
            if args.plain_after:
                plain_after.append((base.get("epoch_s"), runs["plain_after"].get("epoch_s"),
                                    runs["plain_after"].get("decided_in")))
        # a run that ended before the tuner decided shows no settled configuration to judge:
        # the runs are doubled, up to --lengthen times (the tuner's budget is time, not epochs)
        if tuned.get("decided", True) or "wall_s" not in tuned or len(undecided) >= args.lengthen:
            break
        undecided.append(f"undecided in {epochs} epochs ({tuned['wall_s']:.0f} s autotuned)")
        epochs, wall_s = 2 * epochs, 2 * wall_s
    ratios = sorted(t / b for b, t in pairs if b > 0 and t > 0)
    interval = paired_ratio([(b, t) for b, t in pairs if b > 0 and t > 0])
    row = {"recipe": os.path.basename(recipe), "epochs": epochs, "base_s": statistics.median(b for b, _ in pairs),
           "tuned_s": statistics.median(t for _, t in pairs), "ratio": interval[0], "interval": interval[1:],
           "ratios": ratios, "settled": tuned.get("settled"), "reason": tuned.get("reason", "failed"),
           "windows": tuned.get("windows", 0), "speedup": tuned.get("speedup"), "decided": tuned.get("decided", False),
           "decided_s": tuned.get("decided_s"), "undecided": undecided, "phases": phases(by_epoch)}
    if plain_after:
        row["phases"] += "; the user's loader itself after the decision" + (phases(plain_after) or ": -")
    grid = best.get(row["recipe"])
    settled = tuned.get("settled")
    if grid and settled:
        ratios = quality_rounds(recipe, settled, grid, args)
        row["quality"] = statistics.median(ratios) if ratios else 0.0
    row["grid"] = grid
    return row


def phases(by_epoch: list[tuple]) -> str:
    """Where the pairs' difference sits: the epochs up to the one the tuner decided in (the
    latest over the pairs), then the rest, each as autotuned / baseline over the same epochs
    (geometric mean of the pairs' and its 95% interval)."""
    runs = [(b, t, d) for b, t, d in by_epoch if b and t and len(b) == len(t) and d]
    if len(runs) < 2:
        return ""
    k = max(d for _, _, d in runs)
    if k >= len(runs[0][0]):
        return ""
    parts = []
    n = len(runs[0][0])
    for name, cut in ((f"epochs 1-{k} (to the decision)", slice(0, k)), (f"epochs {k + 1}-{n}", slice(k, None))):
        r, low, high = paired_ratio([(sum(b[cut]), sum(t[cut])) for b, t, _ in runs])
        extra = statistics.median(sum(t[cut]) - sum(b[cut]) for b, t, _ in runs)
        parts.append(f"{name} {r:.3f} ({low:.3f}-{high:.3f}), {extra:+.2f} s")
    return "; by phase: " + "; ".join(parts)


def quality_rounds(recipe: str, settled: dict, grid: dict, args) -> list[float]:
    """--rounds interleaved rounds of recommend.py's plain loop: ``settled``'s rate / ``grid``'s."""
    ratios = []
    for _ in range(args.rounds):
        a = forked(recipe, settled, args.final_seconds)["samples_per_s"]
        b = forked(recipe, grid, args.final_seconds)["samples_per_s"]
        if b > 0:
            ratios.append(a / b)
    return ratios


def quality_of(spec: str, recipes: list[str], args, best: dict) -> list[str]:
    """--quality-of: a configuration against the grid's best only (no runs): how far apart the
    two are, round by round, on this machine now."""
    w, p, keep, bs = (x.strip() for x in spec.split(","))
    settled = {"num_workers": int(w), "prefetch_factor": None if p == "None" else int(p),
               "persistent_workers": keep == "True", "batch_size": int(bs), "pin_memory": False}
    lines = [f"# command: python benchmarks/autotune.py --quality-of {spec} --rounds {args.rounds} "
             f"--final-seconds {args.final_seconds:g} " + " ".join(args.recipes),
             f"# quality of {_key(settled)} = its rate / the grid best's, per round (plain loop, interleaved)"]
    for recipe in recipes:
        grid = best.get(os.path.basename(recipe))
        if grid is None:
            raise SystemExit(f"benchmarks/autotune.py: {recipe} has no grid best in {GRID}")
        ratios = quality_rounds(recipe, settled, grid, args)
        lines.append(f"{os.path.basename(recipe):<20} {_key(settled)} | {_key(grid)}: rounds "
                     f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")
    return lines


def _interval(low_high: tuple[float, float]) -> str:
    low, high = low_high
    return f"; 95% interval {low:.2f}-{high:.2f}" if high < float("inf") else ""


def _key(c: dict | None) -> str:
    return "-" if not c else f"({c['num_workers']}, {c['prefetch_factor']}, {c['persistent_workers']}, {c['batch_size']})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1, help="pairs of runs (baseline, autotuned) after the first")
    parser.add_argument("--final-seconds", type=float, default=4.0)
    parser.add_argument("--lengthen", type=int, default=2,
                        help="times a recipe's runs are doubled while its autotuned run ends before a decision")
    parser.add_argument("--quality-of", default=None, metavar="W,P,K,B",
                        help="only measure this configuration (num_workers, prefetch_factor, persistent_workers, "
                             "batch_size) against each recipe's grid best")
    parser.add_argument("--plain-after", action="store_true",
                        help="a third run in each turn: autotuned until the decision, then the loader as written "
                             "(by phase: is the cost after the decision the tuned loader's or the process's?)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    recipes = args.recipes or [f"recipes/{r}.py" for r in RECIPES]
    header = compiled()
    preload_torch()
    best = grid_best()
    if args.quality_of:
        emit(quality_of(args.quality_of, recipes, args, best), args.out)
        return 0
    lines = ["# dlprof.autotune: a run of the baseline's epochs, autotuned, against the same run as written",
             f"# command: python benchmarks/autotune.py --seconds {args.seconds:g} --runs {args.runs} --rounds {args.rounds} "
             f"--final-seconds {args.final_seconds:g} --lengthen {args.lengthen}"
             + (" --plain-after " if args.plain_after else " ") + " ".join(args.recipes),
             f"# machine: {platform.platform()}, python {platform.python_version()}, {available_cores()} cores available",
             header,
             "# ratio = autotuned wall s / baseline wall s, same epochs, geometric mean of --runs pairs run in turn "
             "and its 95% interval from 2 pairs (goal <= 1.00; "
             "a compute-bound recipe < 1.03); the last autotuned run's decision; "
             "quality = settled / grid best (plain loop, median of interleaved rounds; goal >= 0.90); "
             "*: the run ended before a decision, the configuration it was in; "
             "a recipe whose autotuned run ended undecided runs again, twice as long (--lengthen), as noted",
             "",
             f"{'recipe':<20}{'epochs':>7}{'base s':>8}{'tuned s':>8}{'ratio':>7}{'quality':>8}  settled | grid best; decision"]
    for recipe in recipes:
        print(f"{recipe} ...", file=sys.stderr, flush=True)
        r = one_recipe(recipe, args, best)
        ratio = r["ratio"]
        quality = f"{r['quality']:.2f}" if "quality" in r else "-"
        line = (f"{r['recipe']:<20}{r['epochs']:>7}{r['base_s']:>8.1f}{r['tuned_s']:>8.1f}{ratio:>7.2f}{quality:>8}  "
                f"[{', '.join(f'{x:.2f}' for x in r['ratios'])}{_interval(r['interval'])}] "
                f"{_key(r['settled'])}{'' if r['decided'] else '*'} | {_key(r['grid'])}; {r['windows']} windows"
                f"{'' if r['decided_s'] is None else ' in %.0f s' % r['decided_s']}: "
                f"{r['reason']}" + (f" (runs doubled: {'; '.join(r['undecided'])})" if r["undecided"] else "")
                + r["phases"])
        lines.append(line)
        print(line, file=sys.stderr, flush=True)
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

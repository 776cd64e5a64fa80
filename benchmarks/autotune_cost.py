"""Where an autotuned run's time goes, phase by phase, against the same run as written.

    python benchmarks/autotune_cost.py [--seconds 56] [--runs 3] [--control | --in-process [--windows-cpu | --cpu]]
        [--out FILE]
        [recipes/x.py ...]

Per recipe, in children forked from a process with torch imported (as benchmarks/autotune.py):
the recipe's loop as written for --seconds (its epoch count E), then --runs pairs in turn of E
epochs as written and E epochs through ``dlprof.autotune``. The loop stamps every batch as it
arrives (perf_counter_ns, the clock of the tuner's windows). The autotuned run is cut at its
windows' ends into phases; each window's phase into its switch (from the previous window's end
to its first measured batch: the old configuration's drain, the new one's worker start-up and
warm-up) and its measured part; after the last window, the rest of the run. A phase's cost is
its wall time minus the time the as-written run of the same pair took for as many samples (its
whole-run rate): what the phase cost the job, seconds (negative: it gained).

``--control``: both runs of each pair as written (no phases): how far two runs of the same loop
differ on this machine, the noise any one pair of the autotune benchmark carries.

``--in-process``: one child runs --runs pairs of blocks of E epochs, as written and through a
fresh ``dlprof.autotune`` (its whole tuning in each block: sampler start-up, windows, turns),
alternating which goes first. Blocks seconds apart in one process share the machine's drift,
which separate processes do not, so the tuner's cost on a pipeline where it keeps the user's
configuration (compute_bound: a few percent) is resolved in a few pairs. ``--windows-cpu``: the
autotuned blocks measure windows in the user's configuration only (a tuner that never moves),
timed in the main process's CPU seconds: what the windows' machinery costs, apart from the
configurations explored and the machine's drift. ``--cpu``: the real tuner, each block timed in
wall seconds and in the CPU seconds of the process and its children (workers, the system
sampler; the tuned loader is closed inside its block, so its children are waited for and
counted): the extra CPU seconds of an autotuned block over its pair's as-written block, as a
share of the as-written block's wall time, bound what the tuner costs a loop whose every
extra CPU second would delay it (a serial step), with a 95% interval (Student's t over the
pairs) that the machine's wall-time drift does not widen as much. Every mode
ends with the pairs' ratio (geometric mean) and its 95% interval (Student's t over the log ratios).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emit import emit  # noqa: E402
from recommend import _count, forked  # noqa: E402

from dlprof.analysis.throughput import half_width, paired_ratio  # noqa: E402
from dlprof.probe.environment import available_cores  # noqa: E402
from dlprof.sweep.trial import preload_torch  # noqa: E402


def stamped_run(spec: str, plan: dict, seconds: float) -> dict:
    """In a forked child: the recipe's loop (autotuned when ``plan["tune"]``), every batch's
    arrival stamped; the tuner's windows."""
    import dlprof
    from dlprof.sweep.target import load_target

    target = load_target(spec)
    loader = dlprof.autotune(target.loader) if plan["tune"] else target.loader
    step = target.train_step
    stamps, counts, epochs = [], [], 0
    start = time.perf_counter_ns()
    while (epochs < plan["epochs"]) if plan["epochs"] else (time.perf_counter_ns() - start < seconds * 1e9):
        for batch in loader:
            stamps.append(time.perf_counter_ns())
            counts.append(_count(batch))
            if step is not None:
                step(batch)
        epochs += 1
    end = time.perf_counter_ns()
    out = {"epochs": epochs, "start_ns": start, "end_ns": end, "stamps": stamps, "counts": counts}
    if plan["tune"]:
        t = loader.tuner.tuning
        out["windows"] = [{"label": _short(w.settings), "purpose": w.purpose, "start_ns": w.start_ns,
                           "end_ns": w.end_ns, "samples_per_s": w.samples_per_s, "outcome": w.outcome}
                          for w in t.windows]
        out["reason"] = t.reason or "still exploring at the end"
        loader.close()
    return out


def _short(s) -> str:
    return f"({s.num_workers}, {s.prefetch_factor}, {s.persistent_workers}, pin={s.pin_memory})"


def blocks_run(spec: str, plan: dict, seconds: float) -> dict:
    """In a forked child: ``plan["runs"]`` pairs of blocks of ``plan["epochs"]`` epochs, as
    written and through a fresh dlprof.autotune, alternating which goes first: (as written s,
    autotuned s) per pair, and each autotuned block's decision. ``plan["windows_cpu"]``: the
    autotuned block's tuner measures windows in the user's configuration and never moves
    (``Staying``), and each block's time is the main process's CPU seconds: the cost of the
    windows' machinery itself, apart from what the configurations it explores cost."""
    import dlprof
    from dlprof.sweep.target import load_target

    target = load_target(spec)
    step = target.train_step
    clock = time.process_time if plan.get("windows_cpu") else time.perf_counter

    def cpu_now() -> tuple[float, float]:
        t = os.times()  # children: those ended and waited for (workers joined, the sampler)
        return t.user + t.system, t.children_user + t.children_system

    def block(make) -> tuple[float, object]:
        """The epochs through ``make()``'s loader, its making and closing inside the time."""
        start, (own, kids), began = clock(), cpu_now(), time.perf_counter()
        loader = make()
        made = time.perf_counter() - began
        for _ in range(plan["epochs"]):
            for batch in loader:
                if step is not None:
                    step(batch)
        if hasattr(loader, "close"):  # the tuned loader: its sampler and workers end, counted here
            loader.close()
        wall = clock() - start
        own2, kids2 = cpu_now()
        cpus.append({"own": own2 - own, "children": kids2 - kids, "made_s": made})
        return wall, loader

    cpus: list[dict] = []

    if plan.get("windows_cpu"):
        from staying import staying as autotune
    else:
        autotune = dlprof.autotune

    block(lambda: target.loader)  # warm-up: caches, the allocator, the model's first steps
    pairs, reasons, cpu_pairs = [], [], []
    for i in range(plan["runs"]):
        times, used = {}, {}
        for tune in ((False, True) if i % 2 == 0 else (True, False)):
            times[tune], loader = block((lambda: autotune(target.loader)) if tune else (lambda: target.loader))
            used[tune] = cpus[-1]
            if tune:
                reasons.append(f"{len(loader.tuner.tuning.windows)} windows" if plan.get("windows_cpu")
                               else loader.tuner.tuning.reason or "still exploring at the end")
        pairs.append((times[False], times[True]))
        cpu_pairs.append((used[False], used[True]))
    return {"pairs": pairs, "reasons": reasons, "cpu_pairs": cpu_pairs}


def samples_between(run: dict, a_ns: int, b_ns: int) -> int:
    """Samples of the batches that arrived in (a_ns, b_ns]."""
    return sum(c for s, c in zip(run["stamps"], run["counts"]) if a_ns < s <= b_ns)


def phases(tuned: dict, base_rate: float) -> list[tuple[str, float, int, float]]:
    """(name, wall s, samples, cost s) of the autotuned run's phases."""
    out, edge = [], tuned["start_ns"]

    def add(name, a, b):
        n = samples_between(tuned, a, b)
        wall = (b - a) / 1e9
        out.append((name, wall, n, wall - n / base_rate))

    for i, w in enumerate(tuned["windows"]):
        name = f"w{i} {w['label']} ({w['purpose'] or 'baseline'})"
        if w["start_ns"] > edge:  # a failed configuration's window has no measured part
            add(name + " switch", edge, w["start_ns"])
        add(name + " measured", max(edge, w["start_ns"]), w["end_ns"])
        edge = max(edge, w["end_ns"])
    add("after the last window", edge, tuned["end_ns"])
    return out


def say_cpu(say, name: str, walls: list[tuple[float, float]], cpus: list[tuple[dict, dict]]) -> None:
    """Per pair: the CPU s of each block, the main process's and its ended children's (workers,
    the system sampler), and the autotuned loader's making (``dlprof.autotune(loader)``: the
    profiler, the sampler's start); then the child processes' extra CPU s as a share of the
    as-written wall s, with its mean and 95% interval: the part of the tuner's cost that every
    extra CPU second of another process would delay the loop by at most."""
    shares = []
    for i, ((base_wall, _), (base, tuned)) in enumerate(zip(walls, cpus)):
        extra = tuned["children"] - base["children"]
        shares.append(extra / base_wall)
        say(f"{name} block pair {i}: CPU s as written {base['own']:.2f} + children {base['children']:.2f}, "
            f"autotuned {tuned['own']:.2f} + children {tuned['children']:.2f} (making it {tuned['made_s']:.2f} s "
            f"of wall): children {extra:+.2f} CPU s, {100 * shares[-1]:+.2f}% of the block's wall time")
    mean = sum(shares) / len(shares)
    half = half_width(shares) if len(shares) > 1 else float("inf")
    made = [t["made_s"] for _, t in cpus]
    say(f"{name}: the autotuned blocks' child processes' extra CPU s / as-written wall s {100 * mean:+.2f}% "
        f"over {len(shares)} pairs (95% interval {100 * (mean - half):+.2f}% to {100 * (mean + half):+.2f}%); "
        f"making the tuned loader {min(made):.2f}-{max(made):.2f} s of wall a block")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*")
    parser.add_argument("--seconds", type=float, default=56.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--control", action="store_true", help="both runs of a pair as written")
    parser.add_argument("--in-process", action="store_true", help="pairs of blocks in one process")
    parser.add_argument("--windows-cpu", action="store_true",
                        help="with --in-process: a tuner that only measures windows, main-process CPU s")
    parser.add_argument("--cpu", action="store_true",
                        help="with --in-process: also the CPU s of the process and its children per block")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    recipes = args.recipes or ["recipes/mnist_mlp.py"]
    preload_torch()
    lines = ["# dlprof.autotune: where an autotuned run's time goes (cost = phase wall s - the as-written run's "
             "time for as many samples, at its whole-run rate; negative: it gained)",
             f"# command: python benchmarks/autotune_cost.py --seconds {args.seconds:g} --runs {args.runs} "
             + ("--control " if args.control else "") + ("--in-process " if args.in_process else "")
             + ("--windows-cpu " if args.windows_cpu else "") + ("--cpu " if args.cpu else "")
             + " ".join(args.recipes),
             f"# machine: {platform.platform()}, python {platform.python_version()}, {available_cores()} cores available",
             ""]

    def say(line: str = "") -> None:
        lines.append(line)
        print(line, file=sys.stderr, flush=True)

    for recipe in recipes:
        first = forked(recipe, {"epochs": 0, "tune": False}, args.seconds, loop=stamped_run)
        epochs = first["epochs"]
        walls = []
        if args.in_process:
            out = forked(recipe, {"epochs": epochs, "runs": args.runs, "windows_cpu": args.windows_cpu},
                         args.seconds * 2 * (args.runs + 1) * 1.5, loop=blocks_run)
            walls = [tuple(p) for p in out.get("pairs", [])]
            for i, ((base_s, tuned_s), reason) in enumerate(zip(walls, out.get("reasons", []))):
                unit = "CPU s" if args.windows_cpu else "s"
                say(f"{os.path.basename(recipe)} block pair {i}: {epochs} epochs as written {base_s:.1f} {unit}, "
                    f"{'windows only' if args.windows_cpu else 'autotuned'} {tuned_s:.1f} {unit} "
                    f"(ratio {tuned_s / base_s:.3f}); {reason}")
            if not walls:
                say(f"{recipe}: the child failed")
                continue
            if args.cpu:
                say_cpu(say, os.path.basename(recipe), walls, [tuple(p) for p in out["cpu_pairs"]])
        for run in range(0 if args.in_process else args.runs):
            base = forked(recipe, {"epochs": epochs, "tune": False}, args.seconds * 3, loop=stamped_run)
            tuned = forked(recipe, {"epochs": epochs, "tune": not args.control}, args.seconds * 3, loop=stamped_run)
            if "stamps" not in base or "stamps" not in tuned:
                say(f"{recipe} run {run}: a child failed")
                continue
            base_s = (base["end_ns"] - base["start_ns"]) / 1e9
            tuned_s = (tuned["end_ns"] - tuned["start_ns"]) / 1e9
            rate = sum(base["counts"]) / base_s
            walls.append((base_s, tuned_s))
            if args.control:
                say(f"{os.path.basename(recipe)} control {run}: {epochs} epochs as written, {base_s:.1f} s, then "
                    f"{tuned_s:.1f} s (ratio {tuned_s / base_s:.2f})")
                continue
            say(f"{os.path.basename(recipe)} run {run}: {epochs} epochs, as written {base_s:.1f} s "
                f"({rate:,.0f} samples/s), autotuned {tuned_s:.1f} s (ratio {tuned_s / base_s:.2f}, "
                f"{tuned_s - base_s:+.1f} s); {tuned['reason']}")
            say(f"  {'phase':<56}{'wall s':>8}{'samples':>9}{'cost s':>8}")
            for name, wall, n, cost in phases(tuned, rate):
                say(f"  {name:<56}{wall:>8.2f}{n:>9}{cost:>+8.2f}")
            say()
        ratio, low, high = paired_ratio(walls)
        say(f"{os.path.basename(recipe)}: {'second / first' if args.control else 'autotuned / as written'} "
            f"{ratio:.3f} over {len(walls)} pairs (95% interval {low:.3f}-{high:.3f})")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

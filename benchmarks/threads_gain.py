"""The gain of the torch-threads knob, measured side by side (`make bench-threads`).

    python benchmarks/threads_gain.py [recipes/image_folder.py] [--results DIR/results.json]
        [--scan-args="--no-hotspots"] [--seconds 60] [--out FILE]

A scan of the recipe (or its saved results) gives a recommendation; where it sets
``torch.set_num_threads`` (the scan found the step slowed beside busy workers), two comparisons,
each in one child process taking turns of 2.5 s (the scan's own side-by-side measurement), until
the 95% interval decides or --seconds pass:
  1. the recommendation against the same loader settings without the threads;
  2. the recommendation against the fastest configuration the scan measured without the knob.
Printed: each ratio (geometric mean of the pairs) with its 95% interval.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import subprocess
import sys
import tempfile

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)
from dlprof.analysis.throughput import paired_ratio  # noqa: E402
from dlprof.probe.environment import available_cores  # noqa: E402
from dlprof.records import load_json  # noqa: E402
from dlprof.scan_records import ScanResult  # noqa: E402
from dlprof.sweep.paired import run_side_by_side  # noqa: E402
from dlprof.sweep.trial import preload_torch  # noqa: E402

TURN_S = 2.5  # the scan's turn (limits.max_seconds / 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/image_folder.py")
    parser.add_argument("--results", default=None, help="a saved scan of the recipe instead of a new one")
    parser.add_argument("--scan-args", default="--no-hotspots")
    parser.add_argument("--seconds", type=float, default=60.0, help="longest side-by-side measurement")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="dlprof-threads-")
    lines = ["# The torch-threads knob, measured side by side", f"# command: python benchmarks/threads_gain.py "
             f"{args.recipe} --scan-args={shlex.quote(args.scan_args)} --seconds {args.seconds:g}",
             f"# machine: {platform.platform()}, {available_cores()} cores available", ""]
    results = args.results
    if results is None:
        subprocess.run([sys.executable, "-m", "dlprof", "scan", args.recipe, "--out", work,
                        *shlex.split(args.scan_args)], cwd=REPO, check=True, capture_output=True, timeout=900)
        results = os.path.join(work, "results.json")
    scan = ScanResult.from_dict(load_json(results))
    rec = scan.recommendation.settings
    lines.append(f"scan: recommended {rec.label()}; its claim {scan.speedup:.2f}x over the baseline")
    if not rec.num_threads:
        lines.append("the recommendation sets no torch threads: the knob did not apply on this run")
        print("\n".join(lines))
        return 0
    without = [t for t in scan.trials if t.status == "ok" and not t.settings.num_threads
               and not t.purpose.measured_again]
    fastest = max(without, key=lambda t: t.samples_per_s).settings if without else None
    preload_torch()
    others = [("the same settings without the threads", dataclasses.replace(rec, num_threads=None))]
    if fastest is not None and fastest != others[0][1]:
        others.append(("the fastest configuration measured without the knob", fastest))
    for i, (name, other) in enumerate(others, 1):
        base, cand, pairs = run_side_by_side(args.recipe, other, rec, work, 100 + i, None, TURN_S, args.seconds,
                                             args.seconds + 120)
        if not pairs:
            lines.append(f"{i}. against {name} ({other.label()}): {base.status}: {base.error}")
            continue
        ratio, low, high = paired_ratio(pairs)
        lines.append(f"{i}. against {name} ({other.label()}): {ratio:.2f}x, 95% interval {low:.2f}-{high:.2f}x "
                     f"({len(pairs)} pairs of {TURN_S:g} s turns; {statistics_line(pairs)})")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


def statistics_line(pairs) -> str:
    base = sum(a for a, _ in pairs) / len(pairs)
    cand = sum(b for _, b in pairs) / len(pairs)
    return f"mean {cand:,.0f} against {base:,.0f} samples/s"


if __name__ == "__main__":
    raise SystemExit(main())

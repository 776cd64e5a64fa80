"""One pipeline scanned again and again, quiet and beside busy processes: do the runs agree
(`make bench-repeat`)?

    python benchmarks/repeat_scan.py [--times 3] [--busy 0,2] [--scan-args="--no-hotspots"]
                                     [--out FILE] [TARGET]

A run's answer is its recommended change (or "keep") and its measured speedup with the 95%
interval; the check's outcome says whether a "keep" was a tie or a check the budget ended. Runs
agree when they recommend the same change; runs that recommend different changes whose intervals
overlap chose between configurations the scan cannot tell apart. A "keep" beside a recommendation
whose interval lies clear of 1 is a flip, the bug this measures. ``--busy K`` runs K processes
that spin on a core each beside the scan: a machine shared with other work, at about half speed
with K=2 on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)
from dlprof.analysis.recommend import changes  # noqa: E402
from dlprof.scan_records import ScanResult  # noqa: E402


def _spin() -> None:
    while True:
        pass


def scan_once(target: str, scan_args: list[str], busy: int, out: str) -> tuple[ScanResult, float]:
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    began = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "dlprof", "scan", target, "--out", out, *scan_args],
                              capture_output=True, text=True, cwd=REPO)
    finally:
        for p in spinners:
            p.terminate()
            p.join()
    if proc.returncode != 0:
        raise SystemExit(f"repeat_scan: the scan failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    with open(os.path.join(out, "results.json"), encoding="utf-8") as fh:
        return ScanResult.from_dict(json.load(fh)), time.monotonic() - began


def answer(r: ScanResult) -> tuple[str, str]:
    """(the change recommended or "keep", the speedup with its interval and the check's outcome)."""
    change = "keep" if r.recommendation is r.baseline else ", ".join(
        changes(r.baseline.settings, r.recommendation.settings))
    c = r.check
    if c is None:
        return change, "no check (the baseline led)"
    interval = f"{c.low:.2f}-{c.high:.2f}x" if c.low is not None else "no interval"
    ratio = f"{c.ratio:.2f}x" if c.ratio is not None else "-"
    return change, f"{c.outcome}: {ratio} ({interval}, {c.pairs} pairs)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default="recipes/image_folder.py")
    parser.add_argument("--times", type=int, default=3)
    parser.add_argument("--busy", default="0,2", help="busy processes beside the scan, a run set each")
    parser.add_argument("--scan-args", default="--no-hotspots")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    busy_counts = [int(x) for x in args.busy.split(",")]
    lines = [f"# {args.target} scanned {args.times} times with each count of busy processes beside it",
             f"# command: python benchmarks/repeat_scan.py --times {args.times} --busy {args.busy} "
             f"--scan-args={shlex.quote(args.scan_args)} {args.target}",
             f"# machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} cores", ""]
    print("\n".join(lines), flush=True)
    flips = 0
    with tempfile.TemporaryDirectory() as tmp:
        for busy in busy_counts:
            answers = []
            for i in range(args.times):
                r, wall = scan_once(args.target, shlex.split(args.scan_args), busy, os.path.join(tmp, f"b{busy}-{i}"))
                change, check = answer(r)
                answers.append((change, r.check))
                line = f"busy {busy}, run {i}: {wall:5.0f} s  {change}  [{check}]"
                print(line, flush=True)
                lines.append(line)
            recommended = [c for change, c in answers if change != "keep" and c is not None and c.low is not None]
            kept = [c for change, c in answers if change == "keep"]
            flip = bool(recommended and kept)
            flips += flip
            distinct = sorted({change for change, _ in answers})
            overlap = (max(c.low for c in recommended) <= min(c.high for c in recommended)) if recommended else True
            line = (f"busy {busy}: {len(distinct)} distinct answer(s) in {args.times} runs; "
                    f"{'a keep beside a recommendation (a flip)' if flip else 'no keep beside a recommendation'}; "
                    f"the recommendations' intervals {'overlap' if overlap else 'do NOT overlap'}")
            print(line + "\n", flush=True)
            lines += [line, ""]
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 1 if flips else 0


if __name__ == "__main__":
    sys.exit(main())

"""Scan every recipe and tabulate what dlprof found (`make bench-recipes`).

    python benchmarks/scan_recipes.py [--scan-args=--quick] [--out reports/recipes]

Each recipe's scan goes to OUT/<recipe>/ (results.json, report.md, and scan.txt: what the
terminal showed); the table, with the expectation from each recipe's docstring beside the
finding, to OUT/README.md. Also OUT/mnist_mlp/profile-summary.txt: what
`dlprof profile recipes/mnist_mlp.py --epochs 2` printed (the README's summary example).

Kept for a reader: every file of one complete sample (SAMPLE, the demo's recipe) but its per-trial
profile dumps (up to 2.3 MB each), and for the others the summaries: results.json and scan.txt
(what the terminal showed: verdict, evidence, speedup, recommendation). Their report.md would
link plot files of 0.2-0.7 MB each recipe, 4.4 MB in all; `dlprof report results.json` renders
it again, timelines included (the results keep what the reports draw).
"""
from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)
from dlprof.analysis.recommend import changes  # noqa: E402
from dlprof.probe.environment import available_cores  # noqa: E402
from dlprof.scan_records import LoaderSettings  # noqa: E402

EXPECTED = re.compile(r"^Expected: (.+)$", re.M)
SAMPLE = "image_folder"
SUMMARY = ("results.json", "scan.txt", "profile-summary.txt")


def trim(out: str, name: str) -> None:
    """Leave what a reader needs (see the module's docstring)."""
    for root, _, files in os.walk(out):
        for f in files:
            path = os.path.join(root, f)
            keep = (not f.endswith(".profile.json") if name == SAMPLE
                    else root == out and f in SUMMARY)
            if not keep:
                os.unlink(path)
    for root, dirs, _ in os.walk(out, topdown=False):
        for d in dirs:
            if not os.listdir(os.path.join(root, d)):
                os.rmdir(os.path.join(root, d))


def docstring_line(path: str, pattern: re.Pattern) -> str:
    with open(path, encoding="utf-8") as fh:
        doc = ast.get_docstring(ast.parse(fh.read())) or ""
    match = pattern.search(doc)
    return match.group(1).strip() if match else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan-args", default="--quick")
    parser.add_argument("--out", default=os.path.join(REPO, "reports", "recipes"))
    args = parser.parse_args()
    rows = [
        "# What `dlprof scan` found on each recipe",
        "",
        f"Command: `python benchmarks/scan_recipes.py --scan-args={shlex.quote(args.scan_args)}`; "
        f"machine: {platform.platform()}, {available_cores()} cores available.",
        "",
        "| recipe | expected | found | recommendation (changes) | measured speedup | scan s |",
        "|---|---|---|---|---|---|",
    ]
    met = 0
    for path in sorted(glob.glob(os.path.join(REPO, "recipes", "*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        out = os.path.join(args.out, name)
        shutil.rmtree(out, ignore_errors=True)  # no trial of an earlier scan left beside this one
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "dlprof", "scan", os.path.relpath(path, REPO),
                               "--out", os.path.relpath(out, REPO), *shlex.split(args.scan_args)],
                              cwd=REPO, capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - t0
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "scan.txt"), "w", encoding="utf-8") as fh:
            fh.write(f"$ dlprof scan {os.path.relpath(path, REPO)} --out {os.path.relpath(out, REPO)} "
                     f"{args.scan_args}\n{proc.stdout}")
        try:
            with open(os.path.join(out, "results.json"), encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            rows.append(f"| {name} | {docstring_line(path, EXPECTED)} | scan failed: "
                        f"{proc.stderr.strip().splitlines()[-1:]} | | | {seconds:.0f} |")
            continue
        trim(out, name)
        b = data["bottleneck"] or {}
        found = f"{b.get('verdict')}, stage {b.get('stage')}" + (f" ({b['kind']})" if b.get("kind") else "")
        base = LoaderSettings(**data["trials"][data["baseline"]["trial"]]["config"])
        rec = LoaderSettings(**data["trials"][data["recommendation"]["trial"]]["config"])
        diff = ", ".join(changes(base, rec)) or "keep"
        speedup = f"{data['speedup']:.2f}x" if data.get("speedup") else "-"
        if data.get("speedup_ci"):
            speedup += f" (95%: {data['speedup_ci'][0]:.2f}-{data['speedup_ci'][1]:.2f})"
        expected = docstring_line(path, EXPECTED)
        met += found == expected
        rows.append(f"| {name} | {expected} | {found} | {diff} | {speedup} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    rows += ["", f"{met} of {len(rows) - 6} recipes found as expected."]
    print(rows[-1], flush=True)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:  # only the printed summary is kept
        summary = subprocess.run([sys.executable, "-m", "dlprof", "profile", "recipes/mnist_mlp.py", "--epochs", "2",
                                  "--out", tmp], cwd=REPO, capture_output=True, text=True, timeout=600)
    os.makedirs(os.path.join(args.out, "mnist_mlp"), exist_ok=True)
    with open(os.path.join(args.out, "mnist_mlp", "profile-summary.txt"), "w", encoding="utf-8") as fh:
        printed = "".join(ln for ln in summary.stdout.splitlines(True) if not ln.startswith("results: "))  # a temp path
        fh.write(f"$ dlprof profile recipes/mnist_mlp.py --epochs 2\n{printed}")
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

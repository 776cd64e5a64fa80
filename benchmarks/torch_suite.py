"""PyTorch's own DataLoader tests, bare and under `dlprof run`: the tests whose outcome differs
(`make bench-torch-suite FILE=path/to/test_dataloader.py`).

    python benchmarks/torch_suite.py PATH/test_dataloader.py [--out FILE] [-k EXPR]

Fetches nothing: give it a copy of ``test/test_dataloader.py`` from pytorch/pytorch (ideally of
the installed torch's release). The file runs twice with pytest in a scratch folder: bare, and
as `dlprof run -- python -m pytest ...` instruments a program (every DataLoader the tests iterate
profiled, one profile per DataLoader object across its epochs, in every Python process the tests
start). Printed: each test's outcome where the two differ, and the counts.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def outcomes(junit: str) -> dict[str, str]:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[name] = kinds[0] if kinds else "passed"
    return out


def run_suite(test_file: str, work: str, label: str, under_dlprof: bool, extra: list[str]) -> tuple[dict, float]:
    junit = os.path.join(work, f"{label}.xml")
    pytest = [sys.executable, "-m", "pytest", os.path.basename(test_file), "-q", "-p", "no:cacheprovider",
              f"--junitxml={junit}", *extra]
    command = ([sys.executable, "-m", "dlprof", "run", "--out", os.path.join(work, "dlprof-run"), "--"] + pytest
               if under_dlprof else pytest)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    subprocess.run(command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return outcomes(junit), time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test_file")
    parser.add_argument("--out", default=None)
    parser.add_argument("-k", default=None, help="pytest -k expression (a subset)")
    args = parser.parse_args()
    import torch

    work = tempfile.mkdtemp(prefix="dlprof-torch-suite-")
    shutil.copy(args.test_file, work)
    extra = ["-k", args.k] if args.k else []
    bare, bare_s = run_suite(args.test_file, work, "bare", False, extra)
    profiled, prof_s = run_suite(args.test_file, work, "dlprof", True, extra)
    lines = ["# PyTorch's DataLoader tests, bare and under dlprof run",
             f"# command: python benchmarks/torch_suite.py {os.path.basename(args.test_file)}"
             + (f" -k {args.k!r}" if args.k else ""),
             f"# machine: {platform.platform()}, python {platform.python_version()}, torch {torch.__version__}", "",
             f"bare: {sum(v == 'passed' for v in bare.values())} passed of {len(bare)} ({bare_s:.0f} s); "
             f"under dlprof run: {sum(v == 'passed' for v in profiled.values())} passed of {len(profiled)} "
             f"({prof_s:.0f} s)", ""]
    differ = sorted(n for n in set(bare) | set(profiled) if bare.get(n) != profiled.get(n))
    lines += [f"differs: {n}: bare {bare.get(n, 'absent')}, under dlprof {profiled.get(n, 'absent')}" for n in differ]
    lost = [n for n in differ if bare.get(n) == "passed"]
    lines += ["", f"{len(differ)} test(s) differ; passing bare but not under dlprof: {len(lost)}"]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())

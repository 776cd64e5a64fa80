"""A 2-rank torchrun job under `dlprof run`, N times in a row (`make bench-run-torchrun`): does
every run end (no hang at exit), and name the slowed rank as the straggler?

    python benchmarks/run_torchrun.py [--times 10] [--out FILE]

The job is tests/test_run.py's DDP_JOB (gloo, a DistributedSampler, rank 1's reads 2 ms slower a
sample), run unmodified with `dlprof run -- python -m torch.distributed.run --standalone
--nproc_per_node 2 ddp.py`; a run that takes over 180 s counts as a hang.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)
from tests.test_run import run_torchrun_job  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = ["# A 2-rank torchrun job under dlprof run, again and again",
             f"# command: python benchmarks/run_torchrun.py --times {args.times}",
             f"# machine: {platform.platform()}, python {platform.python_version()}", ""]
    named = ended = 0
    for i in range(1, args.times + 1):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            try:
                proc, _ = run_torchrun_job(Path(tmp), slow_rank=1)
            except subprocess.TimeoutExpired:
                lines.append(f"run {i}: HUNG (no end within 180 s)")
                print(lines[-1], flush=True)
                continue
            seconds = time.perf_counter() - t0
        ended += proc.returncode == 0
        verdict = next((ln.split("; ", 1)[1] for ln in proc.stderr.splitlines()
                        if ln.startswith("dlprof run: 2 ranks")), "no ranks line")
        named += "stragglers: rank 1 " in verdict + " "
        lines.append(f"run {i}: exit {proc.returncode}, {seconds:.1f} s, {verdict}")
        print(lines[-1], flush=True)
    lines += ["", f"ended with exit 0: {ended} of {args.times}; rank 1 named the straggler: {named} of {args.times}"]
    print(lines[-1])
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0 if ended == named == args.times else 1


if __name__ == "__main__":
    raise SystemExit(main())

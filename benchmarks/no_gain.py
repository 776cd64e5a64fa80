"""Pipelines that no DataLoader setting can speed up, scanned again and again: every scan must say
"keep" (`make bench-no-gain`).

    python benchmarks/no_gain.py [--times 10] [--scan-args="--quick --no-hotspots"] [--out FILE]

Two pipelines:
  sleeping-step   a 20 ms step that sleeps (an accelerator's kernels: the CPU is free) over a
                  TensorDataset whose batches cost microseconds: overlapping that fetch with the
                  step could save at most 0.1 ms of 20, under 1%
  compute_bound   recipes/compute_bound.py: a 35-40 ms CPU step over in-memory tensors; workers
                  can only take CPU from the step
A recommendation other than "keep" on either is a false claim of a speedup that noise produced.
"""
from __future__ import annotations

import argparse
import json
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
from dlprof.scan_records import LoaderSettings  # noqa: E402

SLEEPING_STEP = '''"""No possible gain: the step sleeps 20 ms, a batch costs microseconds."""
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

loader = DataLoader(TensorDataset(torch.randn(4096, 8), torch.randint(0, 2, (4096,))), batch_size=32, shuffle=True)


def train_step(batch):
    time.sleep(0.020)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=10)
    parser.add_argument("--scan-args", default="--quick --no-hotspots")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = ["# Pipelines with no possible gain, each scanned repeatedly: every recommendation must be 'keep'",
             f"# command: python benchmarks/no_gain.py --times {args.times} --scan-args={shlex.quote(args.scan_args)}",
             f"# machine: {platform.platform()}, {os.cpu_count()} cpus", ""]
    print("\n".join(lines), flush=True)
    total_kept = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        sleeping = os.path.join(tmp, "sleeping_step.py")
        with open(sleeping, "w", encoding="utf-8") as fh:
            fh.write(SLEEPING_STEP)
        for name, path in (("sleeping-step", sleeping), ("compute_bound", os.path.join(REPO, "recipes", "compute_bound.py"))):
            said = []
            for k in range(args.times):
                out = os.path.join(tmp, f"{name}-{k}")
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "dlprof", "scan", path, "--out", out, *shlex.split(args.scan_args)],
                               cwd=REPO, capture_output=True, text=True, timeout=600)
                with open(os.path.join(out, "results.json"), encoding="utf-8") as fh:
                    data = json.load(fh)
                diff = ", ".join(changes(LoaderSettings(**data["trials"][data["baseline"]["trial"]]["config"]),
                                         LoaderSettings(**data["trials"][data["recommendation"]["trial"]]["config"]))) or "keep"
                ci = data.get("speedup_ci")
                said.append(diff)
                line = (f"{name} scan {k + 1}: {diff}; verdict {data['bottleneck']['verdict']}, stage "
                        f"{data['bottleneck']['stage']}; measured {data.get('speedup') or 1.0:.3f}x"
                        + (f" (95% interval {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
                        + f"; {time.perf_counter() - t0:.0f} s")
                lines.append(line)
                print(line, flush=True)
            kept = said.count("keep")
            total_kept += kept
            total += len(said)
            lines.append(f"{name}: 'keep' in {kept} of {len(said)} scans")
            print(lines[-1], flush=True)
    lines += ["", f"'keep' in {total_kept} of {total} scans"]
    print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0 if total_kept == total else 1


if __name__ == "__main__":
    raise SystemExit(main())

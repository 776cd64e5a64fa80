"""How close ``probe.handoff.receive_ms`` (a batch's reception timed on a copy from a helper)
comes to a real worker's hand-over (``worker_receive_ms``: the training thread's CPU a batch from
a 1-worker DataLoader), by batch shape, in rounds. The ratio sets ``sweep.online.RECEIVE_SHARE``.

    python benchmarks/handoff.py [--rounds 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

from emit import emit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch  # noqa: E402

from dlprof.probe.handoff import receive_ms, worker_receive_ms  # noqa: E402

# (tensors, shape): small records (stream.py's batch is 3 of about this size), many tensors,
# and image batches, whose mapping is most of the cost
SHAPES = ((1, (64, 16)), (3, (64, 16)), (8, (64, 16)), (32, (64, 16)), (2, (32, 3, 64, 64)), (2, (32, 3, 224, 224)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = [f"# command: python benchmarks/handoff.py --rounds {args.rounds}",
             f"# machine: {platform.platform()}, python {platform.python_version()}, torch {torch.__version__}",
             "# timed = receive_ms (ms, CPU), real = worker_receive_ms (ms, CPU); ratio = timed / real per round",
             f"{'batch':<28}{'timed ms':>10}{'real ms':>10}  ratios"]
    every = []
    for tensors, shape in SHAPES:
        batch = {f"t{i}": torch.full(shape, float(i)) for i in range(tensors)}
        rounds = [(receive_ms(batch), worker_receive_ms(batch, batches=10 if shape[-1] > 100 else 40))
                  for _ in range(args.rounds)]
        ratios = [t / r for t, r in rounds]
        every += ratios
        label = f"{tensors} x {tuple(shape)}"
        lines.append(f"{label:<28}{statistics.median(t for t, _ in rounds):>10.2f}"
                     f"{statistics.median(r for _, r in rounds):>10.2f}  " + ", ".join(f"{x:.2f}" for x in ratios))
        print(lines[-1], file=sys.stderr, flush=True)
    lines.append(f"all ratios: {min(every):.2f}-{max(every):.2f}, median {statistics.median(every):.2f}")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exactly-once on the recipes' own pipelines: each recipe's loop through ``dlprof.autotune`` with a
tuner that switches configuration every few batches, against the same loop untuned.

    python benchmarks/autotune_exact.py [--epochs 3] [--max-batches 200] [--every 7] [recipes/x.py ...]

The tests prove the switching on purpose-made datasets (sample i is i); this runs it on the
recipes' datasets, samplers and collate functions as they are (a weighted sampler drawing with
replacement, padding collate, batches of one, spawned workers, an iterable stream...). Each
recipe runs in its own process: seeded, ``--epochs`` epochs of the loop (more on a small
dataset, up to 40, for the rotation to come round; each cut after
``--max-batches`` batches, as a loop with a step limit leaves it) untuned, then seeded again
through ``AutotunedLoader`` with a rotating tuner: every ``--every`` measured batches the next of
num_workers=2, 2 kept workers with prefetch_factor=4, none, 3 workers, and the user's own. An
iterable dataset is not compared: its samples follow the worker count, so another num_workers
serves other batches (its configurations change only between epochs, tests/test_autotune.py). Every
batch (all its tensors' bytes, its other values' repr) is hashed; the sequences must be equal,
except where the tuned loader's results note that the dataset draws from torch's random
generator in the training process (augmentation at num_workers=0): served by workers, those
draws come from the workers' generators, as with num_workers changed by hand.
Prints per recipe: the batches, the configurations that served them, the switches, and whether
the two sequences are the same (the first differing batch if not).
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import subprocess
import sys
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

# ddp_train.py needs torchrun (a process group): its loop is the others' with a DistributedSampler
SKIP = ("ddp_train.py",)


def batch_hash(batch) -> str:
    import torch

    h = hashlib.sha1()

    def walk(x):
        if isinstance(x, torch.Tensor):
            h.update(str((x.dtype, tuple(x.shape))).encode())
            h.update(x.detach().contiguous().cpu().numpy().tobytes())
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for y in x:
                walk(y)
            h.update(b"]")
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(str(k).encode())
                walk(x[k])
        else:
            h.update(repr(x).encode())

    walk(batch)
    return h.hexdigest()


def rotating_tuner(baseline, every: int):
    """A tuner that moves to the next configuration after ``every`` measured batches (between
    epochs, for an iterable dataset), through the rotation and back to the user's, then settles."""
    import dataclasses

    from dlprof.sweep.online import Tuner
    from dlprof.sweep.policy import SearchSpace

    def s(workers, prefetch=None, persistent=False):
        return dataclasses.replace(baseline, num_workers=workers, prefetch_factor=(prefetch or 2) if workers else None,
                                   persistent_workers=persistent and workers > 0)

    plan = [s(2), s(2, 4, True), s(0), s(3), baseline]

    class Rotating(Tuner):
        def __init__(self) -> None:
            super().__init__(SearchSpace(cores=2, max_workers=4, window_s=1.0), baseline, budget_s=1e9)
            self.plan = list(plan)

        def done(self, seconds, batches, rate, ci_pct):
            return batches >= every

        def next_settings(self, measured, window):
            self.tuning.windows.append(window)
            if not self.plan:
                return self.settle(window.settings, "the rotation ended")
            return self.plan.pop(0)

    return Rotating()


def one(spec: str, epochs: int, max_batches: int, every: int) -> str:
    """In this process: the recipe untuned, then through the rotating tuner; one line."""
    import torch

    from dlprof.sweep.loaders import settings_of
    from dlprof.sweep.target import load_target
    from dlprof.tuned import AutotunedLoader

    target = load_target(spec)
    if target.loader._dataset_kind != 0:  # not map-style
        return (f"{os.path.basename(spec):22s} not compared: an iterable dataset's samples follow the worker count "
                "(each worker iterates its share), so its configurations change only between epochs and another "
                "num_workers serves other batches (tests/test_autotune.py)")
    step = target.train_step
    # enough epochs for the rotation to come round (six windows of ``every`` batches after up to
    # 15 of warm-up each) on a dataset of a few batches, as many as asked on a longer one
    per_epoch = min(len(target.loader), max_batches)
    epochs = min(40, max(epochs, math.ceil(6 * (every + 15) / per_epoch)))

    def loop(loader) -> list[str]:
        seen = []
        for _ in range(epochs):
            for i, batch in enumerate(loader):
                if step is not None:
                    step(batch)
                seen.append(batch_hash(batch))
                if i + 1 >= max_batches:
                    break
        return seen

    torch.manual_seed(0)
    start = time.perf_counter()
    bare = loop(target.loader)
    bare_s = time.perf_counter() - start
    torch.manual_seed(0)
    tuned = AutotunedLoader(target.loader, sample_system=False,
                            tuner=rotating_tuner(settings_of(target.loader), every))
    start = time.perf_counter()
    got = loop(tuned)
    tuned_s = time.perf_counter() - start
    served = [w.settings.num_workers for w in tuned.tuner.tuning.windows]
    noted = any("random generator in the training process" in n for n in tuned.result().run.notes)
    tuned.close()
    first = next((i for i, (a, b) in enumerate(zip(bare, got)) if a != b), None)
    if bare == got:
        verdict = "same"
    elif noted and len(bare) == len(got):
        # its augmentations come from the workers' generators in a configuration with workers
        verdict = (f"differ from batch {first}, as noted: the dataset draws from torch's random generator in "
                   "the training process (augmentation), which workers do not advance")
    else:
        verdict = f"DIFFERENT at batch {first}" if first is not None else (
            f"DIFFERENT: {len(bare)} batches bare, {len(got)} tuned")
    return (f"{os.path.basename(spec):22s} {epochs:6d} {len(bare):7d} {len(served) - 1:8d}  "
            f"{'-'.join(map(str, served)):16s} {bare_s:7.1f} {tuned_s:7.1f}  {verdict}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="*")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-batches", type=int, default=200)
    ap.add_argument("--every", type=int, default=7)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one recipe
    args = ap.parse_args()
    if args.one:
        print(one(args.recipes[0], args.epochs, args.max_batches, args.every), flush=True)
        return 0
    recipes = args.recipes or sorted(os.path.join(REPO, "recipes", f) for f in os.listdir(os.path.join(REPO, "recipes"))
                                     if f.endswith(".py") and f not in SKIP)
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print("# dlprof.autotune, exactly once on the recipes: the loop untuned, then with a configuration switch "
          f"every {args.every} batches (workers 2, 2 kept with prefetch 4, 0, 3, the user's)")
    print(f"# command: python benchmarks/autotune_exact.py --epochs {args.epochs} --max-batches {args.max_batches} "
          f"--every {args.every}, at {commit}")
    print(f"# machine: {platform.platform()}, python {platform.python_version()}")
    print(f"{'recipe':22s} {'epochs':>6s} {'batches':>7s} {'switches':>8s}  {'num_workers':16s} {'bare s':>7s} {'tuned s':>7s}  "
          "batches")
    failed = 0
    for spec in recipes:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", spec, "--epochs", str(args.epochs),
               "--max-batches", str(args.max_batches), "--every", str(args.every)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
            line = p.stdout.strip().splitlines()[-1] if p.returncode == 0 and p.stdout.strip() else (
                f"{os.path.basename(spec):22s} FAILED (exit {p.returncode}): "
                + (p.stderr.strip().splitlines() or ["no output"])[-1])
        except subprocess.TimeoutExpired:
            line = f"{os.path.basename(spec):22s} FAILED: no answer within 900 s"
        failed += not (line.endswith("  same") or " not compared: " in line or ", as noted: " in line)
        print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

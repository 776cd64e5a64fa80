"""One timed run of a recipe for benchmarks/autotune.py, in a fresh interpreter that imports
nothing of dlprof unless the run is autotuned (then at the top, as a script imports it):

    python benchmarks/fresh_run.py recipes/x.py '{"epochs": 0, "tune": false}' SECONDS

prints the run's JSON on its last line.
"""
from __future__ import annotations

import json
import os
import runpy
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def count(batch) -> int:
    """The samples in a batch: the length of its first tensor (nested lists, tuples and dicts)."""
    while isinstance(batch, (list, tuple, dict)):
        batch = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return len(batch) if hasattr(batch, "__len__") else 1


def timed_run(spec: str, plan: dict, seconds: float) -> dict:
    """``plan["epochs"]`` epochs (0: until ``seconds`` pass) of the recipe's loop, through
    dlprof.autotune when ``plan["tune"]``; the wall time, worker start-ups included."""
    import torch  # noqa: F401  (a training script's first import)

    if plan["tune"]:
        sys.path.insert(0, ROOT)  # this checkout's dlprof
        import dlprof  # at the script's top, before its model and data
    recipe = runpy.run_path(spec)  # __name__ is not "__main__": the recipe's own run is skipped
    written, step = recipe["loader"], recipe.get("train_step")
    # the clock starts before dlprof.autotune(): its set-up (the system sampler's start) is the job's too
    start = last = time.perf_counter()
    loader = dlprof.autotune(written) if plan["tune"] else written
    epochs = samples = 0
    epoch_s, decided_in = [], None  # each epoch's wall time (the first's with the set-up); the decision's
    source = loader  # --plain-after: the user's loader itself once the tuner decided
    while (epochs < plan["epochs"]) if plan["epochs"] else (time.perf_counter() - start < seconds):
        for batch in source:
            if step is not None:
                step(batch)
            samples += count(batch)
        epochs += 1
        now = time.perf_counter()
        epoch_s.append(now - last)
        last = now
        if decided_in is None and plan["tune"] and loader.tuner.tuning.settled is not None:
            decided_in = epochs
            if plan.get("plain_after"):
                source = written
    wall = time.perf_counter() - start
    out = {"epochs": epochs, "wall_s": wall, "samples": samples, "epoch_s": epoch_s, "decided_in": decided_in}
    if plan["tune"]:
        t = loader.tuner.tuning
        loader.close()
        # still exploring when the run ended: the configuration it was in
        first = t.windows[0].start_ns if t.windows else 0
        decided_s = (t.windows[-1].end_ns - first) / 1e9 if t.settled is not None and t.windows else None
        out.update(settled=vars(t.settled or loader.current), decided=t.settled is not None, decided_s=decided_s,
                   reason=t.reason or "still exploring at the end", windows=len(t.windows),
                   speedup=list(t.speedup) if t.speedup else None)
    return out


if __name__ == "__main__":
    print(json.dumps(timed_run(sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]))))

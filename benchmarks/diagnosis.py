"""Random planted pipelines, scanned: is the diagnosis right, and does it hold on a second and third
scan? (`make bench-diagnosis`)

    python benchmarks/diagnosis.py [--seed S] [--per-class 10] [--repeat-per-class 2] [--out reports/diagnosis]

Five classes, ten pipelines each by default, each with one dominant cost at least 8x every other:
  fetch-cpu   __getitem__ computes (a pure-Python loop), 8-40 ms a batch; num_workers 0-2
  fetch-io    __getitem__ sleeps (storage, network), 8-40 ms a batch; num_workers 0-2
  collate     collate_fn computes, 8-40 ms a batch; num_workers 0-2
  step        train_step 15-60 ms a batch (half compute, half sleep: an accelerator's kernels),
              fetch at most 1/8 of it; num_workers=0
  startup     each worker opens an index on first use (1-2 s of compute), non-persistent workers
              (1-2), epochs of about 1.5 s of fetching
The costs are drawn from the seed (default: the clock, printed: nothing here is tuned to one
draw). CPU work is a fixed number of loop iterations, calibrated once per run to the
milliseconds drawn, so a busy machine makes it slower, as it would real work.

Each pipeline is scanned once (`dlprof scan --quick --budget 15 --no-hotspots`: the verdict is the
baseline's, which a quick scan measures in full whatever its budget; the budget only cuts the
search, which benchmarks/recommend.py measures); the first `--repeat-per-class`
of each class are scanned twice more, and their three verdicts and stages compared. Writes
OUT/README.md (the table) and OUT/results.json (each pipeline's parameters and findings).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CLASSES = ("fetch-cpu", "fetch-io", "collate", "step", "startup")
EXPECTED = {"fetch-cpu": ("fetch", "cpu"), "fetch-io": ("fetch", "io"), "collate": ("collate", None),
            "step": ("step", None), "startup": ("startup", None)}
DOMINANCE = 8  # the dominant cost is at least this many times every other one (the planted set)

TEMPLATE = '''"""Planted pipeline {name}: {params}"""
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import default_collate

ITERS_PER_MS = {iters_per_ms}


def spin(ms):  # a fixed amount of pure-Python work: slower on a busy machine, as real work is
    x = 0
    for i in range(int(ms * ITERS_PER_MS)):
        x += i
    return x


class Planted(Dataset):
    def __init__(self):
        self.index = None

    def __len__(self):
        return {length}

    def __getitem__(self, i):
        if self.index is None and {index_ms} > 0:  # opened on first use, in each worker
            spin({index_ms})
            self.index = True
        if {fetch_sleep}:
            time.sleep({fetch_ms_sample} / 1000)
        else:
            spin({fetch_ms_sample})
        return torch.full((16,), float(i))


def collate(samples):
    spin({collate_ms})
    return default_collate(samples)


loader = DataLoader(Planted(), batch_size={batch_size}, num_workers={workers}, collate_fn=collate,
                    persistent_workers={persistent})


def train_step(batch):
    if {step_sleep}:
        time.sleep({step_ms} / 1000)
    else:
        spin({step_ms})
'''


def calibrate() -> float:
    """Loop iterations a millisecond on this machine (the fastest of five tries)."""
    n, best = 200_000, float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        x = 0
        for i in range(n):
            x += i
        best = min(best, time.perf_counter() - t0)
    return n / (best * 1000)


def draw(rng: random.Random, cls: str) -> dict:
    """The planted costs of one pipeline, in ms a batch (fetch also a sample)."""
    p = {"batch_size": rng.choice([8, 16, 32, 64]), "workers": rng.choice([0, 1, 2]), "persistent": False,
         "fetch_sleep": False, "step_sleep": rng.random() < 0.5, "index_ms": 0}
    dominant = rng.uniform(8, 40)
    minor = lambda d: rng.uniform(0, d / DOMINANCE)  # noqa: E731
    if cls in ("fetch-cpu", "fetch-io"):
        p.update(fetch_ms=dominant, collate_ms=minor(dominant), step_ms=minor(dominant),
                 fetch_sleep=cls == "fetch-io")
    elif cls == "collate":
        p.update(collate_ms=dominant, fetch_ms=minor(dominant), step_ms=minor(dominant))
    elif cls == "step":
        step = rng.uniform(15, 60)
        p.update(step_ms=step, fetch_ms=minor(step), collate_ms=0.0, workers=0)
    else:  # startup: 1-2 s to open the index in every worker of every epoch
        p.update(index_ms=rng.uniform(1000, 2000), fetch_ms=dominant, collate_ms=minor(dominant),
                 step_ms=minor(dominant), workers=rng.choice([1, 2]))
    # epochs: about 1.5 s of fetching for start-up pipelines; 100-400 batches otherwise
    batches = max(4, round(1500 / p["fetch_ms"])) if cls == "startup" else rng.randint(100, 400)
    p["length"] = batches * p["batch_size"]
    if p["workers"] == 0:
        p["persistent"] = False
    return p


def source(name: str, p: dict, iters_per_ms: float) -> str:
    params = ", ".join(f"{k}={round(v, 2) if isinstance(v, float) else v}" for k, v in p.items())
    return TEMPLATE.format(name=name, params=params, iters_per_ms=round(iters_per_ms, 1), length=p["length"],
                           index_ms=round(p["index_ms"], 1), fetch_sleep=p["fetch_sleep"],
                           fetch_ms_sample=round(p["fetch_ms"] / p["batch_size"], 4),
                           collate_ms=round(p["collate_ms"], 3), batch_size=p["batch_size"], workers=p["workers"],
                           persistent=p["persistent"], step_sleep=p["step_sleep"], step_ms=round(p["step_ms"], 3))


def scan(path: str, out: str, scan_args: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dlprof", "scan", path, "--out", out, *scan_args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    try:
        with open(os.path.join(out, "results.json"), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], "seconds": seconds}
    b = data.get("bottleneck") or {}
    memory = [w for w in data.get("warnings", []) if w.startswith("worker memory grows")]
    ref = data.get("baseline") or {}
    base = data["trials"][ref["trial"]] if set(ref) == {"trial"} else ref  # a reference (schema 4) or a copy
    return {"verdict": b.get("verdict"), "stage": b.get("stage"), "kind": b.get("kind"),
            "wait_pct": base.get("wait_pct"), "wait_ci_pct": base.get("wait_ci_pct"),
            "memory_warning": bool(memory), "seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="default: the clock (printed)")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--repeat-per-class", type=int, default=2)
    parser.add_argument("--scan-args", default="--quick --budget 15 --no-hotspots")
    parser.add_argument("--out", default=os.path.join(REPO, "reports", "diagnosis"))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    iters = calibrate()
    print(f"seed {seed}; {iters:,.0f} loop iterations a ms", flush=True)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for cls in CLASSES:
            for k in range(args.per_class):
                name = f"{cls.replace('-', '_')}_{k:02d}"
                p = draw(rng, cls)
                path = os.path.join(tmp, f"{name}.py")
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(source(name, p, iters))
                runs = [scan(path, os.path.join(tmp, f"{name}-{r}"), args.scan_args.split())
                        for r in range(3 if k < args.repeat_per_class else 1)]
                stage, kind = EXPECTED[cls]
                first = runs[0]
                right = first.get("stage") == stage and (kind is None or first.get("kind") == kind)
                same = len({(r.get("verdict"), r.get("stage")) for r in runs}) == 1
                records.append({"name": name, "class": cls, "params": p, "runs": runs, "right_stage": right,
                                "repeats_agree": same if len(runs) > 1 else None})
                print(f"{name}: {'right' if right else 'WRONG'} "
                      + "; ".join(f"{r.get('verdict')}, {r.get('stage')} ({r.get('kind')}) wait {r.get('wait_pct') or 0:.1f}%"
                                  + (" MEMORY WARNING" if r.get("memory_warning") else "") + (f" {r['error']}" if "error" in r else "")
                                  for r in runs), flush=True)
    write(args, seed, iters, records)
    return 0


def write(args, seed: int, iters: float, records: list[dict]) -> None:
    right = sum(r["right_stage"] for r in records)
    repeated = [r for r in records if r["repeats_agree"] is not None]
    agree = sum(r["repeats_agree"] for r in repeated)
    false_memory = sum(any(run.get("memory_warning") for run in r["runs"]) for r in records)
    lines = ["# Diagnosis of random planted pipelines", "",
             f"Command: `python benchmarks/diagnosis.py --seed {seed} --per-class {args.per_class} "
             f"--repeat-per-class {args.repeat_per_class} --scan-args='{args.scan_args}'` "
             f"(the seed was drawn from the clock, not chosen); machine: {platform.platform()}, "
             f"{os.cpu_count()} cpus; {iters:,.0f} loop iterations a ms.", "",
             f"- right stage (and kind, for fetch): **{right} of {len(records)}**",
             f"- the same verdict and stage in 3 scans: **{agree} of {len(repeated)}** pipelines scanned 3 times",
             f"- memory warnings (none of these pipelines grows its workers' memory): **{false_memory}**", "",
             "| pipeline | planted (ms a batch) | workers | expected stage | found (scan 1; repeats) | wait share |",
             "|---|---|---|---|---|---|"]
    for r in records:
        p, (stage, kind) = r["params"], EXPECTED[r["class"]]
        planted = (f"fetch {p['fetch_ms']:.1f}{' sleep' if p['fetch_sleep'] else ''}, collate {p['collate_ms']:.1f}, "
                   f"step {p['step_ms']:.1f}{' sleep' if p['step_sleep'] else ''}"
                   + (f", index {p['index_ms'] / 1000:.1f} s" if p["index_ms"] else ""))
        found = "; ".join(f"{run.get('verdict')}, {run.get('stage')}" + (f" ({run['kind']})" if run.get("kind") else "")
                          for run in r["runs"])
        waits = ", ".join(f"{run.get('wait_pct') or 0:.1f}%" for run in r["runs"])
        mark = "" if r["right_stage"] else " **wrong**"
        lines.append(f"| {r['name']} | {planted} | {p['workers']} | {stage}{f' ({kind})' if kind else ''} | "
                     f"{found}{mark} | {waits} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump({"seed": seed, "iters_per_ms": iters, "scan_args": args.scan_args, "pipelines": records}, fh, indent=1)
    print(f"right stage {right} of {len(records)}; repeats agree {agree} of {len(repeated)}; "
          f"memory warnings {false_memory}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

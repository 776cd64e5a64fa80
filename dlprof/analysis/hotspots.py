"""Which functions the time of each stage goes to, from py-spy's raw stacks. Pure, no torch.

Each sampled stack is given to a stage by the frames dlprof and the DataLoader put on it: under
dlprof's collate proxy it is ``collate``; under the DataLoader fetcher (in a worker, or in the
main process with num_workers=0) ``fetch``; in the pin-memory thread ``pin``; elsewhere in the
training loop's ``next()`` it is ``wait`` (the main process's own share: unpickling batches);
any other stack of the main process is ``step``, but for ``import`` (a program run by ``dlprof
run`` is sampled from its start). Stacks of dlprof's sampler process and of loading the target
are left out.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import pandas as pd

# frames that are on every stack of a stage: plumbing, never the answer to "what is slow"
_PLUMBING = ("torch/utils/data/", "multiprocessing/", "dlprof/", "threading.py", "<frozen ", "runpy.py",
             "selectors.py", "queue.py", "concurrent/")
TOP = 5


# a process frame: its command line is quoted, unescaped, and may hold ';' (sh -c "a; b"): it ends
# at the quote before the next process frame, the first Python frame ('func (file:line)') or the end
_PROCESS = re.compile(r'process (\d+):".*?"(?=;process \d+:"|;[^;"]* \(|$)')


def _split_line(line: str) -> tuple[list[str], list[str], int] | None:
    """(process frames, Python frames root first, count) of one line of py-spy's raw format."""
    head, _, count = line.rpartition(" ")
    if not head or not count.isdigit():
        return None
    procs, pos = [], 0
    while head.startswith("process ", pos):
        match = _PROCESS.match(head, pos)
        if match is None:
            break
        procs.append(match.group(0))
        pos = match.end() + 1
    return procs, (head[pos:].split(";") if pos < len(head) else []), int(count)


def parse_raw(text: str) -> list[tuple[list[str], list[str], int]]:
    """(process frames, Python frames root first, count) per line of py-spy's raw format."""
    return [x for x in map(_split_line, text.splitlines()) if x is not None]


def process_stacks(text: str, pid: int) -> str:
    """The stacks of process ``pid`` and its descendants (its DataLoader workers), in py-spy's
    raw format with the process frames above ``pid`` dropped: a job sampled from its launcher
    (``dlprof run --stacks``: torchrun, its ranks, their workers) read as one profiled process."""
    out = []
    for procs, frames, count in parse_raw(text):
        for i, frame in enumerate(procs):
            if int(_PROCESS.match(frame).group(1)) == pid:
                out.append(";".join(procs[i:] + frames) + f" {count}")
                break
    return "\n".join(out) + ("\n" if out else "")


def stage_of(procs: list[str], frames: list[str]) -> str | None:
    joined = ";".join(frames)
    if "dlprof/probe/system.py" in joined or "load_target" in joined or "preload_torch" in joined:
        return None
    if "CollateProxy.__call__ (dlprof/probe/hooks.py" in joined:
        return "collate"
    if "_pin_memory_loop" in joined:
        return "pin"
    if "fetch (torch/utils/data/_utils/fetch.py" in joined:
        return "fetch"
    if len(procs) >= 2:
        return "worker other"  # a worker outside fetch and collate: receiving indices, sending batches
    if "_EpochIterator.__next__" in joined:
        return "wait"
    if "importlib._bootstrap" in joined:
        return "import"  # a program's imports (dlprof run samples it from its start): not its step
    return "step"


# the frame a stage's own work starts below; frames above it are the loop that got there
_ENTRY = {"fetch": "fetch (torch/utils/data/_utils/fetch.py", "collate": "CollateProxy.__call__ (dlprof/probe/hooks.py",
          "wait": "_EpochIterator.__next__ (dlprof/", "pin": "_pin_memory_loop ("}


def _own_frames(stage: str, frames: list[str], loop_trunk: set[str]) -> list[str]:
    """The frames of a stack that belong to its stage's own work."""
    marker = _ENTRY.get(stage)
    if marker is not None:
        for i in range(len(frames) - 1, -1, -1):
            if marker in frames[i]:
                return frames[i + 1:] or frames[i:]
        return frames
    # step (or a worker's other work): drop the training loop's trunk, the frames above next()
    return [f for f in frames if f not in loop_trunk] or frames[-1:]


def _loop_trunk(stacks) -> set[str]:
    trunk: set[str] = set()
    for procs, frames, _ in stacks:
        for i, frame in enumerate(frames):
            if _ENTRY["wait"] in frame:
                trunk.update(frames[:i])
                break
    return trunk


def _split(frame: str) -> tuple[str, str]:
    """'func (file:line)' -> ('func', 'file:line')."""
    name, _, rest = frame.partition(" (")
    return name, rest[:-1] if rest.endswith(")") else rest


def _plumbing(frame: str) -> bool:
    name, where = _split(frame)
    return name == "<module>" or any(where.startswith(p) or f"/{p}" in where for p in _PLUMBING)


def hotspots(text: str, top: int = TOP) -> pd.DataFrame:
    """Top functions per stage, by self time and by total time, in % of the stage's samples.

    Columns: ``stage``, ``stage_samples``, ``rank_by`` ("self" or "total"), ``function``,
    ``location`` (file:line), ``pct``.
    """
    per_stage: dict[str, int] = Counter()
    self_counts: dict[str, Counter] = defaultdict(Counter)
    total_counts: dict[str, Counter] = defaultdict(Counter)
    stacks = parse_raw(text)
    trunk = _loop_trunk(stacks)
    for procs, frames, count in stacks:
        stage = stage_of(procs, frames)
        if stage is None or not frames:
            continue
        per_stage[stage] += count
        self_counts[stage][frames[-1]] += count
        # the first own frame (the dataset's __getitem__, the collate_fn, train_step) holds the
        # whole stage by definition: "total" ranks what runs inside it
        own = [f for f in _own_frames(stage, frames, trunk) if not _plumbing(f)]
        for frame in set(own[1:]):
            total_counts[stage][frame] += count
    rows = []
    for stage, samples in sorted(per_stage.items(), key=lambda kv: -kv[1]):
        for rank_by, counts in (("self", self_counts[stage]), ("total", total_counts[stage])):
            for frame, n in counts.most_common(top):
                name, where = _split(frame)
                rows.append({"stage": stage, "stage_samples": samples, "rank_by": rank_by, "function": name,
                             "location": where, "pct": 100.0 * n / samples})
    return pd.DataFrame(rows, columns=["stage", "stage_samples", "rank_by", "function", "location", "pct"])


def busiest_stages(rows: list[dict], n: int) -> list[str]:
    """The ``n`` stages of ``hotspots`` rows with the most sampled stacks, most first."""
    ranked = sorted({(h["stage_samples"], h["stage"]) for h in rows}, reverse=True)
    return [stage for _, stage in ranked[:n]]


def stage_tree(text: str, stage: str) -> dict:
    """The call tree of one stage for a flame graph: {"name", "value", "children": [...]}, from
    the frame where the stage's own work starts."""
    root: dict = {"name": stage, "value": 0, "children": {}}
    stacks = parse_raw(text)
    trunk = _loop_trunk(stacks)
    for procs, frames, count in stacks:
        if stage_of(procs, frames) != stage:
            continue
        node = root
        node["value"] += count
        for frame in [f for f in _own_frames(stage, frames, trunk) if not _plumbing(f)] or frames[-1:]:
            node = node["children"].setdefault(frame, {"name": frame, "value": 0, "children": {}})
            node["value"] += count

    def freeze(node: dict) -> dict:
        kids = sorted(node["children"].values(), key=lambda n: -n["value"])
        return {"name": node["name"], "value": node["value"], "children": [freeze(k) for k in kids]}

    return freeze(root)

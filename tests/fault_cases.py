"""Faults planted in scan targets, shared by the fault tests (tests/test_faults*.py) and benchmarks/reliability.py.

Each case is a target source, the scan's extra arguments and what must happen: the exit code and
a piece of the one-line message. The faults are real: real worker processes that raise, die of a
signal, hang, or run out of shared memory; nothing in dlprof is patched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_HEAD = """
import os, time
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
"""


@dataclass
class Case:
    name: str
    fault: str  # what is planted, in words
    source: str | None  # target file body; None: the target path is given in args
    args: list[str] = field(default_factory=list)
    exit_code: int = 0
    message: str = ""  # must appear in the scan's output (stderr or stdout)
    trial_error: str = ""  # must appear in a failed trial's error in results.json
    wrap: list[str] = field(default_factory=list)  # command prefix (a mount namespace...)


BAD_TARGETS = [
    Case("missing-file", "the target file does not exist", None, ["no_such_file.py"], 2, "target file not found"),
    Case("missing-module", "the module does not exist", None, ["no_such_module_xyz"], 2, "no module named 'no_such_module_xyz'"),
    Case("syntax-error", "a syntax error on line 3", "x = 1\n\ndef broken(:\n", [], 2, "syntax error in"),
    Case("import-raises", "importing the target raises", "raise RuntimeError('database unreachable')\n", [], 2,
         "importing", ),
    Case("no-candidate", "neither loader nor dataset", "x = 1\n", [], 2, "defines neither 'loader'"),
    Case("several-loaders", "two DataLoaders under other names", _HEAD + textwrap.dedent("""
        data = torch.utils.data.TensorDataset(torch.zeros(64, 2))
        train_loader = DataLoader(data, batch_size=8)
        val_loader = DataLoader(data, batch_size=8)
        """), [], 2, "has DataLoaders train_loader, val_loader: add `loader = train_loader`"),
    Case("loader-not-dataloader", "loader is a number", "loader = 5\n", [], 2,
         "'loader' must be a torch.utils.data.DataLoader"),
    Case("dataset-not-dataset", "dataset is a list", "dataset = [1, 2, 3]\n", [], 2, "'dataset' must be a torch Dataset"),
    Case("dataset-factory-raises", "dataset() raises", "def dataset():\n    raise OSError('no such bucket')\n",
         [], 2, "dataset() raised OSError: no such bucket"),
    Case("train-step-not-callable", "train_step is a number", _HEAD + textwrap.dedent("""
        loader = DataLoader(torch.utils.data.TensorDataset(torch.zeros(64, 2)), batch_size=8)
        train_step = 3
        """), [], 2, "train_step must be a function"),
    Case("unknown-option", "an unknown option", None, ["recipes/linear_regression.py", "--fast"], 2,
         "unrecognized arguments: --fast"),
    Case("negative-workers", "--max-workers -1", None, ["recipes/linear_regression.py", "--max-workers", "-1"], 2,
         "expected a positive integer"),
    Case("zero-batch-size", "--batch-sizes 0", None, ["recipes/linear_regression.py", "--batch-sizes", "0"], 2,
         "batch sizes must be positive"),
    Case("budget-not-a-number", "--budget soon", None, ["recipes/linear_regression.py", "--budget", "soon"], 2,
         "expected a number of seconds"),
]

_MAP = _HEAD + """
class Records(Dataset):
    def __len__(self):
        return 512
    def __getitem__(self, i):
        {body}
        return torch.full((4,), float(i))
"""


def _map(body: str, loader: str = "DataLoader(Records(), batch_size=16)", extra: str = "") -> str:
    return _MAP.replace("{body}", body) + f"\nloader = {loader}\n" + textwrap.dedent(extra)


# a quick scan with room for its worker trials on a machine twice as slow: a quick scan's 30 s
# count from the process's start, and a slow start (importing torch) left no worker trial to fault.
# No stacks sampled after the check: two more trials each, of nothing the faults concern
_QUICK = ["--quick", "--budget", "60", "--no-hotspots"]

TRIAL_FAULTS = [
    Case("index-fails-everywhere", "__getitem__ raises on index 37 in every configuration (baseline with 2 workers)",
         _map("if i == 37:\n            raise ValueError(f'corrupt record {i}')",
              "DataLoader(Records(), batch_size=16, num_workers=2)"),
         [*_QUICK], 1, "every configuration failed: dataset[37] raised ValueError: corrupt record 37",
         "dataset[37] raised ValueError: corrupt record 37 (in DataLoader worker"),
    Case("index-fails-in-workers", "__getitem__ raises on index 37 only inside worker processes",
         _map("if i == 37 and get_worker_info() is not None:\n            raise ValueError('no handle in this process')"),
         [*_QUICK, "--max-workers", "2"], 0, "",
         "on the batch of indices [32, 33, 34, 35, 36, 37, 38, 39, ... (16 in all)]"),
    Case("worker-segfault", "a worker dies of a segmentation fault (ctypes reads address 0)",
         _map("if get_worker_info() is not None:\n            import ctypes; ctypes.string_at(0)"),
         [*_QUICK, "--max-workers", "2"], 0, "", "was killed by SIGSEGV (Segmentation fault)"),
    Case("worker-killed-in-step", "a worker is killed while the main process runs train_step",
         _map("if i == 100 and get_worker_info() is not None:\n            os.kill(os.getpid(), 9)",
              extra="""
            def train_step(batch):
                time.sleep(0.05)  # torch reports the death here, in the step's code
                return float(batch.sum())
            """),
         [*_QUICK, "--max-workers", "2"], 0, "", "was killed by SIGKILL"),
    Case("worker-hangs", "a worker hangs forever on its first sample (--trial-timeout 6)",
         _map("if get_worker_info() is not None:\n            time.sleep(3600)"),
         [*_QUICK, "--max-workers", "1", "--trial-timeout", "6"], 0, "", "no result within 6 s"),
    Case("step-out-of-memory", "train_step raises CUDA out-of-memory above batch size 16",
         _map("pass", extra="""
            def train_step(batch):
                if len(batch) > 16:
                    raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')
                return float(batch.sum())
            """),
         [*_QUICK, "--batch-sizes", "16,64", "--max-workers", "1"], 0, "",
         "out of memory in train_step at batch_size=64"),
    Case("shm-bus-error", "batches larger than a 4 MiB /dev/shm (a private tmpfs mount)",
         _HEAD + textwrap.dedent("""
            class Big(Dataset):
                def __len__(self):
                    return 256
                def __getitem__(self, i):
                    return torch.ones(256, 1024)  # 1 MiB a sample: 16 MiB a batch
            loader = DataLoader(Big(), batch_size=16)
            """),
         [*_QUICK, "--max-workers", "2"], 0, "", "shared memory (/dev/shm) ran out",
         wrap=["unshare", "--mount", "sh", "-c", 'mount -t tmpfs -o size=4m tmpfs /dev/shm && exec "$@"', "sh"]),
]


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    results: dict | None
    seconds: float
    left_processes: list[str]
    left_shm: list[str]
    left_tmp: list[str]
    out: str = ""  # the scan's --out folder


def run_scan(case: Case, workdir: str, timeout: float = 240) -> Outcome:
    """Write the case's target into ``workdir``, scan it with a private TMPDIR, and report what
    the scan left behind: processes, /dev/shm files, temporary files."""
    import psutil

    args = list(case.args)
    if case.source is not None:
        target = os.path.join(workdir, f"{case.name.replace('-', '_')}.py")
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(case.source)
        args = [target, *args]
    out = os.path.join(workdir, "out")
    # short: multiprocessing puts sockets in the temp folder (paths of at most 108 bytes)
    import tempfile

    tmp = tempfile.mkdtemp(prefix="t", dir="/tmp")
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    started = time.monotonic()
    proc = subprocess.run([*case.wrap, sys.executable, "-m", "dlprof", "scan", *args, "--out", out],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TMPDIR": tmp})
    seconds = time.monotonic() - started
    time.sleep(0.5)
    left = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
            if workdir in " ".join(p.info["cmdline"] or [])]
    shm_after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    results_path = os.path.join(out, "results.json")
    results = json.load(open(results_path, encoding="utf-8")) if os.path.exists(results_path) else None
    # torch's compile cache (torchinductor_<user>) is made by any script that creates an
    # optimizer, with or without dlprof, and is meant to outlive it: not a leftover of ours
    left_tmp = [n for n in os.listdir(tmp) if not n.startswith("torchinductor_")]
    shutil.rmtree(tmp, ignore_errors=True)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, results, seconds, left,
                   _orphaned_shm(shm_after - shm_before), left_tmp, out)


def _orphaned_shm(names: set[str]) -> list[str]:
    """New torch_<pid>_... shared-memory files whose creating process is gone: left behind. A
    file of a live process belongs to another test running beside this one (its workers are
    between creating a segment and unlinking it), not to the finished scan."""
    import psutil

    left = []
    for name in sorted(names):
        parts = name.split("_")
        if name.startswith("torch_") and len(parts) > 1 and parts[1].isdigit() and psutil.pid_exists(int(parts[1])):
            continue
        if name.startswith("torch_") and os.path.exists(os.path.join("/dev/shm", name)):
            left.append(name)
    return left


def failed_errors(outcome: Outcome) -> list[str]:
    return [t["error"] for t in (outcome.results or {}).get("trials", []) if t["status"] != "ok"]


def can_mount_private_shm() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def assert_nothing_left(outcome: "Outcome") -> None:
    """The scan left no process, /dev/shm file or temporary file behind."""
    assert not outcome.left_processes, outcome.left_processes
    assert not outcome.left_shm, outcome.left_shm
    assert not outcome.left_tmp, outcome.left_tmp

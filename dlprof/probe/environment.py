"""What machine and software a run was measured on (recorded with every results file)."""
from __future__ import annotations

import math
import os
import platform
import sys
import time


def available_cores() -> int:
    """Cores this process may use: its CPU affinity (cpuset), capped by a cgroup CPU quota
    (containers often get a quota on a big machine), not just the machine's count."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """CPUs allowed by a cgroup v2 quota ("max 100000" means none)."""
    try:
        with open(path, encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _steal_s() -> float:
    """CPU seconds the hypervisor took from the cores this process may run on (steal)."""
    import psutil

    per_cpu = psutil.cpu_times(percpu=True)
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        mine = range(len(per_cpu))
    return sum(getattr(per_cpu[i], "steal", 0.0) for i in mine if i < len(per_cpu))


def _others() -> dict[tuple[int, float], float]:
    """CPU seconds so far of every process outside this one and its descendants, by (pid,
    start time). Counted by process, not as the cores' busy time less our own: trials end with
    os._exit, and the CPU of workers they leave to init would read as another process's."""
    import psutil

    me = psutil.Process()
    ours = {me.pid} | {p.pid for p in me.children(recursive=True)}
    out = {}
    for p in psutil.process_iter(["pid", "create_time", "cpu_times"]):
        info = p.info
        if info["pid"] in ours or info["cpu_times"] is None or info["create_time"] is None:
            continue
        out[(info["pid"], info["create_time"])] = info["cpu_times"].user + info["cpu_times"].system
    return out


class OthersOnTheCores:
    """What other processes and other virtual machines (steal) took from the CPU between this
    object's making and ``stop()``: cores on average. A process that ended in between is missed
    (it errs towards no warning); one started in between counts whole."""

    def __init__(self) -> None:
        self._began = time.monotonic()
        self._steal = _steal_s()
        self._before = _others()

    def stop(self) -> tuple[float, float]:
        """(other processes' cores, stolen cores) on average since the start."""
        seconds = max(time.monotonic() - self._began, 1e-9)
        after = _others()
        others = sum(cpu - self._before.get(key, 0.0) for key, cpu in after.items())
        return max(0.0, others) / seconds, max(0.0, _steal_s() - self._steal) / seconds


def shm_free_bytes(path: str = "/dev/shm") -> int | None:
    """Free bytes in the shared-memory mount that batches travel through from workers (None
    where there is none: not Linux)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def collect_environment(device: str | None = None) -> dict:
    """Called in the process that runs the loader (torch is imported there already); the module
    itself imports no torch, so that a scan's parent process, which only reads the cores and
    /dev/shm here, does not pay torch's import (seconds on a small machine)."""
    import torch

    from dlprof import __version__

    env = {
        "dlprof": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "start_method": _start_method(),
        "device": device,
        "cuda_available": torch.cuda.is_available(),
        "argv": list(sys.argv),
    }
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _start_method() -> str | None:
    import multiprocessing

    # get_context() would fix the default as the process's start method (a later
    # set_start_method() then raises "context has already been set"): read it without setting it;
    # the first of get_all_start_methods() is the default, as documented
    return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]


def job_facts(rank: int, world_size: int, backend: str, sampler: str | None) -> dict:
    """What the ranks' report needs to know of one rank beyond its records (the local rank and
    how many share its host from torchrun's environment)."""
    import socket

    return {"rank": rank, "world_size": world_size,
            "local_rank": int(os.environ.get("LOCAL_RANK", "0") or 0),
            "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1),
            "host": socket.gethostname(), "cores": available_cores(), "backend": backend, "sampler": sampler}

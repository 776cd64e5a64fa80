"""Background sampler of CPU, memory and GPU use while a DataLoader is profiled.

Why: timings say *that* the loader is slow, not *which resource* is short. Sampling the main
process, every DataLoader worker (any descendant process) and the GPUs about ten times a second
shows whether workers are CPU-bound, the main process is starved, memory grows (copy-on-write of
a Python-object dataset shows in USS) or the GPU sits idle.

Why a separate process and not a thread: reading /proc releases and re-takes the GIL at every
file read, and each hand-over stalls a training loop that runs Python code; measured, a 10 Hz
sampler thread cost 2% of a pure-Python loader's throughput (benchmarks/overhead.py). The
sampler process shares no GIL. It appends one JSON line per tick to an unnamed temporary file
that the profiled process reads when it wants the samples; it stops on SIGTERM, or by itself
when the profiled process is gone.
"""
from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from dlprof.records import GpuSample, ProcessSample

# A process that exits or turns unreadable between listing and reading is skipped.
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)
# Unique memory (USS) is read from /proc/PID/smaps, about 1 ms of CPU a process: with 16 workers
# read at every tick, the sampler would take a tenth of a core from the pipeline it measures, and
# more from configurations with more workers. Past this many a tick, processes take turns.
MAX_USS_PER_TICK = 2
# A tick reads a few /proc files of every process; with 16 workers on 2 cores, ticks at 10 Hz
# cost the pipeline measured about 5% of its throughput (recipes/mnist_mlp.py, profiled against
# plain). Up to this many processes the interval holds; beyond, it grows with their number.
FULL_RATE_PROCESSES = 4


def _descendant_pids(pid: int) -> list[int]:
    """Children, grandchildren... of ``pid``.

    Reads /proc/<pid>/task/<tid>/children, which costs a few file reads per process, where
    psutil's ``children(recursive=True)`` reads the stat file of every process on the machine.
    """
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (FileNotFoundError, ProcessLookupError):  # the thread or process just ended
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def _psutil_descendant_pids(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except _GONE:
        return []


class _Ticker:
    """One sampling tick of the target process tree and the GPUs (runs in the sampler process)."""

    def __init__(self, target_pid: int, uss_every: int, gpu: bool, out) -> None:
        self.root = psutil.Process(target_pid)
        self.uss_every = max(1, uss_every)
        self.uss_credit = float(MAX_USS_PER_TICK)  # the first tick reads some at once
        self.uss_last_pid = -1  # round robin: the next readings start after this pid
        self.out = out
        self.procs: dict[int, psutil.Process] = {}  # kept across ticks: cpu_percent needs them
        self.own_pid = os.getpid()
        has_children_file = os.path.exists(f"/proc/{self.own_pid}/task/{self.own_pid}/children")
        self.descendants = _descendant_pids if has_children_file else _psutil_descendant_pids
        self.nvml = None
        self.gpus: list[tuple[int, object]] = []
        if gpu:
            self._init_nvml()

    def _note(self, text: str) -> None:
        self.out.write(json.dumps({"note": text}) + "\n")

    def _init_nvml(self) -> None:
        try:
            import pynvml  # nvidia-ml-py; libnvidia-ml.so is missing on machines without a GPU
        except ImportError as exc:
            self._note(f"GPU metrics unavailable: pynvml not importable ({exc})")
            return
        try:
            pynvml.nvmlInit()
            self.nvml = pynvml
            self.gpus = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as exc:
            self._note(f"GPU metrics unavailable: {exc}")
            self.nvml = None

    def tick(self) -> int:
        """Samples every process of the tree once; returns how many were sampled."""
        t_ns = time.perf_counter_ns()  # one timestamp per tick: rows of a tick line up
        root_pid = self.root.pid
        rows, procs = [], {}
        pids = [pid for pid in [root_pid, *self.descendants(root_pid)] if pid != self.own_pid]
        uss_pids = self._uss_turn(pids)
        for pid in pids:
            take_uss = pid in uss_pids
            proc = self.procs.get(pid)
            try:
                if proc is None:
                    proc = self.root if pid == root_pid else psutil.Process(pid)
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:  # exited, unreaped: no memory left
                        continue
                    cpu = proc.cpu_percent(None)
                    if take_uss:
                        mem = proc.memory_full_info()
                        rss, uss, pss = mem.rss, mem.uss, getattr(mem, "pss", None)  # pss: Linux only
                    else:
                        rss, uss, pss = proc.memory_info().rss, None, None
            except _GONE:
                continue
            if rss == 0 or uss == 0:  # exiting: its memory is already released; not a worker any more
                continue
            procs[pid] = proc
            rows.append([pid, "main" if pid == root_pid else "worker", cpu, rss, uss, pss])
        self.procs = procs
        gpu_rows = []
        for index, handle in list(self.gpus):
            try:
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                mem = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except self.nvml.NVMLError as exc:  # e.g. not supported on a MIG slice: stop asking
                self.gpus.remove((index, handle))
                self._note(f"GPU {index} metrics unavailable: {exc}")
                continue
            gpu_rows.append([index, float(util), mem.used, mem.total])
        self.out.write(json.dumps({"t": t_ns, "p": rows, "g": gpu_rows}) + "\n")
        self.out.flush()
        return len(rows)

    def _uss_turn(self, pids: list[int]) -> set[int]:
        """The processes whose USS this tick reads: each one every ``uss_every`` ticks on
        average, in turn, and at most MAX_USS_PER_TICK a tick."""
        self.uss_credit = min(self.uss_credit + len(pids) / self.uss_every, float(MAX_USS_PER_TICK), len(pids))
        turn = int(self.uss_credit)
        if turn == 0:
            return set()
        self.uss_credit -= turn
        order = sorted(pids)
        first = bisect.bisect_right(order, self.uss_last_pid)
        chosen = [order[(first + i) % len(order)] for i in range(turn)]
        self.uss_last_pid = chosen[-1]
        return set(chosen)

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml.nvmlShutdown()


def _sampler_main(argv: list[str]) -> int:
    """Entry point of the sampler process: ``python -m dlprof.probe.system PID FD INTERVAL USS_EVERY GPU``."""
    target_pid, fd, interval, uss_every, gpu = int(argv[0]), int(argv[1]), float(argv[2]), int(argv[3]), argv[4] == "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the profiled program; it stops us
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # delivered through sigtimedwait
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        ticker = _Ticker(target_pid, uss_every, gpu, out)
        while True:
            sampled = ticker.tick()
            # past FULL_RATE_PROCESSES the ticks space out, so the sampler's reads of /proc stay
            # about the same work whatever the worker count
            wait = interval * max(1.0, sampled / FULL_RATE_PROCESSES)
            if signal.sigtimedwait({signal.SIGTERM}, wait) is not None:
                break  # asked to stop: the tick above is the last one
            if not psutil.pid_exists(target_pid) or os.getppid() != target_pid:
                break
        ticker.tick()
        ticker.close()
    return 0


class SystemSampler:
    """Start/stop a sampler process for this process tree; read its samples at any time."""

    def __init__(self, interval_s: float = 0.1, uss_every: int = 10, gpu: bool = True) -> None:
        self.interval_s = interval_s
        self.uss_every = max(1, int(uss_every))
        self._gpu = gpu
        self._file = tempfile.TemporaryFile()  # unnamed: nothing is left behind on any exit
        self._offset = 0  # bytes of the file already parsed
        self._child: subprocess.Popen | None = None
        self._process_samples: list[ProcessSample] = []
        self._gpu_samples: list[GpuSample] = []
        self._notes: list[str] = []

    @property
    def running(self) -> bool:
        return self._child is not None

    def start(self) -> None:
        if self._child is not None:
            return
        if not hasattr(signal, "sigtimedwait"):  # not Linux: no sampling rather than a broken one
            self._add_note("system sampling unavailable on this platform (needs Linux)")
            return
        fd = self._file.fileno()
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        self._child = subprocess.Popen(
            [sys.executable, "-m", "dlprof.probe.system", str(os.getpid()), str(fd), str(self.interval_s),
             str(self.uss_every), "1" if self._gpu else "0"],
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self._wait_first_tick()

    def _wait_first_tick(self, timeout_s: float = 5.0) -> None:
        # The sampler needs a Python start-up and psutil import (0.1-1 s on a busy machine). Without waiting,
        # a short loop's workers can start and exit before the first tick, and the run shows no worker at all.
        deadline = time.monotonic() + timeout_s
        while os.fstat(self._file.fileno()).st_size == 0 and self._child.poll() is None:
            if time.monotonic() > deadline:
                self._add_note(f"system sampler took over {timeout_s:g} s to start: the first samples are missing")
                return
            time.sleep(0.005)

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            _, err = child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
        # -SIGTERM: stopped before it had set itself up to catch the signal, which is fine
        if child.returncode not in (0, -signal.SIGTERM):
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {child.returncode}"]
            self._add_note(f"system sampler failed: {last[0]}")

    def _add_note(self, text: str) -> None:
        if text not in self._notes:
            self._notes.append(text)

    def _read_new(self) -> None:
        data = os.pread(self._file.fileno(), 1 << 30, self._offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self._offset += end
        for line in data[:end].splitlines():
            tick = json.loads(line)
            if "note" in tick:
                self._add_note(tick["note"])
                continue
            t_ns = tick["t"]
            self._process_samples.extend(ProcessSample(t_ns, *row) for row in tick["p"])
            self._gpu_samples.extend(GpuSample(t_ns, *row) for row in tick["g"])

    @property
    def process_samples(self) -> list[ProcessSample]:
        self._read_new()
        return list(self._process_samples)

    @property
    def gpu_samples(self) -> list[GpuSample]:
        self._read_new()
        return list(self._gpu_samples)

    @property
    def notes(self) -> list[str]:
        self._read_new()
        return list(self._notes)

    def __enter__(self) -> "SystemSampler":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(_sampler_main(sys.argv[1:]))

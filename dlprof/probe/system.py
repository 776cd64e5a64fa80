"""Background sampler of CPU, memory and GPU use while a DataLoader is profiled.

Why: timings say *that* the loader is slow, not *which resource* is short. Sampling the main
process, every DataLoader worker (any descendant process) and the GPUs about ten times a second
shows whether workers are CPU-bound, the main process is starved, memory grows (copy-on-write of
a Python-object dataset shows in USS) or the GPU sits idle. It runs inside the training process
and competes for the GIL, so a tick is cheap: psutil.Process objects are kept across ticks, each
is read inside ``oneshot()``, and USS (reads /proc/<pid>/smaps) only every ``uss_every`` ticks.
"""
from __future__ import annotations

import os
import threading
import time

import psutil

from dlprof.records import GpuSample, ProcessSample

# A process that exits or turns unreadable between listing and reading is skipped.
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


class SystemSampler:
    def __init__(self, interval_s: float = 0.1, uss_every: int = 10, gpu: bool = True):
        self.interval_s = interval_s
        self.uss_every = max(1, int(uss_every))
        self._gpu_wanted = gpu
        self._gpu_failed = False  # NVML init failed once: do not retry (the note is added once)
        self._nvml = None  # the pynvml module while NVML is initialised
        self._gpus: list[tuple[int, object]] = []  # (index, NVML handle)
        self._process_samples: list[ProcessSample] = []
        self._gpu_samples: list[GpuSample] = []
        self._notes: list[str] = []
        self._procs: dict[int, psutil.Process] = {}  # pid -> Process kept for cpu_percent
        self._root: psutil.Process | None = None
        self._tick = 0
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # serialises start()/stop()

    @property
    def process_samples(self) -> list[ProcessSample]:
        return list(self._process_samples)

    @property
    def gpu_samples(self) -> list[GpuSample]:
        return list(self._gpu_samples)

    @property
    def notes(self) -> list[str]:
        return list(self._notes)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._root = psutil.Process(os.getpid())
            self._procs = {}  # fresh baselines: the first sample of each pid after start is 0.0
            self._tick = 0
            if self._gpu_wanted:
                self._init_nvml()
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._run, name="dlprof-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            if self._thread is None:
                return
            self._stop_event.set()
            self._thread.join()
            self._thread = None
            self._sample()  # last sample, so the end of the run is covered
            self._shutdown_nvml()

    def __enter__(self) -> "SystemSampler":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _run(self) -> None:
        while True:  # Event.wait, not time.sleep, so stop() wakes the thread at once
            self._sample()
            if self._stop_event.wait(self.interval_s):
                return

    def _init_nvml(self) -> None:
        if self._nvml is not None or self._gpu_failed:
            return
        try:
            import pynvml  # lazily: nvidia-ml-py may be missing, libnvidia-ml.so usually is
        except ImportError as exc:
            self._gpu_unavailable(f"pynvml not importable ({exc})")
            return
        try:
            pynvml.nvmlInit()
            self._nvml = pynvml
            count = pynvml.nvmlDeviceGetCount()
            self._gpus = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        except pynvml.NVMLError as exc:
            self._gpu_unavailable(str(exc))
            self._shutdown_nvml()

    def _shutdown_nvml(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
        self._nvml, self._gpus = None, []

    def _gpu_unavailable(self, why: str) -> None:
        self._gpu_failed = True
        self._notes.append(f"GPU metrics unavailable: {why}")

    def _sample(self) -> None:
        t_ns = time.perf_counter_ns()  # one timestamp per tick: rows of a tick line up
        take_uss = self._tick % self.uss_every == 0
        self._tick += 1
        root = self._root
        try:
            found = [root, *root.children(recursive=True)]
        except _GONE:
            found = [root]
        procs: dict[int, psutil.Process] = {}
        for p in found:
            kept = self._procs.get(p.pid)
            proc = kept if kept is not None and kept == p else p  # == compares create time too
            try:
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:  # exited, unreaped: no memory left
                        continue
                    cpu = proc.cpu_percent(None)
                    if take_uss:
                        mem = proc.memory_full_info()
                        rss, uss = mem.rss, mem.uss
                    else:
                        rss, uss = proc.memory_info().rss, None
            except _GONE:
                continue
            procs[proc.pid] = proc
            role = "main" if proc.pid == root.pid else "worker"
            self._process_samples.append(ProcessSample(t_ns, proc.pid, role, cpu, rss, uss))
        self._procs = procs  # drop processes that are gone

        nvml = self._nvml
        for index, handle in list(self._gpus):
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            except nvml.NVMLError as exc:  # e.g. not supported on this device: stop asking it
                self._gpus.remove((index, handle))
                note = f"GPU {index} metrics unavailable: {exc}"
                if note not in self._notes:  # once, also across restarts
                    self._notes.append(note)
                continue
            self._gpu_samples.append(GpuSample(t_ns, index, float(util), mem.used, mem.total))

"""Every DataLoader a program iterates, profiled without a line of it changed (``dlprof run``).

``install()`` wraps ``DataLoader.__init__`` (to note where each loader was made) and
``DataLoader.__iter__`` (to hand out a profiled epoch). Each DataLoader object gets one probe,
across its epochs, hung on the object itself: the probe holds the loader weakly, so a loader the
program drops ends with its workers as a bare one does. What each probe records stays in this
module's registry (plain records, no torch object) and is written at exit, to
``$DLPROF_RUN_OUT/process-<pid>.json`` (no collective: under torchrun each rank writes its own).

Subclasses that override ``__iter__`` and call ``super().__iter__()`` (accelerate's
DataLoaderShard) are profiled at that call; the probe then starts its epochs with DataLoader's
own ``__iter__``, so the subclass's logic runs once, on the user's object.
"""
from __future__ import annotations

import atexit
import linecache
import os
import re
import signal
import sys
import threading

from torch.utils.data import DataLoader, RandomSampler

from dlprof.probe.device import sync_note, synchronize
from dlprof.probe.environment import collect_environment, job_facts
from dlprof.probe.loader import LoaderProbe, describe_loader
from dlprof.records import ProfileRun
from dlprof.run_records import AUTOTUNE_ENV, OUT_ENV, SYNC_ENV, RunLoader, RunResult
_ORIGINAL_INIT = DataLoader.__init__
_ORIGINAL_ITER = DataLoader.__iter__
_registry: list[RunLoader] = []
_tuned: list = []  # (RunLoader, dlprof.tuned.AutotunedLoader) of dlprof run --autotune
_lock = threading.Lock()
_SKIP = (os.sep + os.path.join("torch", "utils", "data") + os.sep, os.sep + "dlprof" + os.sep)
_ASSIGNED = re.compile(r"^\s*(?:self\.)?([A-Za-z_][\w.]*)\s*[:=][^=]")


def _library(path: str) -> bool:
    """An installed package's file or the standard library's: not the program's own code."""
    return ("site-packages" in path or "dist-packages" in path or path.startswith("<frozen")
            or any(path.startswith(os.path.join(p, "lib") + os.sep) for p in {sys.prefix, sys.base_prefix}))


def _site() -> tuple[str, str]:
    """(name, file:line) of the loader being made. The maker is the first frame outside torch's
    data package, dlprof and constructors (a subclass's ``__init__`` calling ``super().__init__``);
    the site is the first frame of the program's own code (not an installed library): the line
    that made it, or the line that led a framework to make it (``trainer.fit(...)``). The name is
    the variable that line assigns when the program made the loader itself, else the framework
    function that made it."""
    frame = sys._getframe(2)
    while frame is not None and (any(s in frame.f_code.co_filename for s in _SKIP)
                                 or frame.f_code.co_name == "__init__"):
        frame = frame.f_back
    if frame is None:
        return "DataLoader", "?"
    maker, user = frame, frame
    while user is not None and _library(user.f_code.co_filename):
        user = user.f_back
    user = user or maker
    path, line = user.f_code.co_filename, user.f_lineno
    rel = os.path.relpath(path)
    where = f"{path if rel.startswith('..') else rel}:{line}"
    if user is maker:
        match = _ASSIGNED.match(linecache.getline(path, line))
        return (match.group(1) if match else f"DataLoader in {maker.f_code.co_name}"), where
    return f"DataLoader of {getattr(maker.f_code, 'co_qualname', maker.f_code.co_name)}", where


def _init(self, *args, **kwargs):
    _ORIGINAL_INIT(self, *args, **kwargs)
    if "_dlprof_site" not in self.__dict__:
        self.__dict__["_dlprof_site"] = _site()


def _iter(self):
    d = self.__dict__
    if d.get("_dlprof_shadow"):  # a probe's own copy: a plain DataLoader
        return _ORIGINAL_ITER(self)
    probe = d.get("_dlprof_probe")
    if probe is None or d.get("_dlprof_owner") != id(self):  # first epoch, or a copy carrying another's
        probe = _new_tuned(self) if _tunes(self) else _new_probe(self)
        d["_dlprof_probe"] = probe
        d["_dlprof_owner"] = id(self)  # a copy of the loader carries its __dict__: not its probe
    return iter(probe)


def _tunes(loader: DataLoader) -> bool:
    """dlprof run --autotune tunes training loaders: a plain DataLoader over a map-style dataset
    that shuffles (training loaders shuffle, evaluation ones do not; Lightning warns otherwise).
    A subclass (accelerate's DataLoaderShard) has logic of its own in ``__iter__``: left alone."""
    if not os.environ.get(AUTOTUNE_ENV) or type(loader) is not DataLoader or loader._dataset_kind != 0:
        return False
    sampler = loader.batch_sampler.sampler if loader.batch_sampler is not None and hasattr(
        loader.batch_sampler, "sampler") else loader.sampler
    return isinstance(sampler, RandomSampler) or bool(getattr(sampler, "shuffle", False))


def _new_tuned(loader: DataLoader):
    from dlprof.tuned import AutotunedLoader

    budget = os.environ[AUTOTUNE_ENV]
    tuned = AutotunedLoader(loader, budget_s=None if budget == "default" else float(budget),
                            device_sync=_device_sync())
    name, site = loader.__dict__.get("_dlprof_site") or (f"DataLoader({type(loader.dataset).__name__})", "?")
    entry = RunLoader(name=name, site=site, pid=os.getpid(), rank=_rank(), run=tuned.run)
    with _lock:
        _registry.append(entry)
        _tuned.append((entry, tuned))
    return tuned


def _new_probe(loader: DataLoader) -> LoaderProbe:
    run = ProfileRun()
    probe = LoaderProbe(loader, None, lambda: None, run.batches, run.epochs, hold=False, start=_ORIGINAL_ITER,
                        sync=synchronize if _device_sync() else None)
    run.loader = describe_loader(loader, None)
    # a loader made before the patch (a callback installed at the start of training) has no site
    name, site = loader.__dict__.get("_dlprof_site") or (f"DataLoader({type(loader.dataset).__name__})", "?")
    with _lock:
        _registry.append(RunLoader(name=name, site=site, pid=os.getpid(), rank=_rank(), run=run))
    return probe


def _device_sync() -> bool:
    return os.environ.get(SYNC_ENV) == "1"


def _rank() -> int | None:
    rank = os.environ.get("RANK")
    return int(rank) if rank and rank.isdigit() else None


def _rank_facts(entry: RunLoader) -> dict:
    """The ranks' report's facts from torchrun's environment: at exit the process group may be gone."""
    return job_facts(entry.rank, int(os.environ.get("WORLD_SIZE", "1") or 1), "unknown",
                     entry.run.loader.sampler if entry.run.loader else None)


def collect() -> RunResult:
    """What this process has profiled so far (every loader iterated since ``install()``)."""
    with _lock:
        loaders = list(_registry)
        tuned = list(_tuned)
    for entry, t in tuned:
        t.close()  # its windows, decision and notes into its run; the sampler stopped
        entry.run = t.result().run
    environment = collect_environment(None) if loaders else {}
    sync = sync_note(_device_sync())
    tuned_runs = {id(entry.run) for entry, _ in tuned}
    for entry in loaders:
        entry.run.environment = environment
        if id(entry.run) not in tuned_runs:  # a tuned loader's notes are its profiler's, this one's too
            entry.run.notes = [sync] if sync else []
        if entry.rank is not None:
            entry.facts = _rank_facts(entry)
    return RunResult(command=list(sys.argv), loaders=loaders)


def write(out_dir: str) -> str | None:
    """This process's profiles into ``out_dir``; the path, or None when it iterated no loader."""
    result = collect()
    if not result.loaders:
        return None
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"process-{os.getpid()}.json")
    result.save(path)
    return path


def _at_exit() -> None:
    out = os.environ.get(OUT_ENV)
    if out and os.getpid() == _installed_in[0]:  # not in a forked worker: its parent writes
        write(out)


def _on_sigterm(signum, frame) -> None:
    """The program set no handler of its own: write what was measured, then die of the signal."""
    _at_exit()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


_installed_in = [0]


def uninstall() -> None:
    """DataLoader as torch defines it again; loaders already profiled stay in the registry."""
    DataLoader.__init__ = _ORIGINAL_INIT
    DataLoader.__iter__ = _ORIGINAL_ITER


def clear() -> None:
    with _lock:
        _registry.clear()


def install(at_exit: bool = True) -> None:
    """Patch DataLoader in this process (once); ``at_exit``: write the profiles at exit into
    ``$DLPROF_RUN_OUT`` (``dlprof run``; the framework callbacks write at the end of training)."""
    if DataLoader.__iter__ is _iter:
        return
    _installed_in[0] = os.getpid()
    DataLoader.__init__ = _init
    DataLoader.__iter__ = _iter
    if not at_exit:
        return
    atexit.register(_at_exit)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)

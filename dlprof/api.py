"""The in-code entry points: ``dlprof.profile(loader)`` and ``dlprof.Profiler``."""
from __future__ import annotations

import os
import tempfile
import weakref

from dlprof.probe.device import sync_note, synchronize, unavailable_device
from dlprof.probe.environment import collect_environment
from dlprof.probe.loader import LoaderProbe, describe_loader
from dlprof.probe.stacks import StackSampler, stack_rate_hz
from dlprof.probe.system import SystemSampler
from dlprof.records import ProfileRun
from dlprof.result import ProfileResult


class Profiler:
    """Records one DataLoader's batches and the system around them.

    The system sampler (a small separate process, about 10 Hz) runs from ``wrap()`` until
    ``close()``, the end of a ``with`` block, or garbage collection:
    ``with dlprof.Profiler() as p: for batch in p.wrap(loader): ...``.
    """

    def __init__(self, sample_system: bool = True, sample_interval_s: float = 0.1, uss_every: int = 10,
                 sample_stacks: bool = False) -> None:
        """``uss_every``: read each process's unique memory (USS, which shows copy-on-access
        growth in workers) every this many samples; it costs more than the rest of a sample.
        ``sample_stacks``: sample the Python stacks of this process and its workers with py-spy
        (up to 100 Hz a process, from outside) for ``hotspots()``."""
        self.run = ProfileRun()
        self._saved_to_env = False
        self._stacks = None
        if sample_stacks:
            fd, path = tempfile.mkstemp(prefix="dlprof-stacks-", suffix=".txt")
            os.close(fd)
            self._stacks = StackSampler(path)
        self._sampler = (SystemSampler(interval_s=sample_interval_s, uss_every=uss_every)
                         if sample_system else None)
        self._closed = False
        self._loader = None
        self._device_sync = False
        self._notes: list[str] = []  # the profiler's own, beside the sampler's
        if self._sampler is not None:
            # stops the sampler process when this profiler is collected or Python exits
            self._finalizer = weakref.finalize(self, self._sampler.stop)

    def wrap(self, loader, device=None, device_sync: bool = False) -> "ProfiledLoader":
        if self._loader is not None and loader is not self._loader:
            raise ValueError("a Profiler records one DataLoader; create another Profiler for this one")
        device = None if device is None else str(device)
        why = unavailable_device(device)
        if why:
            raise ValueError(why)
        self._device_sync = device_sync
        probe = LoaderProbe(loader, device, self._start_sampler, self.run.batches, self.run.epochs,
                            sync=synchronize if device_sync else None)
        self._loader = loader
        self.run.loader = describe_loader(loader, device)
        self.run.environment = collect_environment(device)
        self._start_sampler()  # now, so its start-up is done before the first epoch
        if self._stacks is not None:
            self._stacks.rate_hz = stack_rate_hz(1 + (loader.num_workers or 0))
            self._stacks.start(os.getpid())
        return ProfiledLoader(probe, self)

    def _start_sampler(self) -> None:
        """Also called at each epoch start: after close(), iterating again records batches only."""
        if self._sampler is not None and not self._closed:
            self._sampler.start()

    def process_samples(self) -> list:
        """The system sampler's process readings so far (none without a sampler)."""
        return self._sampler.process_samples if self._sampler is not None else []

    def stop_sampling(self) -> None:
        """Stop the system sampler now; batches are still recorded (dlprof.autotune, once settled:
        its readings fed the decisions, and it costs a little CPU)."""
        self._closed = True
        if self._sampler is not None:
            self._sampler.stop()

    def close(self) -> None:
        """Stop the system sampler (and stack sampling). Results stay available. With
        ``DLPROF_OUT=DIR`` set, also save to DIR/results.json (merged on rank 0 in a process group)."""
        self._closed = True
        if self._sampler is not None:
            self._sampler.stop()
        stacks, self._stacks = self._stacks, None
        if stacks is not None:
            self.run.stacks_raw, problem = stacks.collect()
            if problem:
                self._notes.append(f"no hotspots: {problem}")
        out = os.environ.get("DLPROF_OUT")
        if out and not self._saved_to_env:  # torchrun jobs: every rank closes, rank 0 writes
            self._saved_to_env = True
            self.save(os.path.join(out, "results.json"))

    def __enter__(self) -> "Profiler":
        self._start_sampler()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def result(self) -> ProfileResult:
        """A snapshot of what was measured so far."""
        if self._sampler is not None:
            self.run.processes = list(self._sampler.process_samples)
            self.run.gpus = list(self._sampler.gpu_samples)
        sync = sync_note(self._device_sync)
        self.run.notes = (list(self._sampler.notes) if self._sampler is not None else []) + self._notes + (
            [sync] if sync else [])
        return ProfileResult(self.run)

    def summary(self, file=None) -> None:
        self.result().summary(file)

    def to_dataframe(self):
        return self.result().to_dataframe()

    def save(self, path: str | os.PathLike) -> None:
        """Write the results file. Inside a torch.distributed process group this is collective:
        every rank calls it, rank 0 writes the ranks' merged results and ``report.md`` beside it."""
        from dlprof.distributed import in_process_group

        if in_process_group():
            _save_merged(self.result().run, str(path))
        else:
            self.result().save(path)

    def save_trace(self, path: str | os.PathLike) -> None:
        self.result().save_trace(path)

    def save_reports(self, folder: str | os.PathLike) -> list[str]:
        """report.html, report.md (plot files beside it) and trace.json in ``folder``."""
        return self.result().save_reports(folder)


class ProfiledLoader:
    """Iterate it exactly like the DataLoader it wraps; each pass is one recorded epoch."""

    def __init__(self, probe: LoaderProbe, profiler: Profiler) -> None:
        self._probe = probe
        self.profiler = profiler

    def __iter__(self):
        return iter(self._probe)

    def not_a_step(self, ns: int) -> None:
        """Time spent between two batches by dlprof's own code in the loop (a scan's trial
        checks): left out of the step's time."""
        self._probe.not_a_step(ns)

    def __len__(self) -> int:
        return len(self._probe)

    def __getattr__(self, name: str):
        """The DataLoader's own attributes (``dataset``, ``sampler``, ``batch_size``, ...), read
        from the user's loader as the bare one gives them: a loop that computes
        ``len(loader.dataset)`` or calls ``loader.sampler.set_epoch(epoch)`` runs unchanged. Only
        looked up for names the wrapper does not have."""
        if name.startswith("__") or name in ("_probe", "profiler"):  # not set yet (copy, unpickling)
            raise AttributeError(name)
        loader = self._probe.loader
        if loader is None:
            raise AttributeError(f"{name!r}: the DataLoader this profile wraps is gone")
        return getattr(loader, name)

    @property
    def loader(self):
        return self._probe.loader

    def result(self) -> ProfileResult:
        return self.profiler.result()

    def _repr_html_(self) -> str:
        return self.result()._repr_html_()

    def summary(self, file=None) -> None:
        self.profiler.summary(file)

    def to_dataframe(self):
        return self.profiler.to_dataframe()

    def save(self, path: str | os.PathLike) -> None:
        self.profiler.save(path)

    def save_trace(self, path: str | os.PathLike) -> None:
        """Chrome trace-event JSON, one track per worker plus the training loop (Perfetto)."""
        self.profiler.save_trace(path)

    def save_reports(self, folder: str | os.PathLike) -> list[str]:
        """report.html (self-contained), report.md (plot files beside it) and trace.json in
        ``folder``, as ``dlprof profile`` writes them; returns the paths."""
        return self.profiler.save_reports(folder)

    def close(self) -> None:
        self.profiler.close()

    def __enter__(self):
        """``with dlprof.profile(loader) as prof:``: closed at the end of the block (the
        sampler stops; the results stay)."""
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def failed_batch(self) -> tuple[object, object]:
        """After iterating raised: (the dataset index whose ``__getitem__`` failed, the indices
        of the batch being built), each None where unknown. The index is known with
        num_workers=0; with workers, the batch (the next one the loop was waiting for)."""
        return self._probe.failed_batch()

    def dead_workers(self, named=()) -> list[tuple[int, int, int]]:
        """(worker id, pid, exit code) of workers of the current epoch that have exited with an
        error; a negative exit code is the signal that killed the worker. Those of ``named``
        (pids torch said are dead) are waited for up to a second."""
        return self._probe.dead_workers(named)


def _save_merged(run: ProfileRun, path: str) -> None:
    from dlprof.analysis.ranks import analyse_ranks
    from dlprof.distributed import gather_runs
    from dlprof.records import save_json
    from dlprof.report.distributed_text import DistributedMarkdownRenderer

    merged = gather_runs(run)
    if merged is None:  # not rank 0
        return
    out_dir = os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    save_json(merged, path)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(DistributedMarkdownRenderer().render(analyse_ranks(merged)))


def profile(loader, device=None, sample_system: bool = True, sample_stacks: bool = False,
            device_sync: bool = False) -> ProfiledLoader:
    """Wrap ``loader`` so that iterating it records every stage of every batch.

    ``device``: where to move each batch before handing it over (``"cuda"``, ``"cpu"``...);
    None leaves batches where the DataLoader put them and records no transfer.
    ``sample_stacks``: also sample Python stacks with py-spy for ``result().hotspots()``
    (stops at ``close()``).
    ``device_sync``: wait for the GPU's queued work each time the loop asks for a batch
    (``torch.cuda.synchronize()``, only in a process that uses CUDA), so the step's time includes
    its GPU work and the wait is time the GPU had none; it costs the overlap of the step's GPU
    work with the loop's next ask, so it is off by default.
    """
    return Profiler(sample_system=sample_system, sample_stacks=sample_stacks).wrap(
        loader, device=device, device_sync=device_sync)

"""The in-code entry points: ``dlprof.profile(loader)`` and ``dlprof.Profiler``."""
from __future__ import annotations

import os

from dlprof.probe.environment import collect_environment
from dlprof.probe.loader import LoaderProbe, describe_loader
from dlprof.probe.system import SystemSampler
from dlprof.records import ProfileRun
from dlprof.result import ProfileResult


class Profiler:
    """Records one DataLoader's batches and the system around them.

    ``with dlprof.Profiler() as p: for batch in p.wrap(loader): ...`` samples the system for
    the whole block; without ``with`` the sampler runs while an epoch is being iterated.
    """

    def __init__(self, sample_system: bool = True, sample_interval_s: float = 0.1) -> None:
        self.run = ProfileRun()
        self._sampler = SystemSampler(interval_s=sample_interval_s) if sample_system else None
        self._in_context = False
        self._loader = None

    def wrap(self, loader, device=None) -> "ProfiledLoader":
        if self._loader is not None and loader is not self._loader:
            raise ValueError("a Profiler records one DataLoader; create another Profiler for this one")
        device = None if device is None else str(device)
        probe = LoaderProbe(loader, device, self._on_epoch, self.run.batches, self.run.epochs)
        self._loader = loader
        self.run.loader = describe_loader(loader, device)
        self.run.environment = collect_environment(device)
        return ProfiledLoader(probe, self)

    def _on_epoch(self, starting: bool) -> None:
        if self._sampler is None or self._in_context:
            return
        if starting:
            self._sampler.start()
        else:
            self._sampler.stop()

    def __enter__(self) -> "Profiler":
        self._in_context = True
        if self._sampler is not None:
            self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._in_context = False
        if self._sampler is not None:
            self._sampler.stop()

    def result(self) -> ProfileResult:
        """A snapshot of what was measured so far."""
        if self._sampler is not None:
            self.run.processes = list(self._sampler.process_samples)
            self.run.gpus = list(self._sampler.gpu_samples)
            self.run.notes = list(self._sampler.notes)
        return ProfileResult(self.run)

    def summary(self, file=None) -> None:
        self.result().summary(file)

    def to_dataframe(self):
        return self.result().to_dataframe()

    def save(self, path: str | os.PathLike) -> None:
        self.result().save(path)


class ProfiledLoader:
    """Iterate it exactly like the DataLoader it wraps; each pass is one recorded epoch."""

    def __init__(self, probe: LoaderProbe, profiler: Profiler) -> None:
        self._probe = probe
        self.profiler = profiler

    def __iter__(self):
        return iter(self._probe)

    def __len__(self) -> int:
        return len(self._probe)

    @property
    def loader(self):
        return self._probe.loader

    def result(self) -> ProfileResult:
        return self.profiler.result()

    def summary(self, file=None) -> None:
        self.profiler.summary(file)

    def to_dataframe(self):
        return self.profiler.to_dataframe()

    def save(self, path: str | os.PathLike) -> None:
        self.profiler.save(path)


def profile(loader, device=None, sample_system: bool = True) -> ProfiledLoader:
    """Wrap ``loader`` so that iterating it records every stage of every batch.

    ``device``: where to move each batch before handing it over (``"cuda"``, ``"cpu"``...);
    None leaves batches where the DataLoader put them and records no transfer.
    """
    return Profiler(sample_system=sample_system).wrap(loader, device=device)

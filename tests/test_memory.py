"""Copy-on-access growth of worker memory, with real forked workers (pytorch issue 13246)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import dlprof
from dlprof.analysis.memory import memory_growth_warning

N = 200_000


class Records(Dataset):
    """The same records as Python dicts, or as numpy arrays."""

    def __init__(self, as_objects: bool) -> None:
        self.as_objects = as_objects
        if as_objects:
            self.items = [{"id": i, "path": f"images/{i:08d}.jpg", "label": i % 10, "w": 1.0 * i} for i in range(N)]
        else:
            self.labels = np.arange(N) % 10
            self.weights = np.arange(N, dtype=np.float64)
            self.paths = np.array([f"images/{i:08d}.jpg" for i in range(N)])

    def __len__(self):
        return N

    def __getitem__(self, i):
        if self.as_objects:
            r = self.items[i]
            return torch.tensor([r["label"], r["w"], len(r["path"])])
        return torch.tensor([float(self.labels[i]), float(self.weights[i]), len(self.paths[i])])


def _profile(as_objects: bool):
    loader = DataLoader(Records(as_objects), batch_size=256, shuffle=True, num_workers=2,
                        generator=torch.Generator().manual_seed(0))
    with dlprof.Profiler(uss_every=1) as p:
        for _ in p.wrap(loader):
            pass
    return p.result()


@pytest.mark.timeout(180)
def test_python_objects_are_flagged_and_numpy_arrays_are_not():
    objects, arrays = _profile(True), _profile(False)
    grown, flat = objects.worker_memory(), arrays.worker_memory()
    assert len(grown) == 2 and len(flat) == 2  # one row per worker
    # per 1,000 samples read between the first and last USS readings: a busy machine's sampler
    # may read a worker's last USS early (one worker showed 4.5 MiB of growth, the other 22.5)
    rate = "growth_mib_per_1k_samples"
    assert grown[rate].min() > 4 * max(flat[rate].max(), 0.01), (grown, flat)
    warning = [n for n in objects.analyse().notes if "worker memory grows" in n]
    assert warning and "numpy arrays" in warning[0]
    assert not [n for n in arrays.analyse().notes if "worker memory grows" in n]
    assert memory_growth_warning(grown, N, 2) and memory_growth_warning(flat, N, 2) is None

"""Workers started by spawn, restarted every epoch (seed 001's ``Dataset`` and loader, as macOS and
Windows run them).

What it models: the same training script on a laptop. On macOS and Windows, DataLoader workers
are started by ``spawn`` (and on Linux from Python 3.14 by ``forkserver``): each worker is a new
interpreter that imports torch and this file before its first sample, one to a few seconds,
where a forked worker starts in milliseconds. The loader sets
``multiprocessing_context="spawn"`` so that Linux shows it too. With the default
``persistent_workers=False`` the two workers are started again at every epoch.

The data are 3,200 feature vectors built from their index (a 64-float vector per sample through
a few numpy operations, about 0.3 ms, standing in for per-sample feature extraction), batched
by 64: an epoch is 50 batches, about half a second of work for two workers, after a start-up of
one to three seconds. The step is a small MLP (64-128-10) with Adam, well under a millisecond.
Expected: data-bound, stage startup
Best: persistent_workers=True (the workers are spawned once, not at every epoch)

Run it: ``python recipes/spawn_workers.py`` (trains one epoch, prints when its first batch came
and the epoch's time); profile it: ``dlprof profile recipes/spawn_workers.py``. The training loop is under
``if __name__ == "__main__":``, as spawn requires: each worker imports this file again.
"""
import time

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

NUM_SAMPLES = 3200
FEATURES = 64
NUM_CLASSES = 10


class Features(Dataset):
    """Sample ``i``: a feature vector computed from a seeded signal, labelled by its class."""

    def __len__(self) -> int:
        return NUM_SAMPLES

    def __getitem__(self, idx):
        rng = np.random.default_rng(idx)
        label = idx % NUM_CLASSES
        signal = rng.normal(0, 1, 4096) + np.sin(np.arange(4096) * (label + 1) / 200)
        spectrum = np.abs(np.fft.rfft(signal))[:FEATURES]
        features = np.log1p(spectrum).astype(np.float32)
        return torch.from_numpy(features), label


train_dataset = Features()
loader = DataLoader(train_dataset, batch_size=64, shuffle=True, num_workers=2,
                    multiprocessing_context="spawn")

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(FEATURES, 128), nn.ReLU(), nn.Linear(128, NUM_CLASSES))
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.003)


def train_step(batch) -> float:
    features, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(features), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step == 0:
            print(f"first batch after {time.perf_counter() - start:.2f} s (the workers were spawned)")
        loss = train_step(batch)
        if step % 10 == 0:
            print(f"step {step:3d}  loss {loss:.4f}")
    print(f"epoch: {time.perf_counter() - start:.2f} s; final loss {loss:.4f}")

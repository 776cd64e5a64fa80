"""Sliding-window time series (seed 003, ``TimeSeriesDataset``).

What it models: next-value forecasting over one long series, the seed's ``TimeSeriesDataset``:
sample ``i`` is the window ``data[i:i + 64]`` and its target ``data[i + 64]``. As users
usually do, each window is normalised on its own in ``__getitem__`` (numpy: mean, standard
deviation, scale; the target with the window's statistics), so every sample costs a few small
numpy calls and two tensor conversions, about 15 microseconds. The series is synthetic and
deterministic (two seasonal sines, a slow trend and AR(1) noise, 64,064 points), made on
import in milliseconds; the 64,000 overlapping windows are views, never copied.

The loader is the seed's ``batch_size=32, shuffle=True`` but with ``num_workers=0`` (the seed's
``num_workers=4, pin_memory=True`` is a GPU-machine setting). The step is a small MLP
(64-128-64-1) with Adam and MSE, about as costly as fetching the 32 windows (0.6 ms each), so
the loop waits for data about half the time. Workers do not fix it on a small machine: each
batch a worker ships costs about a millisecond of pickling and shared memory between the two
processes, more than the fetch it takes off the main process, and the step needs the cores too.
Expected: data-bound, stage fetch (cpu)
Best: num_workers=0 (on 2 cores a worker's per-batch hand-off costs more than the 0.6 ms fetch it saves; measured 2x slower with 2 workers)

Run it: ``python recipes/timeseries.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/timeseries.py``.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

SEQUENCE_LENGTH = 64
NUM_WINDOWS = 64_000


def _make_series(length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    seasonal = 2.0 * np.sin(2 * np.pi * t / 96.0) + 0.7 * np.sin(2 * np.pi * t / 672.0)
    trend = 0.0002 * t
    # AR(1) noise, phi = 0.8: the recursion as a convolution with phi**k (0.8**80 < 1e-7)
    shocks = rng.normal(0.0, 0.3, length)
    noise = np.convolve(shocks, 0.8 ** np.arange(80))[:length]
    return (10.0 + seasonal + trend + noise).astype(np.float32)


class TimeSeriesDataset(Dataset):
    """The seed's sliding window over a 1-D series, with per-window normalisation."""

    def __init__(self, data: np.ndarray, sequence_length: int) -> None:
        self.data = data
        self.sequence_length = sequence_length

    def __len__(self) -> int:
        return len(self.data) - self.sequence_length

    def __getitem__(self, idx):
        sequence = self.data[idx:idx + self.sequence_length]
        target = self.data[idx + self.sequence_length]
        mean = sequence.mean()
        std = sequence.std() + 1e-6
        window = (sequence - mean) / std
        return torch.from_numpy(window), torch.tensor([(target - mean) / std], dtype=torch.float32)


torch.manual_seed(0)
series = _make_series(NUM_WINDOWS + SEQUENCE_LENGTH)
train_dataset = TimeSeriesDataset(series, sequence_length=SEQUENCE_LENGTH)
loader = DataLoader(train_dataset, batch_size=32, shuffle=True)

model = nn.Sequential(
    nn.Linear(SEQUENCE_LENGTH, 128),
    nn.ReLU(),
    nn.Linear(128, 64),
    nn.ReLU(),
    nn.Linear(64, 1),
)
criterion = nn.MSELoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)


def train_step(batch) -> float:
    sequences, targets = batch
    optimizer.zero_grad()
    loss = criterion(model(sequences), targets)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        if step % 400 == 0:
            print(f"step {step:4d}  loss {loss:.4f}")
    print(f"final loss {loss:.4f}")

"""Batches of one through worker processes (no seed: the seeds' ``num_workers``, misapplied).

What it models: per-sample SGD (``batch_size=1``, the "stochastic" end of seed 001's
mini-batch discussion) over a small data set already in memory, with ``num_workers=2`` copied
from a tutorial. Fetching a sample is one tensor indexing, microseconds; but every batch built
by a worker travels to the main process as its own message: the worker pickles it, its tensors
go through shared memory, the main process receives and rebuilds them. That hand-off costs far
more than the sample, and the main process pays its half of it while the loop waits. The data
are 1,500 vectors of 64 floats with a class each, made on import from a seeded RNG.

The step is a small MLP (64-32-4) with SGD on one sample: a few hundred microseconds.
Expected: data-bound, stage main
Best: num_workers=0 (nothing to parallelise: the hand-off per batch is the whole cost; larger batches would amortise it too)

Run it: ``python recipes/tiny_batches.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/tiny_batches.py``.
"""
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

NUM_SAMPLES = 1500
NUM_FEATURES = 64
NUM_CLASSES = 4

torch.manual_seed(0)
_centres = torch.randn(NUM_CLASSES, NUM_FEATURES)
_labels = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,))
_features = _centres[_labels] + 3.0 * torch.randn(NUM_SAMPLES, NUM_FEATURES)
train_dataset = TensorDataset(_features, _labels)
loader = DataLoader(train_dataset, batch_size=1, shuffle=True, num_workers=2)

model = nn.Sequential(nn.Linear(NUM_FEATURES, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES))
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.01)


def train_step(batch) -> float:
    features, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(features), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    running = 0.0
    for step, batch in enumerate(loader):
        running += train_step(batch)
        if (step + 1) % 300 == 0:
            print(f"step {step + 1:4d}  mean loss of the last 300 {running / 300:.4f}")
            running = 0.0

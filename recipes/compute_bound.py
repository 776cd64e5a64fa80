"""Compute-bound training (no seed: the seeds' MLP, made wide).

What it models: the case where the input pipeline is not the problem. The data are
pre-computed embeddings already in memory, 7,680 vectors of 1,024 floats in a
``TensorDataset`` (made on import from a seeded RNG, 31 MB), batched by ``batch_size=128,
shuffle=True`` with ``num_workers=0``: a batch is 128 indexings and a stack, a fraction of a
millisecond. The step is a wide MLP (1024-2048-2048-2048-10, about 10 million weights) with SGD
and momentum: a few large matrix multiplications forward and backward, 35-40 ms a batch on
two cores. The loop barely waits; no loader setting can make it faster.
Expected: compute-bound, stage step
Best: num_workers=0 (the baseline: there is no data stall to remove, and workers would take CPU from the step)

Run it: ``python recipes/compute_bound.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/compute_bound.py``.
"""
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

NUM_SAMPLES = 7680
NUM_FEATURES = 1024
HIDDEN = 2048
NUM_CLASSES = 10

torch.manual_seed(0)
_centres = torch.randn(NUM_CLASSES, NUM_FEATURES)
_labels = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,))
_embeddings = _centres[_labels] + 6.0 * torch.randn(NUM_SAMPLES, NUM_FEATURES)
train_dataset = TensorDataset(_embeddings, _labels)
loader = DataLoader(train_dataset, batch_size=128, shuffle=True)

model = nn.Sequential(
    nn.Linear(NUM_FEATURES, HIDDEN),
    nn.ReLU(),
    nn.Linear(HIDDEN, HIDDEN),
    nn.ReLU(),
    nn.Linear(HIDDEN, HIDDEN),
    nn.ReLU(),
    nn.Linear(HIDDEN, NUM_CLASSES),
)
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def train_step(batch) -> float:
    embeddings, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(embeddings), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        if step % 10 == 0:
            print(f"step {step:3d}  loss {loss:.4f}")
    print(f"final loss {loss:.4f}")

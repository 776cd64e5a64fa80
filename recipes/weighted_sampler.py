"""Class-imbalanced data with WeightedRandomSampler (seed 003, "Sampler Configuration").

What it models: a rare-event classifier (fraud, defects): 100,000 rows of 30 float features
in memory, of which 5% are positives. As the seed shows, the loader gets a
``WeightedRandomSampler(weights=sample_weights, num_samples=len(dataset), replacement=True)``
with each sample weighted by the inverse frequency of its class, so batches come out about
half positives. The sampler draws the whole epoch's indices up front with one
``torch.multinomial`` call (a few milliseconds); after that, each batch is 64 ``__getitem__``
calls that take a numpy row, standardise it (log of the amount column, then z-score with the
data set's mean and std) and wrap it as a tensor, then ``default_collate``. The data is made
on import from a seeded RNG (positives shifted along a few features), in about 0.1 s.

The step is a small MLP (30-64-64-2) with Adam and cross-entropy, about half a millisecond,
against about 0.3 ms to fetch and collate 64 rows one by one.
Expected: data-bound, stage fetch (cpu)
Best: num_workers=0 (the rows are in memory: a worker would add a pickle and shared memory per batch and take the step's cores)

Run it: ``python recipes/weighted_sampler.py`` (trains one epoch, prints the loss and the share
of positives per batch); profile it: ``dlprof profile recipes/weighted_sampler.py``.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

NUM_ROWS = 100_000
NUM_FEATURES = 30
POSITIVE_SHARE = 0.05


class TabularDataset(Dataset):
    """Raw rows standardised one at a time in ``__getitem__`` (log of the amount column, z-score)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray) -> None:
        self.features, self.labels = features, labels
        scaled = self._log_amount(features)
        self.mean, self.std = scaled.mean(axis=0), scaled.std(axis=0)

    @staticmethod
    def _log_amount(rows: np.ndarray) -> np.ndarray:
        rows = rows.copy()
        rows[..., -1] = np.log1p(rows[..., -1])
        return rows

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx):
        row = (self._log_amount(self.features[idx]) - self.mean) / self.std
        return torch.from_numpy(row), int(self.labels[idx])


def _make_imbalanced(rows: int = NUM_ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < POSITIVE_SHARE).astype(np.int64)
    features = rng.standard_normal((rows, NUM_FEATURES), dtype=np.float32)
    features[labels == 1, :5] += 1.0  # positives differ along the first five features
    features[:, -1] = rng.lognormal(3.0, 1.5, rows)  # a transaction amount: heavy-tailed, raw
    return features, labels


torch.manual_seed(0)
features, labels = _make_imbalanced()
train_dataset = TabularDataset(features, labels)

class_counts = np.bincount(labels, minlength=2)
sample_weights = torch.from_numpy(1.0 / class_counts[labels])
sampler = WeightedRandomSampler(weights=sample_weights, num_samples=len(train_dataset), replacement=True)
loader = DataLoader(train_dataset, batch_size=64, sampler=sampler)

model = nn.Sequential(
    nn.Linear(NUM_FEATURES, 64),
    nn.ReLU(),
    nn.Linear(64, 64),
    nn.ReLU(),
    nn.Linear(64, 2),
)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)


def train_step(batch) -> float:
    rows, targets = batch
    optimizer.zero_grad()
    loss = criterion(model(rows), targets)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    print(f"positives in the data set: {labels.mean():.1%}")
    positives = seen = 0
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        positives += int(batch[1].sum())
        seen += len(batch[1])
        if step % 300 == 0:
            print(f"step {step:4d}  loss {loss:.4f}  positives in batches so far {positives / seen:.1%}")
    print(f"final loss {loss:.4f}  positives in batches {positives / seen:.1%}")

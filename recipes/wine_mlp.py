"""Wine MLP (seed 001, "Model Training with Mini-Batches in PyTorch").

What it models: the smallest tabular pipeline there is. The 178 x 13 Wine features are
loaded once into float32 tensors; the loader is the seed's ``batch_size=32, shuffle=True``
with ``num_workers=0``, so an epoch is 6 batches of indexing into tensors already in memory. ``sklearn.datasets.load_wine`` is used when scikit-learn is
installed; otherwise a deterministic stand-in of the same shape is made (178 x 13 features
drawn around the real data set's per-class means and spreads, classes of 59, 71 and 48).
The seed feeds the raw features (proline is in the hundreds, hue below one); like most users
who then add scaling, the dataset standardises each sample in ``__getitem__`` with the
features' mean and standard deviation.

The training step is the seed's MLP (13-10-10-3) with Adam and cross-entropy. Both sides are
tiny: a step takes about 0.4 ms, and getting a batch (32 indexings and standardisations, a
stack, the sampler) a good part of that, so the loop waits for data a real share of the time:
overhead that no worker process can remove. An epoch is only 6 batches: profile it over many
epochs (``--epochs 30``).
Expected: data-bound, stage fetch (cpu)
Best: num_workers=0 (the data is already in memory: a worker would only add process start-up and a pickle per batch)

Run it: ``python recipes/wine_mlp.py`` (trains the seed's 10 epochs, prints the loss);
profile it: ``dlprof profile recipes/wine_mlp.py``.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

# Per-class means and standard deviations of the 13 Wine features (alcohol, malic acid, ash,
# alcalinity of ash, magnesium, total phenols, flavanoids, nonflavanoid phenols,
# proanthocyanins, colour intensity, hue, OD280/OD315, proline), rounded from the UCI data.
_CLASS_SIZES = (59, 71, 48)
_CLASS_MEANS = np.array([
    [13.74, 2.01, 2.46, 17.04, 106.3, 2.84, 2.98, 0.29, 1.90, 5.53, 1.06, 3.16, 1115.7],
    [12.28, 1.93, 2.24, 20.24, 94.5, 2.26, 2.08, 0.36, 1.63, 3.09, 1.06, 2.79, 519.5],
    [13.15, 3.33, 2.44, 21.42, 99.3, 1.68, 0.78, 0.45, 1.15, 7.40, 0.68, 1.68, 629.9],
])
_CLASS_STDS = np.array([
    [0.46, 0.69, 0.23, 2.55, 10.5, 0.34, 0.40, 0.07, 0.41, 1.24, 0.12, 0.36, 221.5],
    [0.54, 1.02, 0.32, 3.35, 16.8, 0.55, 0.71, 0.12, 0.60, 0.92, 0.20, 0.50, 157.2],
    [0.53, 1.09, 0.18, 2.26, 10.9, 0.36, 0.29, 0.12, 0.41, 2.31, 0.11, 0.27, 115.1],
])


def _load_wine() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_wine
    except ImportError:
        rng = np.random.default_rng(0)
        features = np.concatenate([
            np.abs(rng.normal(mean, std, size=(count, 13)))
            for count, mean, std in zip(_CLASS_SIZES, _CLASS_MEANS, _CLASS_STDS)
        ])
        labels = np.repeat(np.arange(3), _CLASS_SIZES)
        return features.astype(np.float32), labels.astype(np.int64)
    wine = load_wine()
    return wine.data.astype(np.float32), wine.target.astype(np.int64)


torch.manual_seed(0)
features, targets = _load_wine()
X = torch.tensor(features, dtype=torch.float32)
y = torch.tensor(targets, dtype=torch.long)


class StandardisedWine(Dataset):
    """Wine rows, each standardised when fetched (the per-sample scaling tutorials add)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels
        self.mean, self.std = features.mean(dim=0), features.std(dim=0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return (self.features[index] - self.mean) / self.std, self.labels[index]


dataset = StandardisedWine(X, y)
loader = DataLoader(dataset, batch_size=32, shuffle=True)

model = nn.Sequential(
    nn.Linear(13, 10),
    nn.ReLU(),
    nn.Linear(10, 10),
    nn.ReLU(),
    nn.Linear(10, 3),
)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)


def train_step(batch) -> float:
    batch_X, batch_y = batch
    optimizer.zero_grad()
    loss = criterion(model(batch_X), batch_y)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    num_epochs = 10
    for epoch in range(num_epochs):
        running_loss = 0.0
        for batch in loader:
            running_loss += train_step(batch) * batch[0].size(0)
        print(f"epoch {epoch + 1:2d}  average loss {running_loss / len(dataset):.4f}")

"""Linear regression with batching (seed 002, "Simple Linear Regression with Batching").

What it models: the seed's synthetic ``y = 2x + 1 + noise`` regression, a ``TensorDataset``
batched by ``batch_size=10, shuffle=True`` with ``num_workers=0``, fitted by ``nn.Linear(1, 1)``
with SGD and MSE. The seed has 100 points trained for 100 epochs; here one epoch holds 100,000
points (10,000 batches), so that a single epoch is long enough to measure and a worker's
start-up is not the whole story.

Nothing here costs anything: a batch is ten indexings of two tensors and a ``torch.stack``,
and the step is a 1x1 linear layer. What is left is the fixed per-batch price of the
DataLoader machinery (sampler, fetcher, ``default_collate``) against the fixed per-step price
of autograd and the optimiser, both tens of microseconds: the ten ``__getitem__`` calls, the
stack and the sampler take about half as long as the step, so the loop waits a third of the time.
Expected: data-bound, stage fetch (cpu)
Best: num_workers=0 (per-batch overhead dominates; a worker adds pickling and shared memory per batch, many times the cost of the batch; larger batches are the real fix)

Run it: ``python recipes/linear_regression.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/linear_regression.py``.
"""
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

NUM_POINTS = 100_000

torch.manual_seed(0)
X = torch.randn(NUM_POINTS, 1)
y = 2 * X + 1 + torch.randn(NUM_POINTS, 1) * 0.1
dataset = TensorDataset(X, y)
loader = DataLoader(dataset, batch_size=10, shuffle=True)

model = nn.Linear(1, 1)
criterion = nn.MSELoss()
optimizer = optim.SGD(model.parameters(), lr=0.01)


def train_step(batch) -> float:
    X_batch, y_batch = batch
    loss = criterion(model(X_batch), y_batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        if step % 200 == 0:
            print(f"step {step:4d}  loss {loss:.4f}")
    weight, bias = model.weight.item(), model.bias.item()
    print(f"final loss {loss:.4f}  (fitted y = {weight:.3f}x + {bias:.3f}; true y = 2x + 1)")

"""MNIST MLP (seed 002, "Multilayer Perceptron for MNIST Classification").

What it models: the classic first image pipeline. Every sample is a 28x28 grey image stored
as PNG bytes, decoded with Pillow and normalised with MNIST's mean and std in
``__getitem__``, the way ``torchvision.datasets.MNIST`` with ``ToTensor`` + ``Normalize``
works. No download is possible here, so the images are synthetic digits-like blobs, made
deterministically on first import (6,000 images, about 0.3 s).

The training step is a small MLP (784-128-10) with Adam, as in the seed: it is cheap, so
with the seed's ``num_workers=0`` the loop spends most of its time decoding PNGs.

Expected: data-bound, stage fetch (cpu)
Best: on 2 cores, the whole epoch (94 batches) in flight on kept workers, e.g. num_workers=16,
prefetch_factor=8, persistent_workers=True, about 5-12% over num_workers=0 (beside busy workers
the step's intra-op threads slow down about 4x, so 1-2 workers lose to none; with the epoch in
flight the workers decode it while the step waits, then the step runs alone); workers on more cores

Run it: ``python recipes/mnist_mlp.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/mnist_mlp.py``.
"""
import io

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from PIL import Image
from torch.utils.data import DataLoader, Dataset

MEAN, STD = 0.1307, 0.3081
NUM_IMAGES = 6000


def _make_png_images(count: int, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count)
    yy, xx = np.mgrid[0:28, 0:28]
    images = []
    for label in labels:
        # a blob whose position depends on the label, plus noise: learnable, digit-sized
        cy, cx = 8 + (label // 4) * 6, 6 + (label % 4) * 5
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
        pixels = np.clip(255 * blob + rng.normal(0, 20, (28, 28)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images, labels.astype(np.int64)


class PngMnist(Dataset):
    """MNIST-shaped dataset: PNG bytes decoded per sample, like torchvision's MNIST + ToTensor."""

    def __init__(self, count: int = NUM_IMAGES) -> None:
        self.images, self.labels = _make_png_images(count)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        with Image.open(io.BytesIO(self.images[index])) as img:
            pixels = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        image = (torch.from_numpy(pixels).unsqueeze(0) - MEAN) / STD
        return image, int(self.labels[index])


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = x.view(-1, 784)
        return self.fc2(self.relu(self.fc1(x)))


torch.manual_seed(0)
train_dataset = PngMnist()
loader = DataLoader(train_dataset, batch_size=64, shuffle=True)

model = MLP()
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)


def train_step(batch) -> float:
    images, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        if step % 20 == 0:
            print(f"step {step:3d}  loss {loss:.4f}")
    print(f"final loss {loss:.4f}")

"""An accelerator's training step: the host waits while the kernels run (no seed: the seeds' image
pipeline, on a GPU-style step).

What it models: image classification on a GPU or another accelerator. The step launches the
forward and backward kernels and then waits for them (``loss.item()`` synchronises), so the
training process holds no CPU core during most of the step. Here a tiny CPU model computes the
loss (a fraction of a millisecond, one thread, as a host launching kernels) and a 12 ms sleep
stands for the accelerator's kernels: the CPU is free for that time, as it is on a real GPU
machine, which a CPU-only step would not show.

The data are 1,024 64x64 RGB images decoded in ``__getitem__`` (synthesised from the index's
seed, standing in for JPEG decoding) and augmented as torchvision would (random 56x56 crop,
flip, float conversion, per-channel normalisation): about half a millisecond a sample, 15-20 ms
for a batch of 32. The loader is ``batch_size=32, shuffle=True`` with ``num_workers=0``, so decoding
and the step take turns and the loop waits for data most of the time.
Expected: data-bound, stage fetch (cpu)
Best: num_workers=2 (one worker per core decodes while the step waits on the accelerator; workers beyond the cores add nothing)

Run it: ``python recipes/accelerator_step.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/accelerator_step.py``.
"""
import time

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

NUM_IMAGES = 1024
SIZE, CROP = 64, 56
NUM_CLASSES = 10
KERNEL_MS = 12.0  # the accelerator's forward and backward, during which the host only waits
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


class DecodedImages(Dataset):
    """Images 'decoded' from their index (a seeded texture per class) and augmented."""

    def __len__(self) -> int:
        return NUM_IMAGES

    def __getitem__(self, idx):
        rng = np.random.default_rng(idx)
        label = idx % NUM_CLASSES
        base = np.linspace(0, 255, SIZE, dtype=np.float32)[:, None] * (label + 1) / NUM_CLASSES
        image = np.clip(base[..., None] + rng.normal(0, 40, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        top, left = rng.integers(0, SIZE - CROP + 1, 2)
        crop = image[top:top + CROP, left:left + CROP]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        chw = ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1).copy()
        return torch.from_numpy(chw), label


torch.manual_seed(0)
train_dataset = DecodedImages()
loader = DataLoader(train_dataset, batch_size=32, shuffle=True)

# the host's part of the step is small, single-threaded work (on an accelerator the host only
# launches kernels): the classifier sees every 8th pixel of each image
model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 7 * 7, NUM_CLASSES))
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.05)


def train_step(batch) -> float:
    images, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(images[:, :, ::8, ::8]), labels)
    loss.backward()
    optimizer.step()
    time.sleep(KERNEL_MS / 1000)  # the accelerator's kernels: the host waits, its CPU idle
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        if step % 16 == 0:
            print(f"step {step:3d}  loss {loss:.4f}")
    print(f"final loss {loss:.4f}")

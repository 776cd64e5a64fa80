"""Heavy-tailed sample costs: one document in 40 takes about 100 times longer (no seed: the seeds'
text pipeline, on a corpus with a long tail).

What it models: a corpus of mostly short documents with a few long ones (scanned books among
web pages, long recordings among short clips). Each sample is tokenised in ``__getitem__``
(pure Python: split, lower-case, hash each word (CRC-32) into a 4,096-entry vocabulary; numpy
counts), so its cost follows its length: a short document (150 words) is about 0.25 ms, and every
40th document has 130 times the words, about 25 ms. With ``shuffle=True`` a batch of 32 holds
none, one or several long ones: fetching it takes from about 8 ms to over 60 ms, most of a
batch's average cost coming from the one-in-40 documents. The documents are made from their
index (seeded word choices), nothing on disk. The step is a bag-of-words linear model with Adam,
about 2 ms.

The loader is ``batch_size=32, shuffle=True, num_workers=0``: the loop waits for the tokenizer
most of the time, and the per-batch time is heavy-tailed, so a short window can land on a run of
cheap or of costly batches: a measurement here needs its interval.
Expected: data-bound, stage fetch (cpu)
Best: num_workers=2 (tokenising is CPU work: one worker per core; more workers and deeper prefetch smooth the tail but add no CPU)

Run it: ``python recipes/heavy_tail.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/heavy_tail.py``.
"""
import random
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

NUM_DOCS = 2000
SHORT_WORDS = 150
LONG_EVERY = 40  # one document in 40 is long
LONG_FACTOR = 130  # and 130 times the words: about 100 times the cost (each document has a fixed cost too)
VOCAB = 4096
NUM_CLASSES = 4
WORDS = [f"w{k}" for k in range(2000)]


class Documents(Dataset):
    """Document ``i``: seeded words, its label a function of them; tokenised on every read."""

    def __len__(self) -> int:
        return NUM_DOCS

    def __getitem__(self, idx):
        rng = random.Random(idx)
        n = SHORT_WORDS * (LONG_FACTOR if idx % LONG_EVERY == 7 else 1)
        label = idx % NUM_CLASSES
        text = " ".join(WORDS[(rng.randrange(500) + 500 * label) % len(WORDS)] for _ in range(n))
        ids = [zlib.crc32(word.encode()) % VOCAB for word in text.lower().split()]
        counts = np.bincount(ids, minlength=VOCAB).astype(np.float32) / n
        return torch.from_numpy(counts), label


torch.manual_seed(0)
train_dataset = Documents()
loader = DataLoader(train_dataset, batch_size=32, shuffle=True)

model = nn.Linear(VOCAB, NUM_CLASSES)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)


def train_step(batch) -> float:
    features, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(features), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        if step % 25 == 0:
            print(f"step {step:3d}  loss {loss:.4f}")
    print(f"final loss {loss:.4f}")

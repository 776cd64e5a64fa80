"""An epoch far too long to hold in flight (no seed: the seeds' text pipeline, at corpus scale).

What it models: pre-training on a large corpus, where one epoch is hours and a run is a few
epochs or less. Here: 2,000,000 sentences, each made from its index (seeded word choices,
nothing stored) and tokenised in ``__getitem__`` in pure Python (split, hash each word with
CRC-32 into a 2,048-entry vocabulary, pad or cut to 32 tokens): about 0.07 ms a sample, 4-5 ms
for a batch of 64. The step is an ``EmbeddingBag`` classifier with Adam, about 3.5 ms. An epoch
is 31,250 batches; even 16 workers with ``prefetch_factor=2`` hold 32 of them, a thousandth of the
epoch, so the rate that counts is what the workers sustain, never a full queue: a measurement
window never reaches an epoch's end, and no start-up or buffer can be amortised over one.

The loader is ``batch_size=64, shuffle=True, num_workers=0``: the main process tokenises and
trains in turn, and the loop waits for data most of the time.
Expected: data-bound, stage fetch (cpu)
Best: num_workers=2 (tokenising is CPU work: one worker per core; more workers share the same 2 cores)

Run it: ``python recipes/long_epoch.py`` (trains the first 300 steps of the epoch, prints the
loss); profile it: ``dlprof profile recipes/long_epoch.py --epochs 1`` (a profile of a whole
epoch takes a few minutes: stop it with Ctrl-C, the batches so far are kept).
"""
import random
import zlib

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

NUM_SENTENCES = 2_000_000
TOKENS = 32
VOCAB = 2048
NUM_CLASSES = 2
WORDS = [f"tok{k}" for k in range(5000)]


class Sentences(Dataset):
    """Sentence ``i``: 20-44 seeded words; its label whether it leans on the first half of the words."""

    def __len__(self) -> int:
        return NUM_SENTENCES

    def __getitem__(self, idx):
        rng = random.Random(idx)
        label = idx % NUM_CLASSES
        words = [WORDS[rng.randrange(2500) + 2500 * (label if rng.random() < 0.7 else 1 - label)]
                 for _ in range(rng.randint(20, 44))]
        ids = [zlib.crc32(w.encode()) % (VOCAB - 1) + 1 for w in " ".join(words).split()][:TOKENS]
        ids += [0] * (TOKENS - len(ids))
        return torch.tensor(ids), label


torch.manual_seed(0)
train_dataset = Sentences()
loader = DataLoader(train_dataset, batch_size=64, shuffle=True)

embed = nn.EmbeddingBag(VOCAB, 64, mode="mean", padding_idx=0)
head = nn.Linear(64, NUM_CLASSES)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(list(embed.parameters()) + list(head.parameters()), lr=0.01)


def train_step(batch) -> float:
    ids, labels = batch
    optimizer.zero_grad()
    loss = criterion(head(embed(ids)), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        if step % 50 == 0:
            print(f"step {step:3d}  loss {loss:.4f}")
        if step == 299:  # an epoch is 31,250 steps
            break
    print(f"final loss {loss:.4f}")

"""Remote storage latency (no seed: the seeds' ``MemoryEfficientDataset``, "load data on-demand").

What it models: a dataset whose samples live in an object store or on a network file system,
read one request per ``__getitem__``, as in the seed's on-demand ``_load_single_item``. Each
request waits 4 ms for the storage to answer (``time.sleep(0.004)``: the process is idle, as it
is when waiting on a socket) and then parses the returned bytes, a 256-float feature vector,
with ``np.frombuffer``: a few microseconds of CPU. The "store" is a dict of bytes blobs made on
import from a seeded RNG (640 objects, 1 KB each).

The step is a small MLP (256-128-10) with Adam, well under a millisecond, so with the usual
``num_workers=0`` the loop spends nearly all its time asleep in ``__getitem__``: 32 samples
x 4 ms = 128 ms a batch.
Expected: data-bound, stage fetch (io)
Best: num_workers=16 (workers mostly sleep, so many more than the 2 cores overlap their waits; the gain flattens as start-up and the step take over)

Run it: ``python recipes/slow_storage.py`` (trains one epoch, prints the loss);
profile it: ``dlprof profile recipes/slow_storage.py``.
"""
import time

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

NUM_OBJECTS = 640
NUM_FEATURES = 256
NUM_CLASSES = 10
LATENCY_S = 0.004  # one request to the store: a typical object-store or NFS round trip

dlprof_config = {"max_workers": 16}


def _make_store(count: int = NUM_OBJECTS, seed: int = 0) -> dict[str, bytes]:
    """Key -> serialised sample (label byte + float32 features), like objects in a bucket."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (NUM_CLASSES, NUM_FEATURES)).astype(np.float32)
    store = {}
    for i in range(count):
        label = i % NUM_CLASSES
        features = centres[label] + rng.normal(0, 1.5, NUM_FEATURES).astype(np.float32)
        store[f"samples/{i:06d}.bin"] = bytes([label]) + features.tobytes()
    return store


class RemoteStoreDataset(Dataset):
    """Fetches each sample from the store on demand; every read pays the store's latency."""

    def __init__(self, store: dict[str, bytes]) -> None:
        self.store = store
        self.keys = sorted(store)

    def __len__(self) -> int:
        return len(self.keys)

    def _get_object(self, key: str) -> bytes:
        time.sleep(LATENCY_S)  # waiting for the network: idle, not CPU
        return self.store[key]

    def __getitem__(self, idx):
        blob = self._get_object(self.keys[idx])
        features = np.frombuffer(blob, dtype=np.float32, offset=1)
        return torch.from_numpy(features.copy()), blob[0]


torch.manual_seed(0)
train_dataset = RemoteStoreDataset(_make_store())
loader = DataLoader(train_dataset, batch_size=32, shuffle=True)

model = nn.Sequential(nn.Linear(NUM_FEATURES, 128), nn.ReLU(), nn.Linear(128, NUM_CLASSES))
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)


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
        if step % 5 == 0:
            print(f"step {step:3d}  loss {loss:.4f}")
    print(f"final loss {loss:.4f}")

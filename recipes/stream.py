"""Streaming JSON-lines shards with an IterableDataset (no seed: the streaming counterpart of
seed 003's map-style ``CustomDataset``).

What it models: data that is read as a stream rather than indexed, such as logs or sensor
events in sharded JSON-lines files. The ``IterableDataset`` splits the shards among
DataLoader workers with ``get_worker_info()`` (worker ``k`` of ``n`` reads shards ``k, k + n,
...``; without workers the main process reads them all), so every record is read exactly
once per epoch whatever ``num_workers`` is: the mistake this recipe guards against is every
worker replaying the whole stream. Each record is one ``json.loads`` of a line (an id, 16
sensor readings, a target) and a tensor conversion, about 10 microseconds of CPU.

The 16 shards of 4,000 records (64,000 in all, 13 MB) are written once, deterministically
(each shard from its own seeded RNG), to ``~/.cache/dlprof/recipes/stream/`` (about a second
the first time; later imports only check the folder). The loader is ``batch_size=64`` with
``num_workers=0``; the step is a small MLP regression (16-64-64-1) with Adam, about as costly
as parsing the 64 lines, so the loop waits for data roughly half the time.
Expected: data-bound, stage fetch (cpu)
Best: num_workers=0 (parsing is CPU work, but on 2 cores a worker's per-batch hand-off and its competition with the step cost more than the parsing it takes over)

Run it: ``python recipes/stream.py`` (trains one epoch, prints the loss, and checks with a
2-worker loader that no record repeats); profile it: ``dlprof profile recipes/stream.py``.
"""
import glob
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

NUM_SHARDS = 16
RECORDS_PER_SHARD = 4000
NUM_FEATURES = 16
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "dlprof", "recipes", "stream")


def _write_shards(folder: str, seed: int = 0) -> list[str]:
    """One JSON-lines file per shard, each from its own RNG; written atomically, once."""
    os.makedirs(folder, exist_ok=True)
    weights = np.random.default_rng(seed).normal(0, 1, NUM_FEATURES)
    paths = []
    for shard in range(NUM_SHARDS):
        path = os.path.join(folder, f"shard-{shard:05d}.jsonl")
        paths.append(path)
        if os.path.exists(path):
            continue
        rng = np.random.default_rng(seed + 1 + shard)
        readings = rng.normal(0, 1, (RECORDS_PER_SHARD, NUM_FEATURES)).round(5)
        targets = (readings @ weights + rng.normal(0, 0.1, RECORDS_PER_SHARD)).round(5)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            for i in range(RECORDS_PER_SHARD):
                record = {"id": shard * RECORDS_PER_SHARD + i, "readings": readings[i].tolist(), "target": targets[i]}
                fh.write(json.dumps(record) + "\n")
        os.replace(tmp, path)
    return paths


class JsonLinesStream(IterableDataset):
    """Reads its shards line by line; each DataLoader worker reads a disjoint subset of them."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def _my_shards(self) -> list[str]:
        info = get_worker_info()
        if info is None:  # num_workers=0: the main process reads every shard
            return self.paths
        return self.paths[info.id::info.num_workers]

    def __iter__(self):
        for path in self._my_shards():
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    record = json.loads(line)
                    yield (
                        record["id"],
                        torch.tensor(record["readings"], dtype=torch.float32),
                        torch.tensor([record["target"]], dtype=torch.float32),
                    )


torch.manual_seed(0)
train_dataset = JsonLinesStream(sorted(_write_shards(CACHE_DIR)))
loader = DataLoader(train_dataset, batch_size=64)

model = nn.Sequential(
    nn.Linear(NUM_FEATURES, 64),
    nn.ReLU(),
    nn.Linear(64, 64),
    nn.ReLU(),
    nn.Linear(64, 1),
)
criterion = nn.MSELoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)


def train_step(batch) -> float:
    _, readings, targets = batch
    optimizer.zero_grad()
    loss = criterion(model(readings), targets)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        if step % 200 == 0:
            print(f"step {step:4d}  loss {loss:.4f}")
    print(f"final loss {loss:.4f}")
    ids = torch.cat([batch[0] for batch in DataLoader(train_dataset, batch_size=64, num_workers=2)])
    print(f"2 workers: {len(ids)} records, {len(torch.unique(ids))} distinct "
          f"(expected {NUM_SHARDS * RECORDS_PER_SHARD} of each)")

"""Datasets and collate functions shared by the tests (module-level so workers can unpickle them)."""
from __future__ import annotations

import collections
import time

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info


def busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def worker_id() -> int:
    info = get_worker_info()
    return -1 if info is None else info.id


class BusyDataset(Dataset):
    """Each sample costs ``cost_s`` of busy CPU work; returns (index, worker id)."""

    def __init__(self, length: int, cost_s: float = 0.0) -> None:
        self.length = length
        self.cost_s = cost_s

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        if self.cost_s:
            busy_wait(self.cost_s)
        return torch.tensor([index, worker_id()])


Pair = collections.namedtuple("Pair", ["x", "y"])


class Record:
    """A custom sample/batch type, compared by value."""

    def __init__(self, values) -> None:
        self.values = values

    def __eq__(self, other) -> bool:
        return type(other) is Record and torch.equal(self.values, other.values)


class RichDataset(Dataset):
    """Samples that are tuples, dicts, namedtuples and custom objects, with random content."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index):
        noise = torch.rand(3)  # depends on the worker's seed: order and seeding must match
        return {"x": torch.full((2,), float(index)), "pair": Pair(index, noise), "name": f"s{index}"}


def record_collate(samples):
    return Record(torch.stack([s["x"] for s in samples]))


class FailingDataset(Dataset):
    def __len__(self) -> int:
        return 20

    def __getitem__(self, index):
        if index == 13:
            raise KeyError(f"sample {index} is corrupt")
        return torch.tensor(index)


class BatchedDataset(Dataset):
    """Defines __getitems__, so the DataLoader fetches a whole batch in one call."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index):
        return torch.tensor(index)

    def __getitems__(self, indices):
        busy_wait(0.001)
        return [torch.tensor(i) for i in indices]


class ShardedStream(IterableDataset):
    """Yields range(start, end); a worker_init_fn narrows the range per worker."""

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end

    def __iter__(self):
        for i in range(self.start, self.end):
            yield torch.tensor([i, worker_id()])


def shard_init(worker: int) -> None:
    # The pattern from the torch.utils.data docs: rewrite the worker's copy of the dataset.
    info = get_worker_info()
    dataset = info.dataset
    total = dataset.end - dataset.start
    per_worker = -(-total // info.num_workers)
    dataset.start = dataset.start + worker * per_worker
    dataset.end = min(dataset.start + per_worker, dataset.end)


class OddSlowDataset(Dataset):
    """Odd indices cost 20 ms, even ones nothing: per-sample times must tell them apart."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index):
        if index % 2:
            busy_wait(0.020)
        return torch.tensor(index)

"""DistributedDataParallel on CPU (gloo): every rank's loader profiled, one merged report.

What it models: the loop users write once they outgrow one device (the seeds' mini-batch loop,
wrapped for ``torchrun``): ``init_process_group``, a ``DistributedSampler`` giving each rank its
shard, ``DistributedDataParallel`` around a small MLP. Each sample is a 512-float feature vector
decoded from bytes and standardised in ``__getitem__`` (a few hundred microseconds of CPU, like
parsing a record). ``DLPROF_SLOW_RANK=1`` makes rank 1's reads wait 2 ms more a sample, like a
rank whose host has slower storage or a busier CPU: every step then waits for it.
``DLPROF_FETCH=io`` turns each sample's CPU work into a wait of about the same length (records
read from storage instead of parsed): ranks then stay equal on a machine whose cores are not
(tests/test_distributed.py, on a shared 2-core machine, one rank a core).

As a scan target (``dlprof scan recipes/ddp_train.py``) it is one rank's view: the same dataset
and loader with ``DistributedSampler(num_replicas=1, rank=0)`` and the plain model.
Expected: data-bound, stage fetch (cpu)
Best: on 2 cores, the whole epoch (64 batches) in flight on kept workers, e.g. num_workers=8,
prefetch_factor=8, persistent_workers=True: beside busy workers the small step runs about 10x
slower than alone, so the workers build the epoch while the step waits, then it runs alone;
more workers per rank on a machine with cores to spare

Run it: ``torchrun --nproc_per_node 2 recipes/ddp_train.py`` (trains one epoch on each rank and
writes ``reports/ddp_train/results.json`` and ``report.md`` on rank 0; ``DLPROF_OUT=DIR`` to
write elsewhere).
"""
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import dlprof

NUM_SAMPLES = 2048
NUM_FEATURES = 512
SLOW_RANK = os.environ.get("DLPROF_SLOW_RANK")
IO_FETCH = os.environ.get("DLPROF_FETCH") == "io"


class Records(Dataset):
    """Samples stored as bytes; decoding and standardising them is the per-sample CPU cost."""

    def __init__(self, rank: int = 0) -> None:
        rng = np.random.default_rng(0)
        self.blobs = [rng.normal(0, 1, NUM_FEATURES).astype(np.float32).tobytes() for _ in range(NUM_SAMPLES)]
        self.labels = rng.integers(0, 10, NUM_SAMPLES)
        self.extra_s = 0.002 if SLOW_RANK is not None and int(SLOW_RANK) == rank else 0.0

    def __len__(self) -> int:
        return NUM_SAMPLES

    def __getitem__(self, i):
        if self.extra_s:
            time.sleep(self.extra_s)  # this rank's storage answers slower
        x = np.frombuffer(self.blobs[i], dtype=np.float32)
        if IO_FETCH:
            time.sleep(0.0007)  # read, not parsed: a wait as long as the parsing below
        else:
            for _ in range(20):  # parsing and normalising: CPU work
                x = (x - x.mean()) / (x.std() + 1e-6)
        return torch.from_numpy(x.copy()), int(self.labels[i])


def build(rank: int = 0, world: int = 1):
    dataset = Records(rank)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=0)
    return DataLoader(dataset, batch_size=32, sampler=sampler, num_workers=0)


torch.manual_seed(0)
loader = build()
model = nn.Sequential(nn.Linear(NUM_FEATURES, 128), nn.ReLU(), nn.Linear(128, 10))
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.01)


def train_step(batch) -> float:
    x, y = batch
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def main() -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # ranks share the host's cores
    ddp_loader = build(rank, world)
    ddp = DDP(nn.Sequential(nn.Linear(NUM_FEATURES, 128), nn.ReLU(), nn.Linear(128, 10)))
    opt = optim.SGD(ddp.parameters(), lr=0.01)
    prof = dlprof.profile(ddp_loader)
    for epoch in range(1):
        ddp_loader.sampler.set_epoch(epoch)
        for x, y in prof:
            opt.zero_grad()
            loss = criterion(ddp(x), y)
            loss.backward()  # the all-reduce: every rank waits for the slowest here
            opt.step()
    prof.close()  # with DLPROF_OUT=DIR set, this saves the merged results there
    out = os.environ.get("DLPROF_OUT")
    if out is None:
        out = os.path.join("reports", "ddp_train")
        prof.save(os.path.join(out, "results.json"))  # collective: rank 0 writes the merged file
    if rank == 0:
        print(f"rank 0: final loss {loss.item():.4f}; merged profile of {world} ranks in {out}/")
    dist.barrier()  # rank 0 writes the merged report while the others wait: leave together
    dist.destroy_process_group()


if __name__ == "__main__":
    if "RANK" in os.environ:
        main()
    else:  # not under torchrun: one process, the plain loop
        for step, batch in enumerate(loader):
            loss = train_step(batch)
            if step % 20 == 0:
                print(f"step {step:3d}  loss {loss:.4f}")
        print(f"final loss {loss:.4f} (run with torchrun --nproc_per_node 2 for the distributed job)")

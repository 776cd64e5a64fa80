"""Costly worker start-up with short epochs (no seed: the seeds' ``persistent_workers=True``, explained).

What it models: fine-tuning on a small split of a large corpus. The dataset follows the usual
pattern for files that must not be shared across processes (HDF5, LMDB, big annotation files):
it opens its index lazily, on first access, in whichever process reads it, so each DataLoader
worker parses the corpus's JSON index itself: 400,000 entries, about 0.45 s of CPU. The split it
trains on is only 256 keyword-spotting clips, 8 batches of 32. Every sample is real CPU work:
its 2 s, 16 kHz clip is synthesised from the seed in the index (standing in for decoding the
audio) and turned into a 40-band log spectrogram with numpy's FFT, about 1 ms.

The loader is what many users write, ``num_workers=2`` with the default
``persistent_workers=False``: each epoch starts two fresh workers that parse the index again
before the first batch, and the epoch is over soon after. The step is a small MLP over the
spectrogram (9,880-64-10) with Adam, about a millisecond alone. Of an epoch of about 0.7 s,
half a second goes by before the first batch arrives. The index (33 MB) is written once,
deterministically, to ``~/.cache/dlprof/recipes/startup_cost/`` (about 2.5 s the first time;
the main process never parses it when it uses workers). Note for anyone comparing loaders in
one process: after a ``num_workers=0`` run the main process holds the parsed index, and
workers forked later inherit it, so start-up looks free; compare in fresh processes.
Expected: data-bound, stage startup
Best: persistent_workers=True (workers parse the index once, not every epoch), and on 2 cores the
whole epoch (8 batches) in flight, e.g. num_workers=8: the workers compute the epoch while the step
waits, then the step runs alone instead of competing with them

Run it: ``python recipes/startup_cost.py`` (trains three short epochs, prints the loss and each
epoch's time); profile it: ``dlprof profile recipes/startup_cost.py``.
"""
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

CORPUS_SIZE = 400_000
SPLIT_SIZE = 256
NUM_CLASSES = 10
SAMPLE_RATE = 16_000
CLIP_SECONDS = 2.0
N_FFT, HOP, NUM_BANDS = 512, 128, 40
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "dlprof", "recipes", "startup_cost")
INDEX_PATH = os.path.join(CACHE_DIR, "index.json")


def _write_index(path: str, size: int = CORPUS_SIZE, seed: int = 0) -> None:
    """The corpus's index: clip key -> label, synthesis seed, speaker; written atomically, once."""
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size).tolist()
    seeds = rng.integers(0, 2**31, size).tolist()
    speakers = rng.integers(0, 5000, size).tolist()
    index = {
        f"clips/{i // 1000:04d}/{i:07d}.wav": {"label": label, "seed": s, "speaker": f"spk{speaker:04d}"}
        for i, (label, s, speaker) in enumerate(zip(labels, seeds, speakers))
    }
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(index, fh)
    os.replace(tmp, path)


BAND_EDGES = np.linspace(0, N_FFT // 2 + 1, NUM_BANDS + 1).astype(int)  # 40 equal bands of FFT bins


class LazyIndexClips(Dataset):
    """Clips of a split, looked up in the corpus index; the index is parsed on first access."""

    def __init__(self, index_path: str, keys: list[str]) -> None:
        self.index_path = index_path
        self.keys = keys
        self.index = None  # opened lazily, once per process (each worker parses its own)
        self.window = np.hanning(N_FFT).astype(np.float32)

    def _open(self) -> None:
        with open(self.index_path, encoding="utf-8") as fh:
            self.index = json.load(fh)

    def __len__(self) -> int:
        return len(self.keys)

    def _clip(self, label: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        t = np.arange(int(SAMPLE_RATE * CLIP_SECONDS), dtype=np.float32) / SAMPLE_RATE
        tone = 0.5 * np.sin(2 * np.pi * (300 + 150 * label) * t, dtype=np.float32)
        return tone + rng.normal(0, 0.4, t.size).astype(np.float32)

    def __getitem__(self, idx):
        if self.index is None:
            self._open()
        entry = self.index[self.keys[idx]]
        clip = self._clip(entry["label"], entry["seed"])
        frames = np.lib.stride_tricks.sliding_window_view(clip, N_FFT)[::HOP] * self.window
        power = np.abs(np.fft.rfft(frames, axis=1)).astype(np.float32)
        bands = np.add.reduceat(power, BAND_EDGES[:-1], axis=1) / np.diff(BAND_EDGES)
        return torch.from_numpy(np.log1p(bands, dtype=np.float32)), entry["label"]


def _split_keys(size: int = SPLIT_SIZE, seed: int = 1) -> list[str]:
    chosen = np.sort(np.random.default_rng(seed).choice(CORPUS_SIZE, size, replace=False))
    return [f"clips/{i // 1000:04d}/{i:07d}.wav" for i in chosen]


torch.manual_seed(0)
_write_index(INDEX_PATH)
train_dataset = LazyIndexClips(INDEX_PATH, _split_keys())
loader = DataLoader(train_dataset, batch_size=32, shuffle=True, num_workers=2)

_frames = (int(SAMPLE_RATE * CLIP_SECONDS) - N_FFT) // HOP + 1
model = nn.Sequential(nn.Flatten(), nn.Linear(_frames * NUM_BANDS, 64), nn.ReLU(), nn.Linear(64, NUM_CLASSES))
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)


def train_step(batch) -> float:
    spectrograms, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(spectrograms), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    for epoch in range(3):
        start = time.perf_counter()
        for batch in loader:
            loss = train_step(batch)
        print(f"epoch {epoch + 1}  loss {loss:.4f}  ({time.perf_counter() - start:.2f} s, workers started anew)")

"""A file target whose DataLoader starts its workers by spawn or forkserver, scanned and profiled:
the workers import the target's classes by the file's own module name."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_scan import REPO, scan, write
from results_json import chosen


NOT_FORKED = """
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Squares(Dataset):  # defined in the target file: a spawned worker must import it by name
        def __len__(self):
            return 512
        def __getitem__(self, i):
            return torch.tensor([float(i * i)])

    # one worker: each started worker imports torch (seconds), and one shows the import works
    loader = DataLoader(Squares(), batch_size=16, num_workers=1, persistent_workers=True,
                        multiprocessing_context="{method}")
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_file_target_with_workers_not_forked(tmp_path, method):
    """spawn is the default on macOS and Windows, forkserver on Linux from Python 3.14. Both start
    a worker the same way for our purposes (it unpickles the dataset, importing the target's module
    by name), so the scan, whose trials take most of this test's time (a spawned worker imports
    torch: seconds each), runs under spawn only; both are profiled."""
    target = write(tmp_path, f"squares_{method}", NOT_FORKED.replace("{method}", method))
    if method == "spawn":
        proc, data = scan(target, tmp_path / "out", "--quick", "--budget", "60", "--max-workers", "1",
                          "--no-hotspots")
        assert proc.returncode == 0, proc.stderr[-3000:]
        trials = data["trials"]
        assert all(t["status"] == "ok" for t in trials), [(t["config"], t["error"]) for t in trials]
        assert {t["config"]["num_workers"] > 0 for t in trials} == {True, False}  # both kinds ran
        assert chosen(data, "baseline")["config"]["num_workers"] == 1
        assert chosen(data, "baseline")["samples_per_s"] > 0
    profiled = subprocess.run([sys.executable, "-m", "dlprof", "profile", str(target), "--epochs", "1",
                               "--out", str(tmp_path / "profile")], cwd=REPO, capture_output=True, text=True,
                              timeout=180)
    assert profiled.returncode == 0, profiled.stderr[-3000:]
    assert "worker 0:" in profiled.stdout

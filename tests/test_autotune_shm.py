"""dlprof.autotune when an explored configuration runs out of shared memory: a real, small
/dev/shm (a private tmpfs mount in its own mount namespace), real workers, nothing patched."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fault_cases import REPO, can_mount_private_shm

SCRIPT = """
import json, sys
import torch
from torch.utils.data import DataLoader, Dataset
sys.path.insert(0, {tests!r})
from test_autotune import S, Scripted
from dlprof.tuned import AutotunedLoader


class Big(Dataset):
    def __len__(self):
        return 160

    def __getitem__(self, i):
        return torch.full((256, 1024), float(i))  # 1 MiB a sample: 8 MiB a batch, /dev/shm holds 4


def indices(iterable, epochs):
    return [[int(b[j, 0, 0]) for b in iterable for j in range(len(b))] for _ in range(epochs)]


torch.manual_seed(4)
bare = indices(DataLoader(Big(), batch_size=8, shuffle=True), 2)
torch.manual_seed(4)
tuned = AutotunedLoader(DataLoader(Big(), batch_size=8, shuffle=True), sample_system=False,
                        tuner=Scripted(S(0), [S(2), S(0)], every=3))
got = indices(tuned, 2)
tuned.close()
t = tuned.tuner.tuning
print(json.dumps({{"same": got == bare, "samples": sum(map(len, got)), "failed": t.failed,
                  "explored": [w.settings.num_workers for w in t.windows]}}))
"""


def test_an_explored_configuration_out_of_shared_memory_is_left_and_no_batch_is_lost(tmp_path):
    if not can_mount_private_shm():
        pytest.skip("needs a private mount namespace (root or CAP_SYS_ADMIN) for a small /dev/shm")
    script = tmp_path / "shm_autotune.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__))))
    wrap = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs -o size=4m tmpfs /dev/shm && exec "$@"', "sh"]
    proc = subprocess.run([*wrap, sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["same"] and out["samples"] == 2 * 160, out
    assert len(out["failed"]) == 1 and "num_workers=2" in out["failed"][0], out
    assert any(s in out["failed"][0] for s in ("No space left on device", "shared memory", "Bus error")), out

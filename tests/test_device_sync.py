"""--device-sync / device_sync=True: the step's queued device work ends before the next ask is
timed. On a machine without a GPU the device is a real asynchronous executor (a thread that runs
what the step queued, as a CUDA stream runs kernels after the launch returns); tests/test_gpu.py
has the same check with CUDA."""
from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import DataLoader, TensorDataset

import dlprof
from dlprof.probe.loader import LoaderProbe
from tests.test_run import DLPROF, TWO_LOADERS, _results, _script
from tests.test_results_and_cli import REPO


class Stream:
    """Work queued by the step runs later, in order, on another thread; ``synchronize`` waits."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._last = None
        self._lock = threading.Lock()

    def launch(self, seconds: float) -> None:
        with self._lock:
            self._last = self._pool.submit(time.sleep, seconds)

    def synchronize(self) -> None:
        with self._lock:
            last = self._last
        if last is not None:
            last.result()


def _steps(sync: bool) -> tuple[list[int], list[int]]:
    stream = Stream()
    loader = DataLoader(TensorDataset(torch.arange(24)), batch_size=2)
    run = dlprof.Profiler(sample_system=False).run
    probe = LoaderProbe(loader, None, lambda: None, run.batches, run.epochs,
                        sync=stream.synchronize if sync else None)
    seen = []
    for (batch,) in probe:
        seen += batch.tolist()
        stream.launch(0.02)  # 20 ms of device work, queued: the launch returns at once
    stream.synchronize()
    return seen, sorted(b.step_ns for b in run.batches[:-1])


def test_with_sync_the_step_holds_the_work_it_queued():
    bare_seen, bare = _steps(sync=False)
    sync_seen, synced = _steps(sync=True)
    assert bare_seen == sync_seen == list(range(24))
    median_bare, median_sync = bare[len(bare) // 2] / 1e6, synced[len(synced) // 2] / 1e6
    assert median_sync >= 15  # the 20 ms of queued work (a sleep is never shorter)
    assert median_bare < median_sync / 3  # without sync the launch alone: well under the work


def test_profile_and_run_say_when_there_was_nothing_to_synchronize(tmp_path):
    """A process that never used CUDA: nothing is synchronized (no CUDA context made), and the
    profile says so; the program's output is unchanged."""
    loader = DataLoader(TensorDataset(torch.arange(8)), batch_size=2)
    prof = dlprof.profile(loader, sample_system=False, device_sync=True)
    assert [b[0].tolist() for b in prof] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert any("nothing was synchronized" in n for n in prof.result().run.notes)
    tuned = dlprof.autotune(loader, sample_system=False, device_sync=True)  # every configuration synced
    assert [b[0].tolist() for b in tuned] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    tuned.close()
    assert any("nothing was synchronized" in n for n in tuned.result().run.notes)
    assert not torch.cuda.is_initialized()

    script = _script(tmp_path, TWO_LOADERS)
    bare = subprocess.run([*DLPROF[:1], script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    out = tmp_path / "out"
    run = subprocess.run(DLPROF + ["run", "--device-sync", "--out", str(out), script], capture_output=True,
                         text=True, cwd=REPO, timeout=240)
    assert run.returncode == bare.returncode == 0, run.stderr[-2000:]
    assert run.stdout == bare.stdout
    data = _results(out)
    assert data["device_sync"] is True
    assert all(any("nothing was synchronized" in n for n in x["run"]["notes"]) for x in data["loaders"])


def test_a_device_this_machine_lacks_is_refused_before_anything_runs(tmp_path):
    """dlprof.profile(device=...), `dlprof profile --device` and a scan's trial refuse a device
    torch cannot reach here, in one line naming the fix. It used to fail at the first batch deep
    in torch ("Tried to instantiate dummy base class Event" on a CPU build with --device cuda),
    and the scan blamed the dataset. xpu: not available on CI nor on the GPU machine."""
    import re
    import sys

    import pytest

    from dlprof.errors import DlprofError
    from dlprof.scan_records import LoaderSettings
    from dlprof.sweep.target import Target
    from dlprof.sweep.trial import TrialLimits, measure

    loader = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4)
    for device, says in (("xpu", "is not available here: torch.xpu.is_available() is False"),
                         ("gpu", "is not a torch device")):
        with pytest.raises(ValueError, match=re.escape(says)):
            dlprof.profile(loader, device=device)
    with pytest.raises(DlprofError, match="use --device auto or --device cpu"):
        measure(Target("t", loader, None), None, "xpu", TrialLimits(max_seconds=1, max_epochs=1, rel_ci=0.1), "baseline")
    target = _script(tmp_path, "import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n"
                               "loader = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4)\n", "target.py")
    proc = subprocess.run([sys.executable, "-m", "dlprof", "profile", target, "--device", "xpu", "--out",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "dlprof: error: device 'xpu' is not available here: torch.xpu.is_available() is False (a CPU build of "
        "torch, or no device visible); leave the device out (no copy) or use 'cpu'"]

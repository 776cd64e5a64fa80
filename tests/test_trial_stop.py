"""When a trial stops measuring: a real loader, iterated in this process by the trial's loop."""
import json

from torch.utils.data import DataLoader

from dlprof.scan_records import LoaderSettings
from dlprof.sweep.target import Target
from dlprof.sweep.trial import TrialLimits, measure
from tests.pipelines import BusyDataset


def test_short_epochs_are_measured_until_they_make_the_blocks(tmp_path):
    # 4 batches of 8 samples, 4 ms of CPU a sample: an epoch of ~130 ms, so a 0.4 s window
    # holds only two or three of them; the 1.5 s hard limit leaves room for five
    loader = DataLoader(BusyDataset(32, cost_s=0.004), batch_size=8)
    limits = TrialLimits(max_seconds=0.4, max_epochs=None, rel_ci=1e-9, min_seconds=0.1,
                         min_batches=2, min_steady=2, hard_factor=3.75)
    settings = LoaderSettings(num_workers=0, pin_memory=False, prefetch_factor=None, persistent_workers=False, batch_size=8)
    profile = tmp_path / "profile.json"
    result = measure(Target("short", loader, None), settings, None, limits, "test", str(profile))
    epochs = [b["epoch"] for b in json.loads(profile.read_text())["batches"]]
    window = epochs[len(epochs) - result.batches:]
    assert window[-1] - window[0] >= 5  # five epoch ends in the window: blocks follow epochs
    assert result.ci_pct < 100  # an interval from those blocks, not "unknown"
    assert result.seconds < 0.4 * 3.75

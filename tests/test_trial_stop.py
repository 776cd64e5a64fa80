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
    result = measure(Target("short", loader, None), settings, None, limits, "workers", str(profile))
    epochs = [b["epoch"] for b in json.loads(profile.read_text())["batches"]]
    window = epochs[len(epochs) - result.batches:]
    assert window[-1] - window[0] >= 5  # five epoch ends in the window: blocks follow epochs
    assert result.ci_pct < 100  # an interval from those blocks, not "unknown"
    assert result.seconds < 0.4 * 3.75


def _batches(waits_ms, step_ms=10.0):
    from dlprof.records import BatchRecord

    out, t = [], 0
    for i, wait in enumerate(waits_ms):
        start, end = t, t + int(wait * 1e6)
        out.append(BatchRecord(0, i, -1, 0, 8, start, end, [], end, end, start, end, step_ns=int(step_ms * 1e6)))
        t = end + int(step_ms * 1e6)
    return out


def test_baseline_measures_on_while_its_wait_share_spans_a_cut_off():
    from dlprof.sweep.trial import _wait_undecided

    # blocks at 9% and 31% wait: a 20% share whose interval spans the data-bound cut-off
    noisy = _batches(([1.0] * 10 + [4.5] * 10) * 4)
    assert _wait_undecided(noisy)
    # the same mean share, steady: clear of both cut-offs
    assert not _wait_undecided(_batches([3.0] * 80))
    assert not _wait_undecided(_batches([0.1] * 80))


def test_a_configuration_holding_much_of_an_epoch_in_flight_is_measured_over_a_whole_epoch(tmp_path):
    """6 workers x prefetch 2 hold 12 of an epoch's 24 batches: a window inside the epoch would
    time the full queues' burst, so the trial goes on past a whole epoch, restarts included."""
    from dlprof.sweep.rules import buffer_matters

    loader = DataLoader(BusyDataset(96, cost_s=0.002), batch_size=4, num_workers=6)
    settings = LoaderSettings(num_workers=6, pin_memory=False, prefetch_factor=2, persistent_workers=False, batch_size=4)
    assert buffer_matters(settings, len(loader))
    # the same queues against an epoch of 31,250 batches: a thousandth of it
    assert not buffer_matters(settings, 31_250) and not buffer_matters(settings, None)
    # a limit that would stop inside the first epoch, and stability reached at once (rel_ci huge)
    limits = TrialLimits(max_seconds=0.05, max_epochs=None, rel_ci=10.0, min_seconds=0.01,
                         min_batches=2, min_steady=2, hard_factor=200)
    profile = tmp_path / "profile.json"
    result = measure(Target("buffered", loader, None), settings, None, limits, "workers", str(profile))
    epochs = [b["epoch"] for b in json.loads(profile.read_text())["batches"]]
    window = epochs[len(epochs) - result.batches:]
    assert window[-1] - window[0] >= 2, window  # a whole epoch, from its first batch to its last


class _Records(__import__("torch").utils.data.Dataset):
    """In-memory samples handed out one by one (batch_size=None): microseconds a batch."""

    def __len__(self):
        return 4000

    def __getitem__(self, i):
        return i


def test_the_trials_own_checks_are_not_timed_as_the_step(tmp_path):
    """A loop of microseconds a batch, measured long (a rel_ci it cannot reach): the trial's
    interval checks walk the window between two batches. They used to run every 4 batches, each
    walk as long as the window, and landed in the step's time: past a few thousand batches a
    quarter of the steps read milliseconds (a scan of such a loop read its wait share 78%, then
    11%, its step 0.49 ms against 0.009 ms). Now they run when the window grew by an eighth, and
    their time is left out of the step."""
    loader = DataLoader(_Records(), batch_size=None)
    limits = TrialLimits(max_seconds=1.5, max_epochs=None, rel_ci=1e-9, min_seconds=0.1, hard_factor=2.0)
    settings = LoaderSettings(num_workers=0, pin_memory=False, prefetch_factor=None, persistent_workers=False,
                              batch_size=None)
    profile = tmp_path / "profile.json"
    result = measure(Target("records", loader, lambda batch: None), settings, None, limits, "baseline", str(profile))
    batches = json.loads(profile.read_text())["batches"]
    assert result.batches > 5000  # windows long enough for the walks to cost milliseconds
    # stalls of over a millisecond, for a step and a wait of microseconds: a busy machine's
    # preemptions land in both, in proportion to their time (the wait is the longer); the
    # checks landed in the steps only (before: 1,374 slow steps of 12,132, and no slow wait)
    slow_steps = sum(b["step_ns"] > 1_000_000 for b in batches)
    slow_waits = sum(b["wait_end_ns"] - b["wait_start_ns"] > 1_000_000 for b in batches)
    assert slow_steps <= slow_waits + 0.002 * len(batches), (slow_steps, slow_waits, len(batches))

"""dlprof.autotune: configurations switched mid-epoch, every batch exactly once and in the
untuned loader's order; faults in an explored configuration fall back without losing or
repeating a batch. Real DataLoaders, real worker processes."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

import dlprof
from dlprof.probe import switching
from dlprof.records import MAIN_PROCESS
from dlprof.tuned import AutotunedLoader
from dlprof.scan_records import LoaderSettings
from dlprof.sweep.online import MIN_WINDOW_BATCHES, Tuner, Window
from dlprof.sweep.policy import SearchSpace


class Indexed(Dataset):
    """Sample i is i: the loop's batches say which indices it got."""

    def __init__(self, n=400, fail_at=None, kill_with_workers=None, kill_at=None, hang=False):
        self.n = n
        self.fail_at = fail_at
        self.kill_with_workers = kill_with_workers
        self.kill_at = kill_at
        self.hang = hang  # at kill_at, the worker hangs instead of dying

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise ValueError(f"corrupt sample {i}")
        info = get_worker_info()
        if info is not None and info.num_workers == self.kill_with_workers and i == self.kill_at:
            if self.hang:
                time.sleep(3600)  # a worker hangs mid-window (a network read that never returns)
            os.kill(os.getpid(), signal.SIGKILL)  # a worker dies mid-window (OOM killer, Bus error)
        return torch.tensor([i])


def S(workers, prefetch=2, persistent=False, batch_size=8):
    return LoaderSettings(num_workers=workers, pin_memory=False, prefetch_factor=prefetch if workers else None,
                          persistent_workers=persistent and workers > 0, batch_size=batch_size)


class Scripted(Tuner):
    """Switches every ``every`` measured batches through ``plan``, then settles on its last."""

    def __init__(self, baseline, plan, every=3, kept=()):
        super().__init__(SearchSpace(cores=2, max_workers=4, window_s=1.0), baseline, budget_s=1e9)
        self.plan = list(plan)
        self.every = every
        self.kept = {k.key() for k in kept}  # as two sides taking turns: their workers wait between

    def keeps(self, settings):
        return self.tuning.settled is None and settings.key() in self.kept

    def done(self, seconds, batches, rate, ci_pct, epoch_end=True):
        return batches >= self.every

    def next_settings(self, measured, window: Window):
        self.tuning.windows.append(window)
        if not self.plan:
            return self.settle(window.settings, "scripted")
        return self.plan.pop(0)

    def failed(self, settings, error, window):
        window.outcome = f"failed: {error}"
        self.tuning.windows.append(window)
        self.tuning.failed.append(f"{settings.label()}: {error}")
        self.plan = [p for p in self.plan if p.key() != settings.key()]
        return self.tuning.baseline


def _epochs(iterable, epochs, step_s=0.0):
    """Per epoch: the indices in the order the loop got them, and the errors where it got them.
    ``step_s``: the loop's step after each batch (the loop's own code runs while workers work)."""
    out = []
    for _ in range(epochs):
        seen = []
        it = iter(iterable)
        while True:
            try:
                (batch,) = [next(it)]
            except StopIteration:
                break
            except ValueError as exc:  # the loop catches a bad batch and goes on, as torch allows
                seen.append(next(line for line in str(exc).splitlines()[::-1] if "corrupt sample" in line))
                continue
            seen.extend(batch.flatten().tolist())
            if step_s:
                time.sleep(step_s)
        out.append(seen)
    return out


def _loader(ds, **kw):
    return DataLoader(ds, batch_size=8, shuffle=True, **kw)


PLANS = {
    "0 -> 2 -> 3 persistent -> 0": (S(0), [S(2), S(3, 4, True), S(0)]),
    "2 -> 0 -> 2 persistent -> 1": (S(2), [S(0), S(2, 2, True), S(1, 3)]),
    "2 persistent -> 3 -> 2 persistent": (S(2, 2, True), [S(3), S(2, 2, True), S(1)]),
}


@pytest.mark.parametrize("name", list(PLANS))
def test_switches_mid_epoch_give_the_untuned_batches_in_order(name):
    baseline, plan = PLANS[name]
    kw = dict(num_workers=baseline.num_workers, persistent_workers=baseline.persistent_workers)
    torch.manual_seed(0)
    bare = _epochs(_loader(Indexed(), **kw), 3)
    torch.manual_seed(0)
    tuned = AutotunedLoader(_loader(Indexed(), **kw), sample_system=False, tuner=Scripted(baseline, plan))
    got = _epochs(tuned, 3)
    tuned.close()
    assert got == bare  # three shuffled epochs: every index once, in the untuned order
    assert sorted(got[0]) == list(range(400)) and got[0] != got[1]
    windows = tuned.tuner.tuning.windows
    assert [w.settings for w in windows[:len(plan) + 1]] == [baseline] + plan  # every configuration served
    assert tuned.tuner.tuning.settled == plan[-1]


@pytest.mark.parametrize("settle_on", [S(0), S(2, 2, True), S(2)], ids=lambda s: s.label())
def test_once_settled_the_epochs_are_counted_not_recorded(settle_on):
    """After the decision no batch is recorded one by one (a long run would hold a record of each,
    and time it): the run's batch records stop growing, each later epoch counts its batches, the
    results say so, and the loop's batches are still the untuned loader's."""
    torch.manual_seed(8)
    bare = _epochs(_loader(Indexed(), num_workers=2, persistent_workers=True), 5)
    torch.manual_seed(8)
    tuner = Scripted(S(2, 2, True), [S(1, 3), settle_on], every=3)
    tuned = AutotunedLoader(_loader(Indexed(), num_workers=2, persistent_workers=True), sample_system=False,
                            tuner=tuner)
    got = _epochs(tuned, 2)  # settles within these (50 batches an epoch)
    recorded = len(tuned.run.batches)
    assert tuner.tuning.settled == settle_on and recorded in (50, 100)  # the epoch it settled in is whole
    got += _epochs(tuned, 3)
    assert got == bare
    assert len(tuned.run.batches) == recorded
    assert [e.batches for e in tuned.run.epochs[-3:]] == [50] * 3
    assert all(e.completed for e in tuned.run.epochs[-3:])
    notes = tuned.result().run.notes
    assert any(f"({250 - recorded} of 250 batches)" in n for n in notes), notes
    tuned.close()


def _two_open_then_one(iterable, first_n=48, at_second=lambda: None):
    """An epoch's first ``first_n`` batches, a second epoch made while it is open (``at_second``
    called just before), both drained (the first, then the second), then a third: the indices
    each gave, in order."""
    first = iter(iterable)
    got = [[b.tolist() for b in itertools.islice(first, first_n)], None, None, None]
    at_second()
    second = iter(iterable)
    got[1], got[2] = [b.tolist() for b in first], [b.tolist() for b in second]
    return got, (lambda: [b.tolist() for b in iterable])


def test_epochs_made_while_one_is_open_across_the_decision_give_the_untuned_batches():
    """A second epoch made while the first is still open, the decision taken in between, then a
    third: the loop's batches are the untuned loader's throughout, and the records kept stay
    those made (none rewritten once the probes are lean)."""
    torch.manual_seed(8)
    bare, rest = _two_open_then_one(_loader(Indexed(), num_workers=2))
    bare[3] = rest()
    torch.manual_seed(8)
    tuned = AutotunedLoader(_loader(Indexed(), num_workers=2), sample_system=False,
                            tuner=Scripted(S(2), [S(1, 3), S(0)]))
    settled_at_second = []
    got, rest = _two_open_then_one(tuned, at_second=lambda: settled_at_second.append(tuned.tuner.tuning.settled))
    assert settled_at_second == [S(0)]  # settled 47 batches in, the first epoch still open
    made = list(tuned.run.batches)
    got[3] = rest()
    assert all(a is b for a, b in zip(tuned.run.batches, made)) and len(tuned.run.batches) == len(made)
    assert got[:4] == bare and sorted(x for batch in got[3] for (x,) in batch) == list(range(400))
    tuned.close()


def test_kept_workers_wait_between_turns_and_serve_the_untuned_batches():
    """Side by side, a persistent side's workers wait through the other side's turn and resume
    mid-epoch (the same processes), with the batches still the untuned loader's."""
    side = S(2, 2, True)
    torch.manual_seed(4)
    bare = _epochs(_loader(Indexed()), 3)
    torch.manual_seed(4)
    tuner = Scripted(S(0), [side, S(0), side, S(0), side, S(0)], every=5, kept=[side])
    tuned = AutotunedLoader(_loader(Indexed()), sample_system=False, tuner=tuner)
    pids, got = [], []
    for _ in range(3):
        seen = []
        for batch in tuned:
            seen.extend(batch.flatten().tolist())
            it = getattr(tuned._configs.get(side.key()), "probe", None)
            workers = getattr(getattr(it, "_shadow", None), "_iterator", None)
            if workers is not None and tuned.current == side:
                pids.append(tuple(w.pid for w in workers._workers))
        got.append(seen)
    assert got == bare
    assert len(set(pids)) == 1 and len(pids) > 15  # three turns, one set of workers
    assert tuned._configs[side.key()].probe._shadow._iterator is None  # released once settled on 0
    tuned.close()


def test_a_window_measures_only_its_own_configurations_batches():
    """A switch when the old configuration has taken the epoch's last batches: they are still
    delivered after the switch, and the new configuration's window must not count them."""
    torch.manual_seed(5)
    tuner = Scripted(S(0), [S(2, 4), S(0), S(2, 4), S(0), S(2, 4)], every=4)
    tuned = AutotunedLoader(_loader(Indexed(96)), sample_system=False, tuner=tuner)  # 12 batches an epoch
    _epochs(tuned, 8)
    tuned.close()
    windows = [w for w in tuner.tuning.windows if w.end_ns > w.start_ns]
    assert len(windows) >= 5
    for w in windows:
        served = {b.worker_id == MAIN_PROCESS for b in tuned.run.batches if w.start_ns <= b.wait_end_ns <= w.end_ns}
        assert served == {w.settings.num_workers == 0}, w.settings.label()


class WholeEpochs(Scripted):
    """Turns of whole epochs, one each."""

    def __init__(self, baseline, plan):
        super().__init__(baseline, plan)
        self.whole_epochs = True

    def done(self, seconds, batches, rate, ci_pct, epoch_end=True):
        return True  # asked at each epoch's end


def test_turns_of_whole_epochs_switch_between_epochs_and_measure_them_whole():
    """When turns span whole epochs, each epoch is served by one configuration (no switch
    mid-epoch), the batches are still the untuned loader's, and a turn's rate is its epoch's
    samples over the epoch's wall time."""
    side = S(2, 2, True)
    torch.manual_seed(6)
    bare = _epochs(_loader(Indexed(96)), 6)
    torch.manual_seed(6)
    tuner = WholeEpochs(S(0), [side, S(0), side, S(0)])
    tuned = AutotunedLoader(_loader(Indexed(96)), sample_system=False, tuner=tuner)
    got, served = [], []
    for _ in range(6):
        first = len(tuned.run.batches)
        seen = []
        for batch in tuned:
            seen.extend(batch.flatten().tolist())
        got.append(seen)
        served.append({b.worker_id == MAIN_PROCESS for b in tuned.run.batches[first:]})
    tuned.close()
    assert got == bare
    # epoch 1: the first window (not counted: it began before turns); then one epoch a turn
    assert served == [{True}, {True}, {False}, {True}, {False}, {True}]
    turns = tuner.tuning.windows[1:]
    assert [w.settings for w in turns] == [side, S(0), side, S(0)]
    for w in turns:
        assert w.samples_per_s * (w.end_ns - w.start_ns) / 1e9 == pytest.approx(96)


def test_a_loop_that_leaves_its_epochs_early_still_ends_turns_of_whole_epochs():
    """Turns that end only at epoch ends would never end in a loop that breaks out of every
    epoch: once it left one early, turns are cut within epochs, and the batches stay the bare
    loader's."""
    def run(iterable):
        seen = []
        for _ in range(8):
            for n, (batch,) in enumerate(zip(iterable)):
                seen += batch.flatten().tolist()
                if n == 9:
                    break
        return seen

    torch.manual_seed(7)
    bare = run(_loader(Indexed()))
    torch.manual_seed(7)
    tuner = WholeEpochs(S(0), [S(2), S(0), S(2), S(0)])
    tuned = AutotunedLoader(_loader(Indexed()), sample_system=False, tuner=tuner)
    assert run(tuned) == bare
    tuned.close()
    assert not tuner.whole_epochs and len(tuner.tuning.windows) >= 3


def test_a_worker_killed_in_an_explored_configuration_loses_and_repeats_no_batch():
    kill = dict(kill_with_workers=3, kill_at=None)
    torch.manual_seed(1)
    order = [i for b in _loader(Indexed()) for i in b.flatten().tolist()]
    kill["kill_at"] = order[8 * 42 + 3]  # batch 42: mid-epoch, served by the 3-worker configuration (from ~34)
    torch.manual_seed(1)
    bare = _epochs(_loader(Indexed(**kill), num_workers=2), 2)  # the user's loader never has 3 workers
    torch.manual_seed(1)
    tuned = AutotunedLoader(_loader(Indexed(**kill), num_workers=2), sample_system=False,
                            tuner=Scripted(S(2), [S(1), S(3), S(1, 4)], every=6))
    # the loop's step sleeps: the worker dies while the loop runs its own code, not in next()
    got = _epochs(tuned, 2, step_s=0.01)
    tuned.close()
    assert got == bare
    tuning = tuned.tuner.tuning
    assert any("num_workers=3" in f for f in tuning.failed)
    assert any(w.outcome.startswith("failed:") and w.settings.num_workers == 3 for w in tuning.windows)


class SlowEvery16th(Indexed):
    """Every 16th sample takes 30 ms: with in_order=False the batches behind it arrive first."""

    def __getitem__(self, i):
        if i % 16 == 0:
            time.sleep(0.03)
        return super().__getitem__(i)


def test_out_of_order_batches_and_a_worker_killed_in_an_explored_configuration_lose_and_repeat_none(monkeypatch):
    """A loader with in_order=False delivers its workers' batches as they finish. When a worker
    of an explored configuration dies, the batches it had not delivered go to the fallback: they
    were read as the first ones taken (in order), which repeated 2 batches and lost 2 an epoch."""
    kill = dict(kill_with_workers=3, kill_at=None)
    torch.manual_seed(1)
    order = [i for b in _loader(Indexed()) for i in b.flatten().tolist()]
    kill["kill_at"] = order[8 * 42 + 3]  # mid-epoch, in the 3-worker configuration
    taps = []
    opened = switching._TapSampler.open
    monkeypatch.setattr(switching._TapSampler, "open", lambda self, stream: taps.append(opened(self, stream)) or taps[-1])
    torch.manual_seed(1)
    tuned = AutotunedLoader(_loader(SlowEvery16th(**kill), num_workers=2, in_order=False), sample_system=False,
                            tuner=Scripted(S(2), [S(1), S(3), S(1, 4)], every=6))
    got = _epochs(tuned, 2, step_s=0.005)
    tuned.close()
    assert [sorted(e) for e in got] == [list(range(400))] * 2  # each sample once an epoch, whatever the order
    # what a tap keeps to give back is what may be outstanding, not every batch it sent
    assert max(t.count for t in taps) > 30 and max(len(t.sent) for t in taps) <= 3 * 4
    assert got[0] != sorted(got[0])  # shuffled and out of order, not a degenerate run
    assert any("num_workers=3" in f for f in tuned.tuner.tuning.failed)


def test_a_worker_hung_in_an_explored_configuration_is_left_after_the_time_limit(monkeypatch):
    """The explored configuration's batch outlives its time limit (HANG_S, shortened here): the
    tuner leaves it, the user's configuration delivers that batch and the rest, none twice."""
    import dlprof.tuned

    monkeypatch.setattr(dlprof.tuned, "HANG_S", 2.0)
    hang = dict(kill_with_workers=3, kill_at=None, hang=True)
    torch.manual_seed(3)
    order = [i for b in _loader(Indexed()) for i in b.flatten().tolist()]
    hang["kill_at"] = order[8 * 30 + 3]  # batch 30: mid-epoch, served by the 3-worker configuration
    torch.manual_seed(3)
    bare = _epochs(_loader(Indexed(**hang), num_workers=2), 1)  # the user's loader never has 3 workers
    torch.manual_seed(3)
    tuned = AutotunedLoader(_loader(Indexed(**hang), num_workers=2), sample_system=False,
                            tuner=Scripted(S(2), [S(3)], every=6))
    started = time.monotonic()
    got = _epochs(tuned, 1)
    took = time.monotonic() - started
    tuned.close()
    assert got == bare
    failed = tuned.tuner.tuning.failed
    assert len(failed) == 1 and "num_workers=3" in failed[0] and "timed out after 2" in failed[0], failed
    assert took < 60  # left at its limit, not at torch's or a worker's leisure


def test_only_explored_workers_leave_torchs_sigchld_watch():
    """The user's own configuration keeps torch's handling of a dead worker (its SIGCHLD watch);
    an explored one's iterator reports its workers' death from its own next()."""
    tuned = AutotunedLoader(_loader(Indexed(), num_workers=2), sample_system=False,
                            tuner=Scripted(S(2), [S(3, 2, True)], every=3))
    watched = {}
    for _ in range(2):  # the persistent one's iterator is reset, not made again, in the second epoch
        for _ in tuned:
            for config in tuned._configs.values():
                it = config.probe._shadow._iterator or (config.probe._torch_iter and config.probe._torch_iter())
                if it is not None and getattr(it, "_workers", None):
                    watched[config.settings.num_workers] = (it._worker_pids_set, "_try_get_data" in it.__dict__)
    tuned.close()
    assert watched == {2: (True, False), 3: (False, True)}


def test_a_dataset_error_reaches_the_loop_once_where_the_untuned_loader_raises_it():
    """A bad sample fails in every configuration: the explored one gives its batch back, the
    user's configuration fails on it too, and that error reaches the loop, once, in its place;
    iteration goes on, as torch's does."""
    torch.manual_seed(2)
    order = [i for b in _loader(Indexed()) for i in b.flatten().tolist()]
    bad = order[150]
    torch.manual_seed(2)
    bare = _epochs(_loader(Indexed(fail_at=bad), num_workers=2), 2)
    assert sum(f"corrupt sample {bad}" in str(x) for x in bare[0]) == 1
    torch.manual_seed(2)
    tuned = AutotunedLoader(_loader(Indexed(fail_at=bad), num_workers=2), sample_system=False,
                            tuner=Scripted(S(2), [S(3), S(1), S(3, 4)], every=4))
    got = _epochs(tuned, 2)
    tuned.close()
    assert got == bare


def test_the_real_tuner_on_a_loader_that_waits_on_nothing_keeps_it(capsys):
    """A loop that does not wait for data: the user's configuration, kept after one window."""
    loader = DataLoader(Indexed(80), batch_size=4)

    def step():  # a GPU-style step: the host waits on the device, 100 ms a batch (a slow
        time.sleep(0.1)  # machine's fetch of 4 samples, ~2 ms, stays far under 5% of it)
    tuned = dlprof.autotune(loader, budget=20, sample_system=False)
    for _ in range(2):
        for _batch in tuned:
            step()
    tuning = tuned.tuner.tuning
    tuned.close()
    assert tuning.settled == tuning.baseline and len(tuning.windows) == 1
    assert "keeping the DataLoader as it is" in capsys.readouterr().err
    assert tuned.result().run.tuning["settled"]["num_workers"] == 0


class Slow(Dataset):
    """Each sample waits ``delay`` s (storage): workers overlap the waits. The indices do not
    depend on it: ``delay=0`` gives the untuned order fast."""

    def __init__(self, delay=0.003):
        self.delay = delay

    def __len__(self):
        return 512

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        return torch.tensor([i])


def test_the_real_tuner_explores_then_settles_and_says_so(tmp_path, capsys):
    """A data-bound loader: the tuner measures windows of other settings and settles; whatever it
    settles on, the batches are the untuned loader's, and the result, the summary and the HTML
    report show the windows and the decision."""
    torch.manual_seed(3)
    # a budget that holds windows of 5 s (a noisy machine's) and the pairs' reserve after them
    tuned = dlprof.autotune(DataLoader(Slow(), batch_size=8, shuffle=True), budget=45)
    got = []
    while tuned.tuner.tuning.settled is None and len(got) < 200:  # about 0.15 s an epoch once tuned
        got += _epochs(tuned, 1)
    got += _epochs(tuned, 2)  # and after it settled
    tuned.close()
    torch.manual_seed(3)
    assert got == _epochs(DataLoader(Slow(delay=0), batch_size=8, shuffle=True), len(got))
    tuning = tuned.result().run.tuning
    assert tuning["settled"] is not None and len(tuning["windows"]) >= 2
    assert tuning["windows"][0]["samples_per_s"] > 0 and tuning["windows"][1]["settings"]["num_workers"] > 0
    assert tuning["receive_ms"] is None  # timed only for an iterable dataset's loop without workers
    # the windows after the first epoch knew its length (the records' epochs are segments)
    later = [t.samples_per_epoch for t in tuned.tuner.state.trials()[1:]]
    assert later and set(later) == {512}
    text = tuned.result().format_summary()
    assert "autotune: " in text and "configuration; purpose: outcome" in text
    assert "dlprof.autotune: " in capsys.readouterr().err  # printed once, when settled
    tuned.save(tmp_path / "results.json")
    again = dlprof.load(tmp_path / "results.json")
    assert again.run.tuning == tuning
    assert "autotune windows" in again._repr_html_()
    written = tuned.save_reports(tmp_path / "reports")  # the page and report.md with the windows' plot
    assert [os.path.basename(p) for p in written] == ["report.html", "report.md", "trace.json"]
    assert "autotune windows" in (tmp_path / "reports" / "report.html").read_text()
    assert (tmp_path / "reports" / "plot-autotune.svg").read_text().startswith("<svg")


class Stream(torch.utils.data.IterableDataset):
    """Samples 0..n-1 split between the workers by ``get_worker_info()``; a worker of a
    ``kill_with_workers``-worker loader dies at sample ``kill_at``."""

    def __init__(self, n=64, kill_with_workers=None, kill_at=None):
        self.n, self.kill_with_workers, self.kill_at = n, kill_with_workers, kill_at

    def __iter__(self):
        info = get_worker_info()
        start, step = (info.id, info.num_workers) if info else (0, 1)
        for i in range(start, self.n, step):
            if info is not None and info.num_workers == self.kill_with_workers and i == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            yield torch.tensor([i])


def _stream_loader(ds, s=None, **kw):
    if s is not None:
        kw = dict(num_workers=s.num_workers, prefetch_factor=s.prefetch_factor,
                  persistent_workers=s.persistent_workers, **kw)
    return DataLoader(ds, batch_size=4, **kw)


def SI(workers, prefetch=2, persistent=False):
    return S(workers, prefetch, persistent, batch_size=4)


def _corrupt(batch):
    if any(int(x) == 21 for x in batch):
        raise ValueError("corrupt sample 21")
    return torch.stack(batch)


def test_an_iterable_dataset_switches_only_between_epochs():
    """Each epoch of an iterable dataset is served whole by one configuration: its batches are
    those a plain DataLoader of that configuration gives, every sample once, and torch's random
    state after the epochs is the untuned loader's."""
    plan = [SI(3), SI(0), SI(1, 4, True), SI(3, 2, True)]
    torch.manual_seed(3)
    _epochs(_stream_loader(Stream(), num_workers=2), 6)
    after_bare = torch.rand(3)
    torch.manual_seed(3)
    tuner = WholeEpochs(SI(2), plan)
    tuned = AutotunedLoader(_stream_loader(Stream(), num_workers=2), sample_system=False, tuner=tuner)
    got, workers = [], []
    for _ in range(6):
        first = len(tuned.run.batches)
        got.append(_epochs(tuned, 1)[0])
        workers.append({b.worker_id for b in tuned.run.batches[first:]})
    after_tuned = torch.rand(3)
    tuned.close()
    served = [SI(2)] + plan + [plan[-1]]  # then settled on the plan's last
    for epoch, s, ids in zip(got, served, workers):
        assert epoch == _epochs(_stream_loader(Stream(), s), 1)[0], s.label()
        assert sorted(epoch) == list(range(64))
    for s, ids in zip(served[:5], workers):  # the settled epoch is counted, not recorded
        assert ids == ({MAIN_PROCESS} if s.num_workers == 0 else set(range(s.num_workers)))
    assert workers[5] == set() and tuned.run.epochs[-1].batches == len(list(_stream_loader(Stream(), plan[-1])))
    assert torch.equal(after_tuned, after_bare)
    assert tuner.tuning.settled == plan[-1] and [w.settings for w in tuner.tuning.windows] == served[:5]


def test_an_iterable_loop_that_leaves_its_epochs_early_still_ends_its_turns():
    """A step limit (a ``break`` every epoch): each turn ends at its epoch's last batch and the
    next epoch is served by the next configuration."""
    plan = [SI(3), SI(0), SI(1)]
    tuner = WholeEpochs(SI(2), plan)
    tuned = AutotunedLoader(_stream_loader(Stream(), num_workers=2), sample_system=False, tuner=tuner)
    got = []
    for _ in range(5):
        seen = []
        for n, batch in enumerate(tuned):
            seen += batch.flatten().tolist()
            if n == 5:
                break
        got.append(seen)
    tuned.close()
    served = [SI(2)] + plan + [plan[-1]]
    assert got == [_epochs(_stream_loader(Stream(), s), 1)[0][:24] for s in served]
    assert [w.settings for w in tuner.tuning.windows] == served[:4]
    assert all(w.end_ns > w.start_ns and w.samples_per_s > 0 for w in tuner.tuning.windows)


def test_a_worker_killed_in_an_explored_iterable_epoch_ends_it_with_a_warning_and_no_repeat():
    """An iterable's epoch cannot go on in another worker count: it ends where the explored
    configuration failed, says how many samples it delivered, repeats none; the next epochs are
    the configuration that worked."""
    ds = Stream(kill_with_workers=3, kill_at=30)
    tuner = WholeEpochs(SI(2), [SI(3)])
    tuned = AutotunedLoader(_stream_loader(ds, num_workers=2), sample_system=False, tuner=tuner)
    first = _epochs(tuned, 1)[0]
    with pytest.warns(RuntimeWarning, match=r"num_workers=3.*failed mid-epoch.*ended after \d+ samples"):
        broken = _epochs(tuned, 1, step_s=0.02)[0]  # the worker dies while the loop is in its step
    rest = _epochs(tuned, 2)
    tuned.close()
    plain = _epochs(_stream_loader(Stream(), num_workers=2), 1)[0]
    assert first == plain and rest == [plain, plain]  # the fallback (the user's), then settled on it
    assert len(broken) == len(set(broken)) and 0 < len(broken) < 64
    assert broken == _epochs(_stream_loader(Stream(), SI(3)), 1)[0][:len(broken)]
    failed = tuner.tuning.failed
    assert len(failed) == 1 and "num_workers=3" in failed[0] and f"ended after {len(broken)} samples" in failed[0]


def test_a_dataset_error_in_an_explored_iterable_epoch_reaches_the_loop_and_the_epoch_goes_on():
    """The dataset's own error is not the configuration's: it reaches the loop as torch raises
    it, iteration goes on, and the explored configuration serves its whole epoch."""
    tuner = WholeEpochs(SI(2), [SI(3), SI(0)])
    tuned = AutotunedLoader(_stream_loader(Stream(), num_workers=2, collate_fn=_corrupt), sample_system=False,
                            tuner=tuner)
    got = _epochs(tuned, 3)
    tuned.close()
    for epoch, s in zip(got, [SI(2), SI(3), SI(0)]):
        assert epoch == _epochs(_stream_loader(Stream(), s, collate_fn=_corrupt), 1)[0], s.label()
        assert sum("corrupt sample 21" in str(x) for x in epoch) == 1 and len(epoch) == 60 + 1
    assert not tuner.tuning.failed


def test_a_worker_failure_is_told_from_the_datasets_own_error():
    """A broken pipe of a worker's batch (bare EOFError) is the workers'; the same type raised
    by the dataset comes wrapped by torch, or raw without workers: the dataset's."""
    from dlprof.tuned_epochs import worker_failure
    assert worker_failure(EOFError(), 2) and worker_failure(ConnectionResetError(104, "reset"), 3)
    assert worker_failure(RuntimeError("DataLoader worker (pid 123) is killed by signal: Killed."), 2)
    assert worker_failure(RuntimeError("DataLoader timed out after 60 seconds"), 2)
    assert not worker_failure(EOFError(), 0)
    assert not worker_failure(EOFError("Caught EOFError in DataLoader worker process 0.\nOriginal Traceback"), 2)
    assert not worker_failure(ValueError("corrupt sample 21"), 2)


class SlowStream(Stream):
    """Each sample waits 2 ms (storage): workers overlap the waits."""

    def __iter__(self):
        for x in super().__iter__():
            time.sleep(0.002)
            yield x


def test_the_real_tuner_explores_an_iterable_dataset_between_epochs_and_settles():
    """The real decisions on an iterable dataset: windows of whole epochs, one configuration an
    epoch (its workers' ids), every sample once an epoch, and a decision with its reason."""
    # a budget that holds windows of 5 s (a noisy machine's) and the pairs' reserve after them
    tuned = dlprof.autotune(_stream_loader(SlowStream(n=96)), budget=45, sample_system=False, explore_epochs=True)
    served, epochs = [], []
    while tuned.tuner.tuning.settled is None and len(epochs) < 400:
        served.append(tuned.current)
        first = len(tuned.run.batches)
        epochs.append(_epochs(tuned, 1)[0])
        ids = {b.worker_id for b in tuned.run.batches[first:]}
        assert ids == ({MAIN_PROCESS} if served[-1].num_workers == 0 else set(range(served[-1].num_workers)))
    tuned.close()
    assert all(sorted(e) == list(range(96)) for e in epochs)
    tuning = tuned.result().run.tuning
    assert tuning["settled"] is not None and tuning["reason"]
    assert any(s.num_workers > 0 for s in served) and len(tuning["windows"]) >= 2
    # the first batch timed what receiving one from a worker costs: small against its 8 ms fetch
    assert 0 < tuning["receive_ms"] < 8
    assert "receiving a batch from a worker would cost" in tuned.result().format_summary()
    for w in tuning["windows"]:  # whole epochs: a window holds one epoch at least
        assert (w["end_ns"] - w["start_ns"]) / 1e9 * w["samples_per_s"] >= 0.99 * 96


def test_by_default_an_iterable_dataset_keeps_its_configuration_and_says_what_workers_could_gain():
    """No epoch is explored unless asked: the user's configuration serves every epoch, and the
    decision says what workers could gain at most (the waits are the storage's: several times).
    With nothing to explore, the decision comes after the first epoch, whatever its interval,
    and no sampler process runs (the default asks for one): the process's CPU is read in it."""
    before = {p.pid for p in psutil.Process().children()}  # other tests' processes
    tuned = dlprof.autotune(_stream_loader(SlowStream(n=96)), budget=45)
    epochs = []
    while tuned.tuner.tuning.settled is None and len(epochs) < 50:
        first = len(tuned.run.batches)
        epochs.append(_epochs(tuned, 1)[0])
        assert {b.worker_id for b in tuned.run.batches[first:]} == {MAIN_PROCESS}
        assert {p.pid for p in psutil.Process().children()} <= before  # no sampler process (nor worker)
    assert len(epochs) == 1
    epochs.append(_epochs(tuned, 1)[0])
    tuned.close()
    assert all(sorted(e) == list(range(96)) for e in epochs)
    tuning = tuned.result().run.tuning
    assert tuning["settled"] == tuning["baseline"] and len(tuning["windows"]) == 1
    assert "explore_epochs=True" in tuning["reason"] and "at most" in tuning["reason"], tuning["reason"]
    ceiling = float(tuning["reason"].split("at most ")[1].split("x")[0])
    assert ceiling > 2, tuning["reason"]
    # the loop sleeps on its storage 2 ms a sample: a small share of a core, read in-process
    main_cpu_pct = tuned.tuner.state.seen[tuned.tuner.tuning.baseline.key()].main_cpu_pct
    assert 0 < main_cpu_pct < 80, main_cpu_pct


def test_a_long_iterable_epoch_is_recorded_for_one_window_then_counted():
    """A tuner that keeps the configuration whatever it measures (an iterable dataset, nothing
    explored) decides within a first epoch longer than a window (at most MAX_WINDOW_S, 5 s, of
    a 6 s epoch here): the rest of that epoch is counted, not recorded batch by batch, with the
    same samples in the same order, and the decision has what workers could gain."""
    n = 3000  # 750 batches of 4, 8 ms each
    tuned = dlprof.autotune(_stream_loader(SlowStream(n=n)), budget=45)
    served = _epochs(tuned, 1)[0]
    tuned.close()
    assert served == list(range(n))
    tuning = tuned.result().run.tuning
    assert tuning["settled"] == tuning["baseline"] and len(tuning["windows"]) == 1
    assert "at most" in tuning["reason"], tuning["reason"]
    recorded, epoch = len(tuned.run.batches), tuned.run.epochs[0]
    assert epoch.batches == n // 4 and epoch.completed
    assert MIN_WINDOW_BATCHES <= recorded < 0.9 * epoch.batches, (recorded, epoch.batches)
    main_cpu_pct = tuned.tuner.state.seen[tuned.tuner.tuning.baseline.key()].main_cpu_pct
    assert 0 < main_cpu_pct < 80, main_cpu_pct  # the window's own CPU, read in the process


class PacedStream(Stream):
    """Each sample waits 10 ms (40 ms a batch of 4: a busy machine's late wake-ups of a few ms stay
    a small part of a batch), after ``start_s`` of start-up in each iterator (a file opened)."""

    def __init__(self, n, start_s=0.0):
        super().__init__(n)
        self.start_s = start_s

    def __iter__(self):
        time.sleep(self.start_s)
        for x in super().__iter__():
            time.sleep(0.01)
            yield x


def test_an_iterable_window_takes_one_epoch_when_one_measures_it_and_more_when_start_up_varies():
    """A window of whole epochs ends after one epoch when that epoch's interval (its batches',
    and its start-up's share) is within the window's; an epoch whose start-up is an eighth of it
    measures over more. Epochs of 3 s: under the 5 s that ends a window whatever its interval.
    (A tuner asked to explore: one that explores nothing ends its window after one epoch.)"""
    def first_window_epochs(ds):
        tuned = dlprof.autotune(_stream_loader(ds), budget=60, sample_system=False, explore_epochs=True)
        epochs = 0
        while not tuned.tuner.tuning.windows and epochs < 6:
            _epochs(tuned, 1)
            epochs += 1
        tuned.close()
        return epochs

    steady, slow_start = first_window_epochs(PacedStream(300)), first_window_epochs(PacedStream(300, start_s=0.4))
    assert steady == 1 and slow_start >= 2, (steady, slow_start)


def test_a_break_mid_epoch_then_more_epochs_match_the_untuned_loader():
    """A loop that leaves an epoch early (a ``break``) mid-switch: the next epoch starts afresh,
    as with the bare loader, and the workers of the dropped epoch end."""
    def run(iterable):
        seen = []
        for epoch in range(3):
            for n, (batch,) in enumerate(zip(iterable)):
                seen += batch.flatten().tolist()
                if epoch == 1 and n == 20:
                    break
        return seen

    before = {p.pid for p in psutil.Process().children(recursive=True)}  # other tests' processes

    def ours():
        return [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]

    torch.manual_seed(4)
    bare = run(_loader(Indexed(), num_workers=2))
    torch.manual_seed(4)
    tuned = AutotunedLoader(_loader(Indexed(), num_workers=2), sample_system=False,
                            tuner=Scripted(S(2), [S(1), S(3, 4, True), S(0), S(2)], every=5))
    assert run(tuned) == bare
    # the kept workers of the configurations left behind ended when they were left; the last
    # epoch's workers with it (not persistent): no worker process remains, as with the bare loader
    deadline = time.monotonic() + 10
    while ours() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ours() == []
    tuned.close()


class Augmented(Dataset):
    """Sample i is (i, a random draw), as a dataset that augments with torch's generator."""

    def __len__(self):
        return 96

    def __getitem__(self, i):
        return torch.tensor([float(i), torch.rand(1).item()])


def _indices_and_step_draws(iterable, epochs=3):
    """Per epoch: the indices in the loop's order, then the step's own random draws (dropout)."""
    out = []
    for _ in range(epochs):
        indices, draws = [], []
        for batch in iterable:
            indices += batch[:, 0].long().tolist()
            draws.append(torch.rand(1).item())
        out.append((indices, draws))
    return out


def test_a_configuration_without_workers_leaves_the_loops_random_draws_as_the_untuned_loaders():
    """Written with workers, the dataset's random draws happen in them. A configuration without
    workers fetches under a generator of its own, so the step's draws and the next epochs'
    shuffle (both from torch's global generator) are the untuned loader's."""
    torch.manual_seed(2)
    bare = _indices_and_step_draws(DataLoader(Augmented(), batch_size=4, shuffle=True, num_workers=2))
    torch.manual_seed(2)
    tuned = AutotunedLoader(DataLoader(Augmented(), batch_size=4, shuffle=True, num_workers=2), sample_system=False,
                            tuner=Scripted(S(2, batch_size=4), [S(0, batch_size=4), S(2, 2, True, batch_size=4),
                                                                S(0, batch_size=4)], every=4))
    got = _indices_and_step_draws(tuned)
    assert [w.settings.num_workers for w in tuned.tuner.tuning.windows] == [2, 0, 2, 0]
    tuned.close()
    assert got == bare
    assert tuned.main_draws is None and not any("random generator" in n for n in tuned.result().run.notes)


@pytest.mark.parametrize("own_generator", [False, True])
def test_a_dataset_drawing_in_the_training_process_is_noted_and_a_loader_generator_keeps_the_order(own_generator):
    """Written without workers, the dataset's draws advance the generator the next epoch's
    shuffle draws from; served by workers, they do not (as with num_workers changed by hand).
    Every epoch still gives each sample once, the results say why the order may differ, and a
    DataLoader generator keeps the untuned order."""
    def make():
        g = torch.Generator().manual_seed(7) if own_generator else None
        return DataLoader(Augmented(), batch_size=4, shuffle=True, generator=g)

    torch.manual_seed(3)
    bare = [indices for indices, _ in _indices_and_step_draws(make())]
    torch.manual_seed(3)
    tuned = AutotunedLoader(make(), sample_system=False,
                            tuner=Scripted(S(0, batch_size=4), [S(2, batch_size=4), S(0, batch_size=4)], every=6))
    got = [indices for indices, _ in _indices_and_step_draws(tuned)]
    tuned.close()
    assert tuned.tuner.tuning.settled == S(0, batch_size=4)  # back to none: nothing more to print
    assert all(sorted(epoch) == list(range(96)) for epoch in got)
    assert got[0] == bare[0]  # the first epoch's order was drawn before any switch
    assert (got == bare) == own_generator
    assert tuned.main_draws == ["torch"]
    assert any("torch's global random generator in the training process" in n and "shuffle" in n
               for n in tuned.result().run.notes)


def test_a_dataset_that_draws_nothing_gets_no_note():
    torch.manual_seed(3)
    tuned = AutotunedLoader(_loader(Indexed(96)), sample_system=False,
                            tuner=Scripted(S(0), [S(2), S(0)], every=4))
    _epochs(tuned, 2)
    tuned.close()
    assert tuned.main_draws == [] and not any("random generator" in n for n in tuned.result().run.notes)


class NumpyAugmented(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.tensor([float(i), float(np.random.rand())])


def test_a_dataset_drawing_from_numpy_in_the_training_process_is_noted_without_the_shuffle():
    """numpy's generator is not the shuffle's: the order stays the untuned loader's, only the
    augmentations move to the workers' generators, and the note says only that."""
    torch.manual_seed(3)
    np.random.seed(0)
    bare = [i for i, _ in _indices_and_step_draws(DataLoader(NumpyAugmented(), batch_size=4, shuffle=True))]
    torch.manual_seed(3)
    np.random.seed(0)
    tuned = AutotunedLoader(DataLoader(NumpyAugmented(), batch_size=4, shuffle=True), sample_system=False,
                            tuner=Scripted(S(0, batch_size=4), [S(2, batch_size=4), S(0, batch_size=4)], every=4))
    got = [i for i, _ in _indices_and_step_draws(tuned)]
    tuned.close()
    assert got == bare and tuned.main_draws == ["numpy"]
    (note,) = [n for n in tuned.result().run.notes if "random generator" in n]
    assert "numpy's" in note and "shuffle" not in note


def test_settling_on_workers_for_a_dataset_drawing_in_the_training_process_prints_the_note(capsys):
    tuned = AutotunedLoader(DataLoader(Augmented(), batch_size=4, shuffle=True), sample_system=False,
                            tuner=Scripted(S(0, batch_size=4), [S(2, batch_size=4)], every=4))
    _indices_and_step_draws(tuned, 2)
    tuned.close()
    err = capsys.readouterr().err
    assert "num_workers=2" in err and "note: the dataset draws from torch's global random generator" in err


@pytest.mark.parametrize("users", [S(0), S(2), S(2, 2, True)], ids=["0 workers", "2 workers", "2 persistent"])
def test_epochs_iterated_at_once_give_the_untuned_batches(users):
    """zip(loader, loader) (pairs for mixup), and an iterator kept while another epoch runs:
    the batches are the untuned loader's, with switches to persistent configurations in both.
    Without persistent workers each iter() is a pass of its own; with them torch has one
    iterator, which each iter() resets (a kept one then gives the new epoch's batches). The
    configurations without workers used to take the newest epoch's indices (IndexError), and a
    persistent one's iterator, reset by the second epoch, broke the first."""
    kw = dict(num_workers=users.num_workers, persistent_workers=users.persistent_workers)

    def loop(loader):
        out = [[(a.flatten().tolist(), b.flatten().tolist()) for a, b in zip(loader, loader)]]
        kept = iter(loader)
        out.append(next(kept).flatten().tolist())
        out.append([b.flatten().tolist() for b in loader])
        out.append([b.flatten().tolist() for b in kept])
        return out

    torch.manual_seed(8)
    bare = loop(_loader(Indexed(240), **kw))
    torch.manual_seed(8)
    tuner = Scripted(users, [S(2, 2, True), S(0), S(3, 2, True), S(1)], every=3)
    tuned = AutotunedLoader(_loader(Indexed(240), **kw), sample_system=False, tuner=tuner)
    got = loop(tuned)
    tuned.close()
    assert got == bare
    assert len(tuner.tuning.windows) >= 4  # the plan's configurations served
    if users.persistent_workers:  # one pass, shared: the kept iterator ended with the new epoch
        assert got[3] == [] and sum(len(a) + len(b) for a, b in got[0]) == 240
    else:
        assert sorted(x for a, b in got[0] for x in a) == list(range(240)) and len(got[3]) == 29


def test_the_tuner_tries_no_more_workers_than_an_epochs_batches():
    """Three batches an epoch: a fourth worker never gets a batch (torch hands them out from
    worker 0 each epoch), so the tuner's search stops at three."""
    tuned = dlprof.autotune(DataLoader(Indexed(10), batch_size=4), sample_system=False)
    assert tuned.tuner.space.max_workers == 3
    tuned.close()
    stream = dlprof.autotune(DataLoader(Stream(), batch_size=4), sample_system=False)
    assert stream.tuner.space.max_workers >= 16  # an iterable dataset: epoch length unknown
    stream.close()


def test_an_iterator_kept_open_does_not_cost_the_settled_configuration_its_kept_workers():
    """``it = iter(loader); sample = next(it)`` kept in a variable while training: that epoch stays
    open, yet the epochs after it share the settled persistent configuration's workers (only a
    persistent iterator that another open epoch holds is made apart), and the batches are the
    untuned loader's."""
    side = S(2, 2, True)
    torch.manual_seed(9)
    bare_loader = _loader(Indexed(96))
    bare_kept = iter(bare_loader)
    bare = [next(bare_kept).flatten().tolist()] + _epochs(bare_loader, 4)
    torch.manual_seed(9)
    tuned = AutotunedLoader(_loader(Indexed(96)), sample_system=False, tuner=Scripted(S(0), [side], every=3))
    kept = iter(tuned)
    got = [next(kept).flatten().tolist()]
    pids = []
    for _ in range(4):
        got += _epochs(tuned, 1)
        workers = tuned._configs[side.key()].probe._shadow._iterator
        pids.append(tuple(w.pid for w in workers._workers) if workers is not None else None)
    assert got == bare
    assert tuned.tuner.tuning.settled == side
    assert pids[1] is not None and len(set(pids[1:])) == 1, pids  # the same processes, epoch after epoch
    tuned.close()


_NO_PANDAS_SCRIPT = """
import sys, time, torch
from torch.utils.data import DataLoader, Dataset
import dlprof

class Slow(Dataset):
    def __len__(self):
        return 256
    def __getitem__(self, i):
        time.sleep(0.002)
        return torch.tensor([i])

tuned = dlprof.autotune(DataLoader(Slow(), batch_size=8), budget=20)
for _ in range(1000):  # 30 ms an epoch once on workers
    for batch in tuned:
        pass
    if tuned.tuner.tuning.settled is not None:
        break
for batch in tuned:  # a settled epoch
    pass
tuned.close()
result = tuned.result()
print(len(tuned.tuner.tuning.windows), tuned.tuner.tuning.settled is not None, "pandas" in sys.modules)
result.format_summary()
print("pandas" in sys.modules)
"""


def test_the_training_process_never_imports_pandas_for_the_tuner(tmp_path):
    """Importing pandas made a plain loop of stream.py 2-3% slower for the rest of the process (an
    import, nothing called): windows, decisions and the result are computed without it; only asking
    for an analysis (summary, DataFrames) imports it."""
    script = tmp_path / "train.py"
    script.write_text(_NO_PANDAS_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    windows, settled, before, after = out.stdout.split()
    assert int(windows) >= 2 and settled == "True" and before == "False" and after == "True"

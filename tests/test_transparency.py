"""A profiled loader behaves like the bare one in what PyTorch's own DataLoader tests check:
iteration goes on after a caught exception, torch's iterator attributes are there, workers end
when the loop drops the iterator, the IterableDataset length warning fires, and the start method
stays free to set; the loader's own attributes (``dataset``, ``sampler``) read through the
profiled and the autotuned loader. Real workers throughout."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import dlprof
from tests.pipelines import BusyDataset, FailingDataset
from tests.test_results_and_cli import REPO


def outcomes(iterable) -> list:
    """Every batch, and each error caught, the loop going on after it (as a user's loop that skips
    a corrupt batch does)."""
    out = []
    it = iter(iterable)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return out
        except KeyError as exc:
            out.append(("KeyError", "sample 13 is corrupt" in str(exc)))
            continue
        out.append(batch.tolist())


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iteration_goes_on_after_a_caught_exception(num_workers):
    loader = DataLoader(FailingDataset(), batch_size=4, num_workers=num_workers)
    bare = outcomes(loader)
    prof = dlprof.profile(loader, sample_system=False)
    profiled = outcomes(prof)
    assert ("KeyError", True) in bare and len(bare) == 5  # batches 0-2, the error, batch 4
    assert profiled == bare
    epoch = prof.profiler.run.epochs[0]
    assert epoch.completed and epoch.batches == 4  # the epoch ran to its end, one batch lost to the error


def test_the_iterator_has_torchs_attributes():
    loader = DataLoader(BusyDataset(16), batch_size=4, num_workers=2)
    bare = iter(loader)
    it = iter(dlprof.profile(loader, sample_system=False))
    for name in ("_workers", "_num_workers", "_dataset_kind", "_sampler_iter", "_pin_memory"):
        assert hasattr(it, name) == hasattr(bare, name), name
    assert len(it._workers) == 2
    with pytest.raises(AttributeError):
        it.no_such_attribute
    del bare, it


def _workers_alive_after_break(iterable) -> tuple[int, float]:
    """Leave a loop after the first batch: how many of its workers are alive 5 s later at most,
    and the seconds until none is."""
    it = iter(iterable)
    next(it)
    procs = list(it._workers)
    del it  # the `for` loop's `break` drops its iterator the same way
    began = time.monotonic()
    while any(p.is_alive() for p in procs) and time.monotonic() - began < 5:
        time.sleep(0.01)
    return sum(p.is_alive() for p in procs), time.monotonic() - began


def test_workers_end_when_the_loop_leaves_with_the_profile_still_held():
    loader = DataLoader(BusyDataset(64), batch_size=4, num_workers=2)
    bare_alive, bare_s = _workers_alive_after_break(loader)
    prof = dlprof.profile(loader, sample_system=False)  # held, as `dlprof run` holds one per loader
    alive, seconds = _workers_alive_after_break(prof)
    assert bare_alive == 0 and alive == 0
    assert seconds < max(2.0, 10 * bare_s)
    assert prof.profiler.run.epochs[0].batches == 1


class _LongerThanItsLength(IterableDataset):
    def __len__(self) -> int:
        return 4

    def __iter__(self):
        return iter(range(6))


def _warned(iterable) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(iterable)
    return any("Length of IterableDataset" in str(w.message) for w in caught)


def test_the_length_warning_of_an_iterable_dataset_fires_in_every_epoch():
    loader = DataLoader(_LongerThanItsLength(), batch_size=None)
    prof = dlprof.profile(loader, sample_system=False)  # made before len() is called
    len(loader)  # arms torch's warning, on the user's loader
    assert _warned(loader)
    assert _warned(prof) and _warned(prof)  # one profile across epochs


def test_the_start_method_can_still_be_set_after_a_profile():
    code = textwrap.dedent("""
        import multiprocessing, os, tempfile
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        import dlprof
        prof = dlprof.profile(DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4), sample_system=False)
        list(prof)
        prof.save(os.path.join(tempfile.mkdtemp(), "results.json"))
        multiprocessing.set_start_method("spawn")
        print(multiprocessing.get_start_method())
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "spawn"


def test_notebooks_show_results_as_html(tmp_path):
    loader = DataLoader(BusyDataset(32), batch_size=4, num_workers=2)
    prof = dlprof.profile(loader, sample_system=False)
    for _ in prof:
        pass
    html = prof._repr_html_()
    assert html.startswith("<div class='dlprof'>") and "data:image/svg+xml;base64," in html
    assert "fetch" in html and prof.result().analyse().verdict in html
    prof.save(tmp_path / "results.json")
    assert type(dlprof.load(tmp_path / "results.json")).__name__ == "ProfileResult"


def test_an_epoch_left_by_an_exception_ends_when_it_was_raised():
    prof = dlprof.profile(DataLoader(FailingDataset(), batch_size=4), sample_system=False)
    it = iter(prof)
    with pytest.raises(KeyError):
        for _ in range(5):
            next(it)
    raised = time.perf_counter_ns()
    time.sleep(0.3)  # the loop holds the iterator a while before dropping it
    del it
    epoch = prof.profiler.run.epochs[0]
    assert not epoch.completed and epoch.batches == 3
    assert epoch.end_ns <= raised  # not the time the iterator was dropped


@pytest.mark.parametrize("wrap", ["profile", "autotune"])
def test_the_loaders_own_attributes_read_through_as_a_training_loop_uses_them(wrap):
    """The seed's loop divides by ``len(data_loader.dataset)``; a DistributedSampler's loop calls
    ``loader.sampler.set_epoch(epoch)`` to reshuffle: both run unchanged on the wrapper, and the
    epochs' batches are the bare loader's, each epoch shuffled as set."""
    from torch.utils.data import TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    dataset = TensorDataset(torch.arange(40.0))

    def make():
        sampler = DistributedSampler(dataset, num_replicas=2, rank=0, shuffle=True, seed=3)
        return DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=2)

    def epochs(loader):
        seen = []
        for epoch in range(3):
            loader.sampler.set_epoch(epoch)
            total = sum(float(x.sum()) for (x,) in loader)
            seen.append((total / len(loader.dataset), [x.tolist() for (x,) in loader]))
        return seen

    bare = make()
    wrapped = getattr(dlprof, wrap)(make())
    try:
        for name in ("dataset", "sampler", "batch_sampler", "batch_size", "drop_last", "num_workers",
                     "collate_fn", "generator"):
            assert getattr(wrapped, name) == getattr(wrapped.loader, name), name
        assert len(wrapped.dataset) == len(bare.dataset) == 40
        assert wrapped.batch_size == 4 and wrapped.num_workers == 2
        got, want = epochs(wrapped), epochs(bare)
        assert got == want
        assert want[0][1] != want[1][1]  # set_epoch reshuffled: the test can tell epochs apart
        with pytest.raises(AttributeError):
            wrapped.no_such_attribute
    finally:
        wrapped.close()


class _PermutedBatches(torch.utils.data.Sampler):
    """A batch sampler that draws its order when iter() is called, not at its first batch (as
    custom samplers that return an iterator do)."""

    def __len__(self):
        return 6

    def __iter__(self):
        return iter(torch.randperm(48).view(6, 8).tolist())


@pytest.mark.parametrize("kw", [dict(num_workers=0), dict(num_workers=2),
                                dict(num_workers=2, persistent_workers=True)], ids=["0", "2", "2 persistent"])
def test_epochs_iterated_at_once_are_the_bare_loaders(kw):
    """zip(loader, loader), an iterator kept while another epoch runs, and random draws between
    iter() and the first batch, with a shuffle and with a batch sampler that draws at iter(): the
    profiled loader gives the bare one's batches (the autotuned one: tests/test_autotune.py)."""
    def loop(loader):
        out = [[(a.tolist(), b.tolist()) for a, b in zip(loader, loader)]]
        kept = iter(loader)
        torch.rand(3)  # the loop's own draw before its first batch
        out.append(next(kept).tolist())
        out.append([b.tolist() for b in loader])
        out.append([b.tolist() for b in kept])
        return out

    for sampling in (dict(shuffle=True, batch_size=8), dict(batch_sampler=_PermutedBatches())):
        make = lambda: DataLoader(range(48), **sampling, **kw)
        torch.manual_seed(3)
        bare = loop(make())
        torch.manual_seed(3)
        assert loop(dlprof.profile(make(), sample_system=False)) == bare, sampling
        torch.manual_seed(3)
        assert loop(dlprof.autotune(make(), sample_system=False)) == bare, sampling


@pytest.mark.parametrize("wrap", ["profile", "autotune"])
def test_the_wrapped_loader_is_a_context_manager_that_closes_and_keeps_the_results(wrap):
    loader = DataLoader(range(32), batch_size=4, num_workers=2, persistent_workers=True)
    with getattr(dlprof, wrap)(loader) as wrapped:
        got = [b.tolist() for b in wrapped]
    assert got == [b.tolist() for b in loader]
    assert wrapped.profiler._closed  # the sampler stopped at the end of the block
    assert len(wrapped.result().run.batches) == 8

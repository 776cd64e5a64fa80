"""dlprof.profile with real DataLoaders and real worker processes."""
from __future__ import annotations

import time

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

import dlprof
from tests.pipelines import (BatchedDataset, BusyDataset, FailingDataset, OddSlowDataset, Pair, Record,
                             RichDataset,
                             ShardedStream, record_collate, shard_init)


def run_epochs(prof, epochs=1, step_s=0.0):
    out = []
    for _ in range(epochs):
        for batch in prof:
            if step_s:
                time.sleep(step_s)
            out.append(batch)
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_planted_fetch_cost_is_measured(num_workers):
    """10 ms of work per sample (a deadline on the wall clock, so a busy machine stretches it
    by its scheduling delays only): measured at least that, and well under twice that."""
    cost = 0.010
    loader = DataLoader(BusyDataset(32, cost_s=cost), batch_size=4, num_workers=num_workers)
    prof = dlprof.profile(loader, sample_system=False)
    run_epochs(prof)
    df = prof.to_dataframe()
    assert len(df) == 8
    per_sample_ms = df["fetch_per_sample_ms"].median()
    per_batch_ms = df["fetch_ms"].median()
    assert cost * 1e3 <= per_sample_ms <= 2 * cost * 1e3
    assert 4 * cost * 1e3 <= per_batch_ms <= 2 * 4 * cost * 1e3


def test_wait_near_zero_when_workers_keep_up_and_near_fetch_without_workers():
    # 32 ms of fetch per batch of 8: a hand-over on a loaded 2-core machine takes up to ~10 ms
    # (a 16 ms fetch read a 5 ms median wait, 0.26 of it, in the parallel suite)
    dataset = BusyDataset(96, cost_s=0.004)
    step_s = 0.06  # each of 2 workers has 120 ms for a 32 ms batch: they keep well ahead

    alone = dlprof.profile(DataLoader(dataset, batch_size=8, num_workers=0), sample_system=False)
    run_epochs(alone, step_s=step_s)
    df = alone.to_dataframe()
    # in the main process, the wait is the fetch plus the collate, and little else
    assert (df["wait_ms"] >= df["fetch_ms"]).all()  # the fetch happens inside the wait
    assert df["wait_ms"].median() <= 2 * (df["fetch_ms"] + df["collate_ms"]).median()

    with_workers = dlprof.profile(DataLoader(dataset, batch_size=8, num_workers=2), sample_system=False)
    run_epochs(with_workers, step_s=step_s)
    steady = with_workers.to_dataframe().iloc[2:]  # past start-up and the first refill
    # the batch is ready when asked for: the wait is the hand-over, not the 16 ms fetch
    assert steady["wait_ms"].median() < 0.25 * df["wait_ms"].median()
    assert steady["fetch_ms"].median() >= 32.0


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_equal_the_unwrapped_loader(num_workers):
    def make(seed):
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(RichDataset(), batch_size=6, shuffle=True, num_workers=num_workers,
                          generator=generator)

    torch.manual_seed(1)
    loader = make(7)
    bare = [b for _ in range(2) for b in loader]
    torch.manual_seed(1)
    prof = dlprof.profile(make(7), sample_system=False)
    profiled = run_epochs(prof, epochs=2)
    assert len(bare) == len(profiled) == 14
    for a, b in zip(bare, profiled):
        assert type(a) is type(b) is dict
        assert torch.equal(a["x"], b["x"])
        assert type(a["pair"]) is type(b["pair"]) is Pair
        assert torch.equal(a["pair"].y, b["pair"].y)  # the random part: same worker seeding
        assert a["name"] == b["name"]


def test_custom_collate_and_batch_types_survive():
    loader = DataLoader(RichDataset(), batch_size=5, collate_fn=record_collate, num_workers=2)
    bare = list(loader)
    profiled = run_epochs(dlprof.profile(loader, sample_system=False))
    assert all(type(b) is Record for b in profiled)
    assert bare == profiled


@pytest.mark.parametrize("num_workers", [0, 2])
def test_worker_exception_reaches_user_unchanged(num_workers):
    def first_error(iterable):
        with pytest.raises(KeyError) as info:
            for _ in iterable:
                pass
        error = info.value
        # the traceback's frames hold the iterator: freed now, its workers shut down at once
        # (left to the cycle collector, torch's shutdown of each waits out its workers: 10 s)
        error.__traceback__ = None
        del info
        return error

    loader = DataLoader(FailingDataset(), batch_size=4, num_workers=num_workers)
    bare = first_error(loader)
    prof = dlprof.profile(loader, sample_system=False)
    profiled = first_error(prof)
    assert type(profiled) is type(bare)
    assert str(profiled) == str(bare)  # includes the worker's original traceback text
    if num_workers:
        assert "Original Traceback" in str(profiled) and "sample 13 is corrupt" in str(profiled)
    epoch = prof.profiler.run.epochs[0]
    assert not epoch.completed and epoch.batches == 3


def test_timeline_places_each_batch_in_its_worker():
    loader = DataLoader(BusyDataset(48, cost_s=0.0002), batch_size=4, num_workers=2)
    prof = dlprof.profile(loader, sample_system=False)
    batches = run_epochs(prof)
    df = prof.to_dataframe()
    produced_by = [int(b[0, 1]) for b in batches]  # each sample carries the id of its worker
    assert df["worker_id"].tolist() == produced_by
    assert set(produced_by) == {0, 1}
    pids = df.groupby("worker_id")["worker_pid"].nunique()
    assert (pids == 1).all() and df["worker_pid"].nunique() == 2
    # on the one clock: a batch is fetched before it is collated and handed over
    run = prof.profiler.run
    for b in run.batches:
        assert b.fetch_start_ns <= b.fetch_end_ns <= b.collate_start_ns <= b.collate_end_ns <= b.wait_end_ns


def test_iterable_dataset_sharded_in_worker_init_fn():
    loader = DataLoader(ShardedStream(0, 40), batch_size=5, num_workers=2, worker_init_fn=shard_init)
    bare = sorted(int(i) for b in loader for i in b[:, 0])
    prof = dlprof.profile(loader, sample_system=False)
    batches = run_epochs(prof)
    profiled = sorted(int(i) for b in batches for i in b[:, 0])
    assert profiled == bare == list(range(40))  # the init fn's writes reached the user's dataset
    df = prof.to_dataframe()
    assert set(df["fetch_mode"]) == {"stream"}
    assert df["worker_id"].tolist() == [int(b[0, 1]) for b in batches]


def test_getitems_dataset_is_timed_per_batch():
    prof = dlprof.profile(DataLoader(BatchedDataset(), batch_size=8, num_workers=0), sample_system=False)
    batches = run_epochs(prof)
    assert [int(b[0]) for b in batches] == [0, 8, 16, 24]
    df = prof.to_dataframe()
    assert set(df["fetch_mode"]) == {"batch"}
    assert (df["fetch_ms"] >= 0.9).all()  # the planted 1 ms per __getitems__ call


def test_a_run_without_per_sample_marks_saves_and_loads_as_recorded(tmp_path):
    """A batch fetched in one ``__getitems__`` call has no per-sample marks; its records load
    back equal to those recorded (the marks' type included)."""
    prof = dlprof.profile(DataLoader(BatchedDataset(), batch_size=8, num_workers=0), sample_system=False)
    run_epochs(prof)
    prof.save(tmp_path / "results.json")
    recorded = prof.result().run.batches
    assert recorded and all(len(b.sample_marks_ns) == 0 for b in recorded)
    assert dlprof.load(tmp_path / "results.json").run.batches == recorded


def test_batch_sampler_drop_last_and_unbatched():
    sampler = BatchSampler(SequentialSampler(range(10)), batch_size=4, drop_last=True)
    prof = dlprof.profile(DataLoader(BusyDataset(10), batch_sampler=sampler), sample_system=False)
    assert len(run_epochs(prof)) == 2 == len(prof)
    assert prof.to_dataframe()["samples"].tolist() == [4, 4]

    unbatched = dlprof.profile(DataLoader(BusyDataset(3), batch_size=None, num_workers=1),
                               sample_system=False)
    batches = run_epochs(unbatched)
    assert [b[0].item() for b in batches] == [0, 1, 2]
    assert unbatched.to_dataframe()["samples"].tolist() == [1, 1, 1]


def test_persistent_workers_are_reused_and_startup_recorded_per_epoch():
    loader = DataLoader(BusyDataset(16), batch_size=4, num_workers=2, persistent_workers=True)
    prof = dlprof.profile(loader, sample_system=False)
    run_epochs(prof, epochs=3)
    epochs = prof.profiler.run.epochs
    assert [e.workers_reused for e in epochs] == [False, True, True]
    assert all(e.completed and e.batches == 4 for e in epochs)
    startup = prof.result().analyse().startup_ms
    assert len(startup) == 3
    # starting two processes costs more than handing out the first batch of a warm pool
    assert startup[0] > startup[1] and startup[0] > startup[2]
    assert loader._iterator is None  # the user's own loader started no workers


def test_leaving_the_loop_early_closes_the_epoch():
    prof = dlprof.profile(DataLoader(BusyDataset(40), batch_size=4), sample_system=False)
    for i, _ in enumerate(prof):
        time.sleep(0.01)
        if i == 2:
            break
    run = prof.profiler.run
    assert run.epochs[0].completed is False and run.epochs[0].batches == 3
    assert run.batches[-1].step_ns >= 0.01e9 * 0.9  # the step of the last batch is counted


def test_device_copy_is_timed():
    prof = dlprof.profile(DataLoader(BusyDataset(8), batch_size=4), device="cpu", sample_system=False)
    batches = run_epochs(prof)
    assert all(b.device.type == "cpu" for b in batches)
    assert (prof.to_dataframe()["transfer_ms"] > 0).all()


def test_context_manager_samples_system_around_the_block():
    loader = DataLoader(BusyDataset(32, cost_s=0.005), batch_size=4, num_workers=2)
    with dlprof.Profiler(sample_interval_s=0.02) as p:
        for _ in p.wrap(loader):
            pass
    run = p.result().run
    roles = {s.role for s in run.processes}
    assert roles == {"main", "worker"}
    worker_pids = {b.worker_pid for b in run.batches}
    assert worker_pids <= {s.pid for s in run.processes if s.role == "worker"}


def test_one_profiler_one_loader():
    p = dlprof.Profiler(sample_system=False)
    p.wrap(DataLoader(BusyDataset(4)))
    with pytest.raises(ValueError, match="one DataLoader"):
        p.wrap(DataLoader(BusyDataset(4)))


def test_rejects_what_is_not_a_dataloader():
    with pytest.raises(TypeError, match="DataLoader"):
        dlprof.profile([1, 2, 3])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_workers_started_without_fork(method):
    # Python 3.14 makes forkserver the default on Linux; macOS and Windows use spawn.
    loader = DataLoader(BusyDataset(12, cost_s=0.0005), batch_size=4, num_workers=2,
                        multiprocessing_context=method)
    prof = dlprof.profile(loader, sample_system=False)
    batches = run_epochs(prof)
    df = prof.to_dataframe()
    assert df["worker_id"].tolist() == [int(b[0, 1]) for b in batches]
    assert (df["fetch_per_sample_ms"] >= 0.45).all()
    assert set(df["fetch_mode"]) == {"sample"}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_per_sample_times_single_out_the_slow_samples(num_workers):
    prof = dlprof.profile(DataLoader(OddSlowDataset(), batch_size=6, num_workers=num_workers),
                          sample_system=False)
    run_epochs(prof)
    samples = prof.result().sample_dataframe()
    assert len(samples) == 24
    odd = samples[samples["sample"] % 2 == 1]["fetch_ms"]  # sequential sampler: position = index parity
    even = samples[samples["sample"] % 2 == 0]["fetch_ms"]
    # each slow sample took its 20 ms (a deadline: never less); the cheap ones, a few microseconds,
    # stay far below it but for a preempted one or two on a busy machine
    assert odd.min() >= 20.0 and even.median() < 5.0

"""py-spy hotspots with real worker processes: a planted hot function is the top of fetch."""
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import dlprof
from dlprof.analysis.hotspots import hotspots, parse_raw, process_stacks, stage_tree
from dlprof.probe.stacks import find_py_spy


def planted_hot_decode(i):
    end = time.perf_counter() + 0.002
    x = 0
    while time.perf_counter() < end:  # 2 ms of pure-Python work a sample
        x += 1
    return x


def slow_collate(samples):
    end = time.perf_counter() + 0.004
    while time.perf_counter() < end:
        pass
    return torch.stack(samples)


class Planted(Dataset):
    def __len__(self):
        return 800

    def __getitem__(self, i):
        planted_hot_decode(i)
        return torch.tensor([float(i)])


def test_a_job_sampled_from_its_launcher_is_read_one_process_at_a_time():
    """dlprof run --stacks samples the command (a shell whose command line holds ';', torchrun);
    each process that iterated a loader is read with its workers, as if sampled alone."""
    raw = "\n".join([
        'process 1:"sh -c python t.py; exit 0";process 2:"python t.py";<module> (t.py:1);step (t.py:9) 30',
        'process 1:"sh -c python t.py; exit 0";process 2:"python t.py";process 3:"python t.py";'
        '_worker_loop (torch/utils/data/_utils/worker.py:374);fetch (torch/utils/data/_utils/fetch.py:52);'
        'load (t.py:4) 70',
        'process 1:"sh -c python t.py; exit 0";process 5:"python other.py";<module> (other.py:1) 99',
        'process 1:"sh -c python t.py; exit 0" 4',
    ])
    mine = process_stacks(raw, 2)
    assert parse_raw(mine) == [(['process 2:"python t.py"'], ["<module> (t.py:1)", "step (t.py:9)"], 30),
                               (['process 2:"python t.py"', 'process 3:"python t.py"'],
                                ["_worker_loop (torch/utils/data/_utils/worker.py:374)",
                                 "fetch (torch/utils/data/_utils/fetch.py:52)", "load (t.py:4)"], 70)]
    table = hotspots(mine)
    assert dict(zip(table.stage, table.stage_samples)) == {"fetch": 70, "step": 30}
    assert process_stacks(raw, 7) == ""


@pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed")
@pytest.mark.parametrize("workers", [0, 2])
def test_planted_hot_function_tops_fetch_and_collate_is_told_apart(workers):
    loader = DataLoader(Planted(), batch_size=16, num_workers=workers, collate_fn=slow_collate)
    prof = dlprof.profile(loader, sample_stacks=True)
    for _ in prof:
        pass
    prof.close()
    table = prof.result().hotspots()
    assert not [n for n in prof.result().run.notes if n.startswith("no hotspots")]
    fetch_self = table[(table.stage == "fetch") & (table.rank_by == "self")]
    assert fetch_self.iloc[0]["function"] == "planted_hot_decode", table.to_string()
    assert fetch_self.iloc[0]["pct"] > 50
    assert "test_hotspots.py" in fetch_self.iloc[0]["location"]
    fetch_total = table[(table.stage == "fetch") & (table.rank_by == "total")]
    assert fetch_total.iloc[0]["function"] == "planted_hot_decode", table.to_string()
    collate_self = table[(table.stage == "collate") & (table.rank_by == "self")]
    assert collate_self.iloc[0]["function"] == "slow_collate", table.to_string()
    tree = stage_tree(prof.result().run.stacks_raw, "fetch")
    assert tree["value"] == int(table[table.stage == "fetch"].iloc[0]["stage_samples"])
    assert any("planted_hot_decode" in c["name"] for c in _walk(tree))


def _walk(node):
    for child in node["children"]:
        yield child
        yield from _walk(child)


def test_raw_stacks_are_assigned_to_stages():
    raw = "\n".join([
        'process 1:"python t.py";process 2:"python t.py";_worker_loop (torch/utils/data/_utils/worker.py:374);'
        'fetch (torch/utils/data/_utils/fetch.py:52);__getitem__ (t.py:10);decode (PIL/Image.py:800) 60',
        'process 1:"python t.py";process 2:"python t.py";_worker_loop (torch/utils/data/_utils/worker.py:374);'
        'fetch (torch/utils/data/_utils/fetch.py:57);CollateProxy.__call__ (dlprof/probe/hooks.py:170);'
        'pad (t.py:20) 40',
        'process 1:"python t.py";<module> (t.py:30);train_step (t.py:25) 30',
        'process 1:"python t.py";process 3:"python -m dlprof.probe.system";_sampler_main (dlprof/probe/system.py:154) 99',
    ])
    table = hotspots(raw)
    assert set(table.stage) == {"fetch", "collate", "step"}  # the sampler's own stacks are left out
    top_fetch = table[(table.stage == "fetch") & (table.rank_by == "self")].iloc[0]
    assert (top_fetch.function, top_fetch.location, top_fetch.pct) == ("decode", "PIL/Image.py:800", 100.0)


@pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed")
def test_a_process_py_spy_cannot_sample_gives_the_reason_not_stacks(tmp_path):
    from dlprof.probe.stacks import StackSampler

    sampler = StackSampler(str(tmp_path / "stacks.txt"))
    sampler.start(2 ** 22 + 12345)  # no such process
    sampler.stop()
    assert sampler.problem and sampler.problem.startswith("py-spy")

"""The side-by-side measurement that decides a recommendation (dlprof.sweep.paired): two real
loaders taking turns in one forked child, as a scan runs it."""
from __future__ import annotations

import textwrap
import time

import pytest

from dlprof.analysis.throughput import paired_ratio
from dlprof.scan_records import LoaderSettings
from dlprof.sweep.paired import MIN_PAIRS, run_side_by_side
from dlprof.sweep.rules import measurably_faster
from dlprof.sweep.trial import preload_torch

WAITING = """
    import os
    import random
    import time
    import torch
    from torch.utils.data import DataLoader, Dataset, get_worker_info

    class Remote(Dataset):
        def __len__(self):
            return {length}
        def __getitem__(self, i):
            if os.environ.get("SBS_FAIL_IN_WORKERS") and get_worker_info() is not None and i % 7 == 3:
                raise ValueError(f"bad record {{i}}")
            flags = os.environ.get("SBS_KILL_DIR")  # the baseline kills a candidate's worker in its turn
            if flags and get_worker_info() is not None:
                with open(os.path.join(flags, "worker"), "w") as fh:
                    fh.write(str(os.getpid()))
            elif flags and os.path.exists(os.path.join(flags, "worker")):
                os.kill(int(open(os.path.join(flags, "worker")).read()), 9)
                os.unlink(os.path.join(flags, "worker"))
            # storage latency (workers overlap it); SBS_JITTER: a shared store whose latency triples
            # in random 0.35 s spells, whichever side reads it: turns vary, both sides alike
            slow = 3 if os.environ.get("SBS_JITTER") and random.Random(int(time.time() / 0.35)).random() < 0.5 else 1
            time.sleep(0.002 * slow)
            return torch.tensor([float(i)])

    loader = DataLoader(Remote(), batch_size=8)

    def train_step(batch):
        return float(batch.sum())
"""


def target(tmp_path, length=400):
    path = tmp_path / "waiting.py"
    path.write_text(textwrap.dedent(WAITING.format(length=length)))
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def torch_loaded():
    preload_torch()  # the scan's process model: trials fork from a process with torch imported


BASE = LoaderSettings(0, False, None, False, 8)
FOUR = LoaderSettings(4, False, 2, True, 8)


def test_a_clear_gain_is_decided_within_a_few_pairs(tmp_path):
    base, cand, pairs = run_side_by_side(target(tmp_path), BASE, FOUR, str(tmp_path / "trials"), 1, None,
                                         turn_s=0.3, max_s=20.0, timeout_s=60)
    assert (base.status, cand.status) == ("ok", "ok"), (base.error, cand.error)
    assert (base.purpose, cand.purpose) == ("final: baseline", "final: recommendation")
    ratio, low, high = paired_ratio(pairs)
    # 4 workers overlap a 2 ms wait per sample: about 4x; stopped once decided, long before 20 s
    assert measurably_faster((ratio, low, high)) and ratio > 1.8, pairs
    assert MIN_PAIRS <= len(pairs) < 12
    assert cand.samples_per_s > 1.8 * base.samples_per_s
    assert base.batches > 0 and cand.batches > 0 and base.seconds > 0


def test_the_same_configuration_on_both_sides_is_no_gain(tmp_path):
    # short epochs (100 samples, 0.2 s at num_workers=0): turns of whole epochs
    base, cand, pairs = run_side_by_side(target(tmp_path, length=100), BASE, BASE, str(tmp_path / "trials"), 1,
                                         None, turn_s=0.3, max_s=6.0, timeout_s=60)
    assert (base.status, cand.status) == ("ok", "ok")
    ratio, low, high = paired_ratio(pairs)
    # a wide bound: the test must hold on a machine twice as slow and noisier than ours
    assert 0.8 < ratio < 1.25 and low < ratio < high, pairs
    assert base.epoch_ms > 0 and cand.epoch_ms > 0  # whole epochs were measured


def test_a_candidate_that_fails_is_reported_failed_and_the_baseline_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("SBS_FAIL_IN_WORKERS", "1")  # only in workers: the baseline has none
    base, cand, pairs = run_side_by_side(target(tmp_path), BASE, FOUR, str(tmp_path / "trials"), 1, None,
                                         turn_s=0.3, max_s=6.0, timeout_s=60)
    assert base.status == "ok"
    assert cand.status == "failed" and "bad record" in cand.error and cand.failure_kind == "dataset", cand.error
    assert cand.purpose == "final: recommendation"


def test_a_worker_death_in_the_other_sides_turn_fails_the_side_it_belongs_to(tmp_path, monkeypatch):
    """A candidate's worker is killed while the baseline (no workers) takes its turn: torch
    raises the death in the baseline's code, and the candidate is the side that failed."""
    monkeypatch.setenv("SBS_KILL_DIR", str(tmp_path))
    base, cand, pairs = run_side_by_side(target(tmp_path), BASE, FOUR, str(tmp_path / "trials"), 1, None,
                                         turn_s=0.3, max_s=6.0, timeout_s=60)
    assert base.status == "ok", base.error
    assert cand.status == "failed" and "was killed by SIGKILL" in cand.error, cand.error


def test_a_target_that_does_not_load_fails_both_sides(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('no data today')\n")
    base, cand, pairs = run_side_by_side(str(path), BASE, FOUR, str(tmp_path / "trials"), 1, None,
                                         turn_s=0.3, max_s=6.0, timeout_s=60)
    assert base.status == cand.status == "failed" and pairs == []
    assert "no data today" in base.error


def test_turns_longer_than_planned_still_give_the_fewest_pairs_judged(tmp_path):
    """A deadline that passes before MIN_PAIRS pairs (turns longer than the scan planned) is
    overrun by the missing pairs: an interval from fewer can only say "keep"."""
    base, cand, pairs = run_side_by_side(target(tmp_path, length=100), BASE, BASE, str(tmp_path / "trials"), 1,
                                         None, turn_s=0.3, max_s=0.1, timeout_s=60)
    assert base.status == cand.status == "ok"
    assert len(pairs) == MIN_PAIRS, pairs


def test_a_noisy_tie_ends_when_more_pairs_could_not_make_a_recommendation(tmp_path, monkeypatch):
    """The same configuration on both sides, turns made noisy by a store that slows down in
    spells, with time for many pairs: the interval stays too wide to exclude a gain for many
    pairs, yet the check stops once even MAX_PAIRS pairs measured like these would hold no gain,
    leaving the rest of the budget to what follows (the hotspots), not at its deadline."""
    from dlprof.sweep.verify import MAX_PAIRS  # the scan's

    monkeypatch.setenv("SBS_JITTER", "1")
    began = time.monotonic()
    base, cand, pairs = run_side_by_side(target(tmp_path, length=100), BASE, BASE, str(tmp_path / "trials"), 1,
                                         None, turn_s=0.3, max_s=40.0, timeout_s=90)
    assert base.status == cand.status == "ok"
    assert MIN_PAIRS <= len(pairs) < MAX_PAIRS, pairs
    assert time.monotonic() - began < 30

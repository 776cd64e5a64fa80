"""A user's DataLoader read as settings, and rebuilt with others (dlprof.sweep.loaders)."""
from __future__ import annotations

import dataclasses

from torch.utils.data import DataLoader

from dlprof.sweep.loaders import build_loader, settings_of
from pipelines import BusyDataset


def test_in_order_is_read_from_the_users_loader_and_given_to_the_rebuilt_one():
    loader = DataLoader(BusyDataset(64), batch_size=8, num_workers=2, in_order=False)
    s = settings_of(loader)
    assert s.in_order is False and s.num_workers == 2
    assert build_loader(loader, s).in_order is False
    kept = build_loader(loader, dataclasses.replace(s, in_order=True))
    assert kept.in_order is True and kept.batch_size == 8
    assert settings_of(DataLoader(BusyDataset(64), batch_size=8)).in_order is True


def test_the_threads_knob_is_not_a_loader_argument():
    loader = DataLoader(BusyDataset(64), batch_size=8, num_workers=1)
    s = dataclasses.replace(settings_of(loader), num_threads=1)
    rebuilt = build_loader(loader, s)
    assert settings_of(rebuilt) == dataclasses.replace(s, num_threads=None)

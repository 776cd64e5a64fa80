"""A tuner that measures window after window in the loader's own configuration and never moves
or settles: what the windows' machinery costs on its own (benchmarks/overhead.py's `window`
rows, benchmarks/autotune_cost.py --windows-cpu)."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dlprof.probe.environment import available_cores  # noqa: E402
from dlprof.sweep.loaders import settings_of  # noqa: E402
from dlprof.sweep.online import MAX_WINDOW_S, Tuner  # noqa: E402
from dlprof.sweep.policy import SearchSpace  # noqa: E402
from dlprof.tuned import AutotunedLoader  # noqa: E402


class Staying(Tuner):
    """Window after window in the user's configuration: never settles, never moves."""

    def next_settings(self, measured, window):
        self.tuning.windows.append(window)
        return self.tuning.baseline


def staying(loader, sample_system: bool = True) -> AutotunedLoader:
    """``loader`` through dlprof.autotune's machinery, measuring windows and never moving."""
    space = SearchSpace(cores=available_cores(), max_workers=16, window_s=MAX_WINDOW_S)
    return AutotunedLoader(loader, sample_system=sample_system, tuner=Staying(space, settings_of(loader), 1e9))

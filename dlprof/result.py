"""A finished (or saved) profile run with its analyses: works without torch."""
from __future__ import annotations

import os
import sys

import pandas as pd

from dlprof.analysis.hotspots import hotspots
from dlprof.analysis.memory import worker_memory_growth
from dlprof.analysis.stages import Summary, batch_frame, sample_frame, stage_table, summarize
from dlprof.records import ProfileRun, load_json, save_json
from dlprof.report.console import ConsoleRenderer
from dlprof.report.trace import TraceRenderer


class ProfileResult:
    def __init__(self, run: ProfileRun) -> None:
        self.run = run

    def to_dataframe(self) -> pd.DataFrame:
        """One row per batch, times in ms (``fetch_ms``, ``wait_ms``, ...)."""
        return batch_frame(self.run)

    def sample_dataframe(self) -> pd.DataFrame:
        """One row per sample fetched by ``__getitem__`` / ``next()``: its ``fetch_ms``."""
        return sample_frame(self.run)

    def worker_memory(self) -> pd.DataFrame:
        """One row per worker: unique memory (USS) against the samples it fetched
        (``growth_mib``, ``rank_corr``...): copy-on-access growth shows here."""
        return worker_memory_growth(self.run)

    def hotspots(self, top: int = 5) -> pd.DataFrame:
        """Top functions per stage by self and by total time, in % of the stage's samples
        (needs ``sample_stacks=True``; empty otherwise)."""
        return hotspots(self.run.stacks_raw, top)

    def stages(self) -> pd.DataFrame:
        return stage_table(batch_frame(self.run))

    def analyse(self) -> Summary:
        return summarize(self.run)

    def format_summary(self) -> str:
        return ConsoleRenderer().render(self.analyse())

    def summary(self, file=None) -> None:
        """Print the stage table, wait share and verdict hint (to stdout by default)."""
        print(self.format_summary(), end="", file=file or sys.stdout)

    def save(self, path: str | os.PathLike) -> None:
        save_json(self.run.to_dict(), path)

    def save_trace(self, path: str | os.PathLike) -> None:
        """Chrome trace-event JSON: open it in Perfetto (ui.perfetto.dev) or chrome://tracing."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(TraceRenderer().render(self.run))


def load(path: str | os.PathLike) -> ProfileResult:
    """Load a results file written by ``save``."""
    return ProfileResult(ProfileRun.from_dict(load_json(path)))

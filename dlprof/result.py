"""A finished (or saved) profile run with its analyses: works without torch.

The analyses (pandas) are imported when first asked for, not with this module: dlprof.autotune
builds a ProfileResult inside the training process, which should not load pandas for it."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from dlprof.records import ProfileRun, load_json, save_json

if TYPE_CHECKING:
    import pandas as pd

    from dlprof.analysis.stages import Summary


class ProfileResult:
    def __init__(self, run: ProfileRun) -> None:
        self.run = run

    def to_dataframe(self) -> pd.DataFrame:
        """One row per batch, times in ms (``fetch_ms``, ``wait_ms``, ...)."""
        from dlprof.analysis.stages import batch_frame

        return batch_frame(self.run)

    def sample_dataframe(self) -> pd.DataFrame:
        """One row per sample fetched by ``__getitem__`` / ``next()``: its ``fetch_ms``."""
        from dlprof.analysis.stages import sample_frame

        return sample_frame(self.run)

    def worker_memory(self) -> pd.DataFrame:
        """One row per worker: unique memory (USS) against the samples it fetched
        (``growth_mib``, ``rank_corr``...): copy-on-access growth shows here."""
        from dlprof.analysis.memory import worker_memory_growth

        return worker_memory_growth(self.run)

    def hotspots(self, top: int = 5) -> pd.DataFrame:
        """Top functions per stage by self and by total time, in % of the stage's samples
        (needs ``sample_stacks=True``; empty otherwise)."""
        from dlprof.analysis.hotspots import hotspots

        return hotspots(self.run.stacks_raw, top)

    def stages(self) -> pd.DataFrame:
        from dlprof.analysis.stages import batch_frame, stage_table

        return stage_table(batch_frame(self.run))

    def analyse(self) -> Summary:
        from dlprof.analysis.stages import summarize

        return summarize(self.run)

    def format_summary(self) -> str:
        from dlprof.report.console import ConsoleRenderer

        return ConsoleRenderer().render(self.analyse())

    def summary(self, file=None) -> None:
        """Print the stage table, wait share and verdict hint (to stdout by default)."""
        print(self.format_summary(), end="", file=file or sys.stdout)

    def save(self, path: str | os.PathLike) -> None:
        save_json(self.run.to_dict(), path)

    def _repr_html_(self) -> str:
        """A notebook shows the verdict, the summary and the timeline."""
        from dlprof.report.profile_html import ProfileHtmlRenderer, profile_view

        return ProfileHtmlRenderer().render(profile_view(self.run))

    def save_reports(self, folder: str | os.PathLike, formats: tuple[str, ...] = ("md", "html")) -> list[str]:
        """report.html (self-contained, plots inline), report.md (plot files beside it) and
        trace.json (Perfetto) in ``folder``; returns the paths written."""
        from dlprof.report.profile_report import write_profile_reports

        return write_profile_reports(self.run, os.fspath(folder), formats)

    def save_trace(self, path: str | os.PathLike) -> None:
        """Chrome trace-event JSON: open it in Perfetto (ui.perfetto.dev) or chrome://tracing."""
        from dlprof.report.trace import TraceRenderer

        with open(path, "w", encoding="utf-8") as fh:
            fh.write(TraceRenderer().render(self.run))


class ScanResults:
    """A saved scan (``results.json`` of ``dlprof scan``): ``.result`` is the ScanResult; a notebook
    shows its HTML report."""

    def __init__(self, path: str | os.PathLike) -> None:
        from dlprof.report.build import load_scan

        self.result = load_scan(os.fspath(path))

    def _repr_html_(self) -> str:
        from dlprof.report.html import HtmlRenderer
        from dlprof.report.model import scan_report

        return HtmlRenderer().render(scan_report(self.result))


def load(path: str | os.PathLike):
    """Load a results file: a profile (written by ``save``) as a ProfileResult, a scan's
    results.json as ScanResults."""
    data = load_json(path)
    from dlprof.scan_records import SCAN_SCHEMA_NAME

    if isinstance(data, dict) and data.get("schema") == SCAN_SCHEMA_NAME:
        return ScanResults(path)
    return ProfileResult(ProfileRun.from_dict(data))

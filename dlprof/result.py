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

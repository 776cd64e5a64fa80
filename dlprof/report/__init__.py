"""Renderers: each formats one model and nothing else, ``render(model) -> str``.

- ``model.ScanReport`` (built once from a scan's results) -> ``scan_text.ConsoleScanRenderer``,
  ``scan_text.MarkdownRenderer``, ``html.HtmlRenderer``
- ``analysis.stages.Summary`` (a profile) -> ``console.ConsoleRenderer``
- ``records.ProfileRun`` -> ``trace.TraceRenderer`` (Perfetto / chrome://tracing JSON)
- ``analysis.compare.Comparison`` -> ``compare_text.CompareRenderer``
- ``analysis.ranks.RankAnalysis`` -> ``distributed_text.DistributedMarkdownRenderer``

A new output format is one more class with that method.
"""
from __future__ import annotations

from typing import Protocol, TypeVar

M = TypeVar("M", contravariant=True)


class Renderer(Protocol[M]):
    def render(self, model: M) -> str: ...

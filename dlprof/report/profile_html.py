"""A profile as HTML, for a notebook's display of ``dlprof.profile(...)`` results
(``_repr_html_``): the verdict, the summary table and the timeline of the first batches."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape

from dlprof.analysis.stages import Summary, summarize
from dlprof.records import ProfileRun
from dlprof.report.console import ConsoleRenderer


@dataclass
class ProfileView:
    summary: Summary
    text: str  # the console summary
    timeline_svg: str  # "" with no batch


def profile_view(run: ProfileRun) -> ProfileView:
    from dlprof.analysis.views import timeline_frame
    from dlprof.report import plots

    summary = summarize(run)
    svg = plots.timeline(timeline_frame(run), "per worker and loop") if run.batches else ""
    return ProfileView(summary, ConsoleRenderer().render(summary), svg)


class ProfileHtmlRenderer:
    def render(self, v: ProfileView) -> str:
        parts = [f"<div class='dlprof'><p><b>{escape(v.summary.verdict)}</b>: {escape(v.summary.reason)}</p>",
                 f"<pre>{escape(v.text)}</pre>"]
        if v.timeline_svg:
            data = base64.b64encode(v.timeline_svg.encode("utf-8")).decode("ascii")
            parts.append(f"<img alt='timeline' style='max-width:100%' src='data:image/svg+xml;base64,{data}'>")
        return "".join(parts) + "</div>"

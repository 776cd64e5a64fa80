"""A profile as HTML, for a notebook's display of ``dlprof.profile(...)`` results
(``_repr_html_``): the verdict, the summary table and the timeline of the first batches."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from dlprof.analysis.stages import Summary, summarize
from dlprof.records import ProfileRun
from dlprof.report.console import ConsoleRenderer
from dlprof.report.html import svg_figure


@dataclass
class ProfileView:
    summary: Summary
    text: str  # the console summary
    timeline_svg: str  # "" with no batch
    tuning_svg: str = ""  # dlprof.autotune's windows ("" when not tuned)
    name: str = "DataLoader"  # what was profiled: the loader's dataset type (a page's title)


def profile_view(run: ProfileRun, figures: bool = True, title: str = "per worker and loop") -> ProfileView:
    """``figures=False``: no timeline (the terminal draws none)."""
    summary = summarize(run)
    svg = ""
    if figures and run.batches:
        from dlprof.analysis.views import timeline_frame
        from dlprof.report import plots

        svg = plots.timeline(timeline_frame(run), title)
    tuning_svg = ""
    if figures and run.tuning and run.tuning.get("windows"):
        from dlprof.analysis.tuning import windows_frame
        from dlprof.report import plots

        tuning_svg = plots.tuning_windows(windows_frame(run.tuning), "autotune: each window's rate")
    name = run.loader.dataset_type if run.loader is not None else "DataLoader"
    return ProfileView(summary, ConsoleRenderer().render(summary), svg, tuning_svg, name)


class ProfileHtmlRenderer:
    def render(self, v: ProfileView) -> str:
        parts = [f"<div class='dlprof'><p><b>{escape(v.summary.verdict)}</b>: {escape(v.summary.reason)}</p>",
                 f"<pre>{escape(v.text)}</pre>"]
        if v.timeline_svg:
            parts.append(svg_figure(v.timeline_svg, "plot", "timeline"))
        if v.tuning_svg:
            parts.append(svg_figure(v.tuning_svg, "plot", "autotune windows"))
        return "".join(parts) + "</div>"

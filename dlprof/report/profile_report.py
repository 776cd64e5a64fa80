"""A profile's own reports (``dlprof profile``, ``ProfileResult.save_reports``, ``dlprof report``
of a profile's results.json): report.md with its plot files, report.html (one self-contained
page) and trace.json (Perfetto). Rendered from the ``ProfileView`` the notebook and ``dlprof run``
show, so the three say the same. No torch."""
from __future__ import annotations

import os
from html import escape

from dlprof.records import ProfileRun
from dlprof.report.html import PAGE_CSS
from dlprof.report.profile_html import ProfileHtmlRenderer, ProfileView, profile_view
from dlprof.report.trace import TraceRenderer

# the plot files report.md links, written beside it: (ProfileView attribute, file, title)
_FIGURES = (("timeline_svg", "plot-timeline.svg", "Timeline of the first batches, per worker and loop"),
            ("tuning_svg", "plot-autotune.svg", "dlprof.autotune: each window's rate"))


class ProfileMarkdownRenderer:
    """report.md; its figures are linked by file name (``_FIGURES``, written beside it)."""

    def render(self, v: ProfileView) -> str:
        out = [f"# dlprof profile: `{v.name}`", "", f"**{v.summary.verdict}**: {v.summary.reason}", "",
               "```", v.text.rstrip("\n"), "```", ""]
        for attr, file, caption in _FIGURES:
            if getattr(v, attr):
                out += [f"### {caption}", "", f"![{caption}]({file})", ""]
        return "\n".join(out).rstrip("\n") + "\n"


class ProfilePageRenderer:
    """report.html: the notebook's view of the profile as a page, figures inline."""

    def render(self, v: ProfileView) -> str:
        e = escape
        return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                f"<title>dlprof profile: {e(v.name)}</title><style>{PAGE_CSS}</style></head><body>"
                f"<h1>dlprof profile: <code>{e(v.name)}</code></h1>{ProfileHtmlRenderer().render(v)}</body></html>\n")


def write_profile_reports(run: ProfileRun, out_dir: str, formats=("md", "html")) -> list[str]:
    """report.md (and its plot files), report.html (of ``formats``) and trace.json in
    ``out_dir``; the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    view = profile_view(run)
    written = []

    def write(name: str, text: str, listed: bool = True) -> None:
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        if listed:
            written.append(path)

    if "html" in formats:
        write("report.html", ProfilePageRenderer().render(view))
    if "md" in formats:
        for attr, file, _ in _FIGURES:
            if getattr(view, attr):
                write(file, getattr(view, attr), listed=False)
        write("report.md", ProfileMarkdownRenderer().render(view))
    write("trace.json", TraceRenderer().render(run))
    return written

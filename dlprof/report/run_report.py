"""``dlprof run``'s report: every DataLoader the program iterated, the training loader first.

One model (``RunReport``, built once from a ``RunResult``) and its renderers: the terminal's
summary, report.md and report.html, each ``render(model) -> str``. No torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from dlprof.report.profile_html import ProfileHtmlRenderer, ProfileView, profile_view
from dlprof.run_records import RunLoader, RunResult


@dataclass
class LoaderSection:
    title: str  # "train_loader (train.py:42; pid 123)"
    headline: bool  # the loader with the most batches: the training loader
    view: ProfileView  # its profile: verdict, summary table, timeline


@dataclass
class RunReport:
    command: str
    exit_code: int | None
    sections: list[LoaderSection]


def _title(x: RunLoader) -> str:
    where = f"rank {x.rank}, pid {x.pid}" if x.rank is not None else f"pid {x.pid}"
    return f"{x.name} ({x.site}; {where})"


def run_report(result: RunResult, figures: bool = True) -> RunReport:
    top = result.headline()
    ordered = ([top] if top else []) + [x for x in result.loaders if x is not top]
    sections = [LoaderSection(_title(x), x is top, profile_view(x.run, figures, f"{x.name}: per worker and loop"))
                for x in ordered]
    return RunReport(" ".join(result.command), result.exit_code, sections)


def _role(s: LoaderSection) -> str:
    return "training loader (most batches)" if s.headline else "other loader"


class RunConsoleRenderer:
    """What ``dlprof run`` prints to stderr when the command ends."""

    def render(self, m: RunReport) -> str:
        if not m.sections:
            return "dlprof run: the program iterated no DataLoader\n"
        out = []
        for s in m.sections:
            out.append(f"== {_role(s)}: {s.title}")
            out.append(s.view.text.rstrip("\n"))
        return "\n".join(out) + "\n"


class RunMarkdownRenderer:
    def render(self, m: RunReport) -> str:
        out = [f"# dlprof run: `{m.command}`", "", f"Exit code: {m.exit_code}.", ""]
        if not m.sections:
            out += ["The program iterated no DataLoader."]
        for s in m.sections:
            out += [f"## {_role(s)}: {s.title}", "",
                    f"**{s.view.summary.verdict}**: {s.view.summary.reason}", "", "```", s.view.text.rstrip("\n"),
                    "```", ""]
        return "\n".join(out).rstrip("\n") + "\n"


class RunHtmlRenderer:
    def render(self, m: RunReport) -> str:
        e = escape
        parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
                 f"<title>dlprof run: {e(m.command)}</title>",
                 "<style>body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em}"
                 "pre{background:#f6f8fa;padding:.8em;overflow:auto}figure img{max-width:100%}</style></head><body>",
                 f"<h1>dlprof run: <code>{e(m.command)}</code></h1><p>Exit code: {e(str(m.exit_code))}.</p>"]
        if not m.sections:
            parts.append("<p>The program iterated no DataLoader.</p>")
        for i, s in enumerate(m.sections):
            parts.append(f"<h2 id='loader-{i}'>{e(_role(s))}: {e(s.title)}</h2>" + ProfileHtmlRenderer().render(s.view))
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

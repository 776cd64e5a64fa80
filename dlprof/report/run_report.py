"""``dlprof run``'s report: every DataLoader the program iterated, the training loader first.

One model (``RunReport``, built once from a ``RunResult``) and its renderers: the terminal's
summary, report.md and report.html, each ``render(model) -> str``. No torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from dlprof.analysis.hotspots import busiest_stages, hotspots, process_stacks, stage_tree
from dlprof.report.html import hotspot_table_html, svg_figure
from dlprof.report.model import hotspot_line
from dlprof.report.profile_html import ProfileHtmlRenderer, ProfileView, profile_view
from dlprof.report.scan_text import HOTSPOTS_INTRO, hotspot_table_md
from dlprof.run_records import RunLoader, RunResult

FLAME_STAGES = 3  # flame graphs of a process's stages with the most sampled stacks


@dataclass
class LoaderSection:
    title: str  # "train_loader (train.py:42; pid 123)"
    headline: bool  # the loader with the most batches: the training loader
    view: ProfileView  # its profile: verdict, summary table, timeline


@dataclass
class ProcessHotspots:
    """``dlprof run --stacks``: where one process's time went (its workers' included)."""
    title: str  # "pid 123 (rank 0): train_loader, val_loader"
    rows: list[dict]  # analysis.hotspots rows
    flames: list[tuple[str, str]]  # (stage, SVG) of the busiest stages; none in the terminal


@dataclass
class RunReport:
    command: str
    exit_code: int | None
    sections: list[LoaderSection]
    hotspots: list[ProcessHotspots]
    stacks_note: str  # why --stacks gave none


def _hotspots(result: RunResult, figures: bool) -> list[ProcessHotspots]:
    """One entry a process that iterated a DataLoader: its stacks and its workers', by stage."""
    if not result.stacks_raw:
        return []
    from dlprof.report.flame import flame_svg

    out = []
    pids = list(dict.fromkeys(x.pid for x in result.loaders))
    for pid in pids:
        raw = process_stacks(result.stacks_raw, pid)
        rows = hotspots(raw).to_dict("records")
        if not rows:
            continue
        loaders = [x for x in result.loaders if x.pid == pid]
        rank = f"rank {loaders[0].rank}, " if loaders[0].rank is not None else ""
        flames = [(stage, flame_svg(stage_tree(raw, stage), f"pid {pid}: {stage}"))
                  for stage in busiest_stages(rows, FLAME_STAGES)] if figures else []
        out.append(ProcessHotspots(f"{rank}pid {pid}: " + ", ".join(x.name for x in loaders), rows, flames))
    return out


def _title(x: RunLoader) -> str:
    where = f"rank {x.rank}, pid {x.pid}" if x.rank is not None else f"pid {x.pid}"
    return f"{x.name} ({x.site}; {where})"


def run_report(result: RunResult, figures: bool = True) -> RunReport:
    top = result.headline()
    ordered = ([top] if top else []) + [x for x in result.loaders if x is not top]
    sections = [LoaderSection(_title(x), x is top, profile_view(x.run, figures, f"{x.name}: per worker and loop"))
                for x in ordered]
    return RunReport(" ".join(result.command), result.exit_code, sections, _hotspots(result, figures),
                     result.stacks_note)


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
        out += [f"hotspots ({h.title}): {hotspot_line(h.rows)}" for h in m.hotspots]
        if m.stacks_note:
            out.append(f"no hotspots: {m.stacks_note}")
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
        if m.hotspots or m.stacks_note:
            out += ["## Hotspots", "", HOTSPOTS_INTRO, ""] + ([f"No hotspots: {m.stacks_note}", ""] if m.stacks_note else [])
        for h in m.hotspots:
            out += [f"**{h.title}**", ""] + hotspot_table_md(h.rows) + [""]
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
        if m.hotspots or m.stacks_note:
            parts.append(f"<h2 id='hotspots'>Hotspots</h2><p>{e(HOTSPOTS_INTRO)}</p>"
                         + (f"<p>No hotspots: {e(m.stacks_note)}</p>" if m.stacks_note else ""))
        for h in m.hotspots:
            parts.append(f"<h3>{e(h.title)}</h3>" + hotspot_table_html(h.rows)
                         + "".join(svg_figure(svg, "flame", f"flame graph: {stage}") for stage, svg in h.flames))
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

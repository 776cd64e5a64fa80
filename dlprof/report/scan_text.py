"""A scan's report as Markdown (report.md) and as the terminal's closing summary."""
from __future__ import annotations

from dlprof.report.model import ScanReport

TRIAL_HEAD = ("#", "purpose", "num_workers", "batch_size", "prefetch", "persistent", "pin", "samples/s",
              "± %", "wait %", "fetch ms", "collate ms", "step ms", "status")


def trial_cells(row) -> list[str]:
    """A trial's row of the trials table, as text (Markdown and HTML show the same)."""
    s, m = row.settings, row.stage_ms
    if row.status == "ok":
        nums = [f"{row.samples_per_s:,.0f}", f"{row.ci_pct:.1f}", f"{row.wait_pct:.0f}", f"{m.get('fetch', 0):.2f}",
                f"{m.get('collate', 0):.2f}", f"{m.get('step', 0):.2f}", "ok"]
    else:
        nums = ["", "", "", "", "", "", f"{row.status}: {row.error}"]
    return [str(row.number), row.purpose, str(s.num_workers), str(s.batch_size), str(s.prefetch_factor),
            str(s.persistent_workers), str(s.pin_memory), *nums]


HOTSPOTS_INTRO = ("Python stacks sampled by py-spy (up to 100 Hz a process) in the main process and the workers; % of "
                  "the stage's samples. Self: the function itself was running; total: it or what it called.")


def hotspot_table_md(rows: list[dict]) -> list[str]:
    """``analysis.hotspots`` rows as a Markdown table, a line each."""
    return (["| stage | samples | by | function | where | % |", "|---|---|---|---|---|---|"]
            + [f"| {x['stage']} | {x['stage_samples']} | {x['rank_by']} | `{_escape(x['function'])}` | "
               f"`{_escape(x['location'])}` | {x['pct']:.0f} |" for x in rows])


class MarkdownRenderer:
    """report.md; its figures are linked by file name (written beside it)."""

    def render(self, m: ScanReport) -> str:
        out = [f"# dlprof scan: `{m.target}`", ""]
        if not m.complete:
            out += ["> **Incomplete scan**: results of the trials done so far.", ""]
        out += [f"**Verdict:** {m.headline}", ""]
        if m.verdict:
            out += [f"- {e}" for e in m.evidence] + [""]
        out += ["## Recommendation", "", m.speedup_line, ""]
        if m.recommended_code is not None:
            out += ["```python", m.recommended_code, "```", ""]
            if m.changes is not None:
                out += [f"Changes from the baseline: {', '.join(m.changes) if m.changes else 'none'}.", ""]
        if m.warnings:
            out += ["## Warnings", ""] + [f"- {w}" for w in m.warnings] + [""]
        for f in m.figures:
            out += [f"### {f.title}", "", f"![{f.title}]({f.file})", ""]
        out += ["## Trials", "", "| " + " | ".join(TRIAL_HEAD) + " |", "|" + "---|" * len(TRIAL_HEAD)]
        for row in m.trials:
            cells = trial_cells(row)
            if row.status != "ok":
                cells = cells[:7] + ["-"] * 6 + [_escape(cells[13])]
            out.append("| " + " | ".join(cells) + " |")
        if m.hotspots:
            out += ["", "## Hotspots", "", HOTSPOTS_INTRO]
            for h in m.hotspots:
                out += ["", f"**Trial {h.number}** ({h.purpose}: {h.label})"]
                if h.note:
                    out += ["", h.note]
                if h.rows:
                    out += [""] + hotspot_table_md(h.rows)
        if m.failed:
            out += ["", "## Failed trials"]
            for f in m.failed:
                out += ["", f"**Trial {f.number}** ({f.label}): {f.status}: {f.error}" + (f" (log: `{f.log}`)" if f.log else "")]
                if f.traceback:
                    out += ["", "<details><summary>traceback</summary>", "", "```", f.traceback, "```", "", "</details>"]
        env = m.environment
        out += ["", "## Environment", "",
                f"{env.get('available_cores')} cores available, Python {env.get('python')}, torch {env.get('torch')}, "
                f"device {env.get('device') or 'none (no copy)'}, dlprof {env.get('dlprof')}."]
        if m.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in m.notes]
        return "\n".join(out) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class ConsoleScanRenderer:
    """What the terminal shows at a scan's end (and ``dlprof summary results.json``)."""

    def render(self, m: ScanReport) -> str:
        lines = [f"verdict: {m.headline}"]
        lines += [f"  - {e}" for e in m.evidence]
        lines += [f"warning: {w}" for w in m.warnings]
        lines.append(m.speedup_line)
        lines += m.hotspot_lines
        if m.recommended_code is not None:
            lines.append("recommended: " + m.recommended_code)
        return "\n".join(lines) + "\n"

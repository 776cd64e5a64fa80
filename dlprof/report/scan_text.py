"""Scan results as Markdown (report.md) and as the terminal's closing summary."""
from __future__ import annotations

from dlprof.analysis.recommend import changes, dataloader_call
from dlprof.scan_records import Purpose, ScanResult


def headline(r: ScanResult) -> str:
    b = r.bottleneck
    if b is None:
        return "no diagnosis (the scan did not finish)"
    stage = b.stage + (f" ({b.kind})" if b.kind else "")
    return f"{b.verdict}, bottleneck: {stage}"


def speedup_line(r: ScanResult) -> str:
    if r.recommendation is None or r.speedup is None:
        return "no recommendation: no configuration was measured successfully"
    if r.speedup == 1.0 and r.recommendation is r.baseline:
        searched = [t for t in r.trials if t.purpose.searched]
        if not searched:
            return ("keep the current configuration, untested: the budget ran out before any other "
                    "configuration was tried (a larger --budget lets the scan search)")
        return "keep the current configuration: no candidate was measurably faster"
    rounds = ", ".join(f"{x:.2f}x" for x in r.speedup_samples)  # one ratio a pair of turns
    interval = (f", 95% interval {r.speedup_ci[0]:.2f}-{r.speedup_ci[1]:.2f}x" if r.speedup_ci
                else " (no interval: results of an older dlprof)")
    return f"measured speedup {r.speedup:.2f}x{interval} over the baseline (side by side, pairs of turns: {rounds})"


class MarkdownRenderer:
    def render(self, r: ScanResult, figures: dict[str, str] | None = None) -> str:
        """``figures``: title -> image file name, linked beside the report."""
        out = [f"# dlprof scan: `{r.target}`", ""]
        if not r.complete:
            out += ["> **Incomplete scan**: results of the trials done so far.", ""]
        out += [f"**Verdict:** {headline(r)}", ""]
        if r.bottleneck:
            out += [f"- {e}" for e in r.bottleneck.evidence] + [""]
        out += ["## Recommendation", "", speedup_line(r), ""]
        if r.recommendation is not None:
            out += ["```python", dataloader_call(r.recommendation.settings), "```", ""]
            if r.baseline is not None:
                diff = changes(r.baseline.settings, r.recommendation.settings)
                out += [f"Changes from the baseline: {', '.join(diff) if diff else 'none'}.", ""]
        if r.warnings:
            out += ["## Warnings", ""] + [f"- {w}" for w in r.warnings] + [""]
        for title, path in (figures or {}).items():
            out += [f"### {title}", "", f"![{title}]({path})", ""]
        out += ["## Trials", "",
                "| # | purpose | num_workers | batch_size | prefetch | persistent | pin | samples/s | ± % | wait % | fetch ms | collate ms | step ms | status |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for i, t in enumerate(r.trials, 1):
            s, m = t.settings, t.stage_ms
            if t.status == "ok":
                nums = (f"{t.samples_per_s:,.0f} | {t.ci_pct:.1f} | {t.wait_pct:.0f} | {m.get('fetch', 0):.2f} | "
                        f"{m.get('collate', 0):.2f} | {m.get('step', 0):.2f} | ok")
            else:
                nums = f"- | - | - | - | - | - | {t.status}: {_escape(t.error)}"
            out.append(f"| {i} | {t.purpose} | {s.num_workers} | {s.batch_size} | {s.prefetch_factor} | "
                       f"{s.persistent_workers} | {s.pin_memory} | {nums} |")
        sampled = [(i, t) for i, t in enumerate(r.trials, 1) if t.hotspots or t.hotspots_note]
        if sampled:
            out += ["", "## Hotspots", "",
                    "Python stacks sampled by py-spy (up to 100 Hz a process) in the main process and the workers; % of the "
                    "stage's samples. Self: the function itself was running; total: it or what it called."]
            for i, t in sampled:
                out += ["", f"**Trial {i}** ({t.purpose}: {t.settings.label()})"]
                if t.hotspots_note:
                    out += ["", t.hotspots_note]
                if t.hotspots:
                    out += ["", "| stage | samples | by | function | where | % |", "|---|---|---|---|---|---|"]
                    for h in t.hotspots:
                        out.append(f"| {h['stage']} | {h['stage_samples']} | {h['rank_by']} | `{_escape(h['function'])}` | "
                                   f"`{_escape(h['location'])}` | {h['pct']:.0f} |")
        failed = [(i, t) for i, t in enumerate(r.trials, 1) if t.status != "ok"]
        if failed:
            out += ["", "## Failed trials"]
            for i, t in failed:
                out += ["", f"**Trial {i}** ({t.settings.label()}): {t.status}: {t.error}" + (f" (log: `{t.log}`)" if t.log else "")]
                if t.traceback:
                    out += ["", "<details><summary>traceback</summary>", "", "```", t.traceback, "```", "", "</details>"]
        env = r.environment
        out += ["", "## Environment", "",
                f"{env.get('available_cores')} cores available, Python {env.get('python')}, torch {env.get('torch')}, "
                f"device {env.get('device') or 'none (no copy)'}, dlprof {env.get('dlprof')}."]
        if r.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
        return "\n".join(out) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class ConsoleScanRenderer:
    def render(self, r: ScanResult) -> str:
        lines = [f"verdict: {headline(r)}"]
        if r.bottleneck:
            lines += [f"  - {e}" for e in r.bottleneck.evidence]
        for w in r.warnings:
            lines.append(f"warning: {w}")
        lines.append(speedup_line(r))
        for t in r.trials:
            label = (t.purpose if t.purpose in (Purpose.HOTSPOTS_BASELINE, Purpose.HOTSPOTS_RECOMMENDATION)
                     else f"hotspots ({t.purpose})")
            if t.hotspots:
                tops = [h for h in t.hotspots if h["rank_by"] == "total"]
                firsts = {}
                for h in tops:
                    firsts.setdefault(h["stage"], h)
                lines.append(f"{label}: " + "; ".join(
                    f"{stage}: {h['pct']:.0f}% {h['function']} ({h['location']})" for stage, h in firsts.items()))
            elif t.hotspots_note:
                lines.append(f"{label}: {t.hotspots_note}")
        if r.recommendation is not None:
            lines.append("recommended: " + dataloader_call(r.recommendation.settings))
        return "\n".join(lines) + "\n"

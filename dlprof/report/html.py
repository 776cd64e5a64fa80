"""A scan as one self-contained HTML file: inline CSS, inline SVG plots, no network fetch.

Everything that comes from the user or their dataset (target name, settings, evidence,
exception messages) is escaped.
"""
from __future__ import annotations

import base64
from html import escape

from dlprof.analysis.recommend import changes, dataloader_call
from dlprof.report.scan_text import headline, speedup_line
from dlprof.scan_records import ScanResult

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.verdict{font-size:1.2em;padding:.6em 1em;border-radius:6px;background:#f3f6fb;border-left:5px solid #4C72B0}
.data-bound{border-left-color:#C44E52}.compute-bound{border-left-color:#55A868}
pre{background:#f6f8fa;padding:.8em;border-radius:6px;overflow:auto}
table{border-collapse:collapse;font-size:12px;width:100%}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f0f0f0;cursor:pointer;user-select:none}td.l,th.l{text-align:left}
tr.rec td{background:#eef8ee}tr.base td{background:#f8f1e6}.warn li{color:#8a4b00}
figure{margin:1em 0}figure img{max-width:100%;height:auto}.muted{color:#777}
"""
# Click a header to sort the trials table (numbers numerically); no library, no network.
_JS = """
document.querySelectorAll('table.sortable th').forEach((th,i)=>th.addEventListener('click',()=>{
 const tb=th.closest('table').tBodies[0],rows=[...tb.rows],asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
 const v=r=>{const t=r.cells[i].innerText.replace(/,/g,'');const n=parseFloat(t);return isNaN(n)?t:n};
 rows.sort((a,b)=>{const x=v(a),y=v(b);return (x>y?1:x<y?-1:0)*(asc?1:-1)});rows.forEach(r=>tb.appendChild(r));}));
"""


class HtmlRenderer:
    def render(self, r: ScanResult, figures: dict[str, str], flames: dict[int, dict[str, str]] | None = None) -> str:
        """``figures``: section title -> inline SVG; ``flames``: trial number -> stage -> flame graph SVG."""
        e = escape
        b = r.bottleneck
        parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>dlprof scan: {e(r.target)}</title>",
                 f"<style>{_CSS}</style></head><body>", f"<h1>dlprof scan: <code>{e(r.target)}</code></h1>"]
        if not r.complete:
            parts.append("<p class='verdict'><b>Incomplete scan</b>: results of the trials done so far.</p>")
        parts.append(f"<p class='verdict {e(b.verdict) if b else ''}' id='verdict'>{e(headline(r))}</p>")
        if b and b.evidence:
            parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b.evidence) + "</ul>")
        if r.warnings:
            parts.append("<h2>Warnings</h2><ul class='warn'>" + "".join(f"<li>{e(w)}</li>" for w in r.warnings) + "</ul>")
        parts.append(f"<h2>Recommendation</h2><p>{e(speedup_line(r))}</p>")
        if r.recommendation is not None:
            parts.append(f"<pre id='recommendation'>{e(dataloader_call(r.recommendation.settings))}</pre>")
        if r.baseline is not None:
            parts.append(f"<p class='muted'>Baseline: <code>{e(dataloader_call(r.baseline.settings))}</code></p>")
            if r.recommendation is not None:
                diff = changes(r.baseline.settings, r.recommendation.settings)
                parts.append(f"<p>Changes: {e(', '.join(diff) if diff else 'none')}</p>")
        for title, svg in figures.items():
            # an <img> of a data: URI: self-contained, and nothing inside a plot can run
            data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
            parts.append(f"<h2>{e(title)}</h2><figure><img class='plot' alt='{e(title)}' "
                         f"src='data:image/svg+xml;base64,{data}'></figure>")
        parts.append(self._trials(r))
        sampled = [(i, t) for i, t in enumerate(r.trials, 1) if t.hotspots or t.hotspots_note]
        if sampled:
            parts.append("<h2>Hotspots</h2><p class='muted'>Python stacks sampled by py-spy (up to 100 Hz a process) in the main "
                         "process and the workers; % of the stage's samples (self: the function itself was running; "
                         "total: it or what it called).</p>")
            for i, t in sampled:
                parts.append(f"<h3>Trial {i}: {e(t.purpose)} ({e(t.settings.label())})</h3>")
                if t.hotspots_note:
                    parts.append(f"<p class='warn'>{e(t.hotspots_note)}</p>")
                if t.hotspots:
                    parts.append("<table class='hotspots'><thead><tr><th class='l'>stage</th><th>samples</th>"
                                 "<th class='l'>by</th><th class='l'>function</th><th class='l'>where</th><th>%</th>"
                                 "</tr></thead><tbody>" + "".join(
                                     f"<tr><td class='l'>{e(h['stage'])}</td><td>{h['stage_samples']}</td>"
                                     f"<td class='l'>{e(h['rank_by'])}</td><td class='l'><code>{e(h['function'])}</code></td>"
                                     f"<td class='l'>{e(h['location'])}</td><td>{h['pct']:.0f}</td></tr>"
                                     for h in t.hotspots) + "</tbody></table>")
                for stage, svg in (flames or {}).get(i, {}).items():
                    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
                    parts.append(f"<figure><img class='flame' alt='flame graph: {e(stage)}' "
                                 f"src='data:image/svg+xml;base64,{data}'></figure>")
        failed = [(i, t) for i, t in enumerate(r.trials, 1) if t.status != "ok"]
        if failed:
            parts.append("<h2>Failed trials</h2>" + "".join(
                f"<details id='failed-{i}'><summary>trial {i} ({e(t.settings.label())}): {e(t.status)}: {e(t.error)}"
                "</summary>" + (f"<pre>{e(t.traceback)}</pre>" if t.traceback else "")
                + (f"<p class='muted'>log: {e(t.log)}</p>" if t.log else "") + "</details>" for i, t in failed))
        env = r.environment
        parts.append("<h2>Environment</h2><table><tbody>" + "".join(
            f"<tr><td class='l'>{e(str(k))}</td><td class='l'>{e(str(v))}</td></tr>" for k, v in env.items()
            if k != "argv") + "</tbody></table>")
        if r.notes:
            parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in r.notes) + "</ul>")
        parts.append(f"<script>{_JS}</script></body></html>")
        return "\n".join(parts) + "\n"

    def _trials(self, r: ScanResult) -> str:
        e = escape
        head = ["#", "purpose", "num_workers", "batch_size", "prefetch", "persistent", "pin", "samples/s",
                "± %", "wait %", "fetch ms", "collate ms", "step ms", "status"]
        rows = []
        for i, t in enumerate(r.trials, 1):
            s, m = t.settings, t.stage_ms
            cls = ("rec" if r.recommendation is not None and s == r.recommendation.settings else
                   "base" if r.baseline is not None and s == r.baseline.settings else "")
            if t.status == "ok":
                nums = [f"{t.samples_per_s:,.0f}", f"{t.ci_pct:.1f}", f"{t.wait_pct:.0f}", f"{m.get('fetch', 0):.2f}",
                        f"{m.get('collate', 0):.2f}", f"{m.get('step', 0):.2f}", "ok"]
            else:
                nums = ["", "", "", "", "", "", f"{t.status}: {t.error}"]
            cells = [str(i), t.purpose, s.num_workers, s.batch_size, s.prefetch_factor, s.persistent_workers,
                     s.pin_memory, *nums]
            rows.append(f"<tr class='{cls}'>" + "".join(
                f"<td class='{'l' if j in (1, 13) else ''}'>{e(str(c))}</td>" for j, c in enumerate(cells)) + "</tr>")
        return ("<h2>All trials</h2><p class='muted'>Click a column to sort. Green: recommended; amber: baseline.</p>"
                "<table class='sortable' id='trials'><thead><tr>" +
                "".join(f"<th class='{'l' if j in (1, 13) else ''}'>{e(h)}</th>" for j, h in enumerate(head)) +
                "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")

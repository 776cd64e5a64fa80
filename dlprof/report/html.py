"""A scan as one self-contained HTML file: inline CSS, inline SVG plots, no network fetch.

Everything that comes from the user or their dataset (target name, settings, evidence,
exception messages) is escaped.
"""
from __future__ import annotations

import base64
from html import escape

from dlprof.report.model import ScanReport
from dlprof.report.scan_text import HOTSPOTS_INTRO, TRIAL_HEAD, trial_cells

PAGE_CSS = """
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


def svg_figure(svg: str, cls: str, alt: str) -> str:
    """An <img> of a data: URI: self-contained, and nothing inside a plot can run."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"<figure><img class='{cls}' alt='{escape(alt)}' src='data:image/svg+xml;base64,{data}'></figure>"


def hotspot_table_html(rows: list[dict]) -> str:
    """``analysis.hotspots`` rows as an HTML table."""
    e = escape
    return ("<table class='hotspots'><thead><tr><th class='l'>stage</th><th>samples</th><th class='l'>by</th>"
            "<th class='l'>function</th><th class='l'>where</th><th>%</th></tr></thead><tbody>" + "".join(
                f"<tr><td class='l'>{e(x['stage'])}</td><td>{x['stage_samples']}</td><td class='l'>{e(x['rank_by'])}"
                f"</td><td class='l'><code>{e(x['function'])}</code></td><td class='l'>{e(x['location'])}</td>"
                f"<td>{x['pct']:.0f}</td></tr>" for x in rows) + "</tbody></table>")


class HtmlRenderer:
    """report.html: one file, figures inline."""

    def render(self, m: ScanReport) -> str:
        e = escape
        parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>dlprof scan: {e(m.target)}</title>",
                 f"<style>{PAGE_CSS}</style></head><body>", f"<h1>dlprof scan: <code>{e(m.target)}</code></h1>"]
        if not m.complete:
            parts.append("<p class='verdict'><b>Incomplete scan</b>: results of the trials done so far.</p>")
        parts.append(f"<p class='verdict {e(m.verdict)}' id='verdict'>{e(m.headline)}</p>")
        if m.evidence:
            parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in m.evidence) + "</ul>")
        if m.warnings:
            parts.append("<h2>Warnings</h2><ul class='warn'>" + "".join(f"<li>{e(w)}</li>" for w in m.warnings) + "</ul>")
        parts.append(f"<h2>Recommendation</h2><p>{e(m.speedup_line)}</p>")
        if m.recommended_code is not None:
            parts.append(f"<pre id='recommendation'>{e(m.recommended_code)}</pre>")
        if m.baseline_code is not None:
            parts.append(f"<p class='muted'>Baseline: <code>{e(m.baseline_code)}</code></p>")
            if m.changes is not None:
                parts.append(f"<p>Changes: {e(', '.join(m.changes) if m.changes else 'none')}</p>")
        for f in m.figures:
            parts.append(f"<h2>{e(f.title)}</h2>" + svg_figure(f.svg, "plot", f.title))
        parts.append(self._trials(m))
        if m.hotspots:
            parts.append(f"<h2>Hotspots</h2><p class='muted'>{e(HOTSPOTS_INTRO)}</p>")
            for h in m.hotspots:
                parts.append(f"<h3>Trial {h.number}: {e(h.purpose)} ({e(h.label)})</h3>")
                if h.note:
                    parts.append(f"<p class='warn'>{e(h.note)}</p>")
                if h.rows:
                    parts.append(hotspot_table_html(h.rows))
                parts += [svg_figure(f.svg, "flame", f"flame graph: {f.title}") for f in h.flames]
        if m.failed:
            parts.append("<h2>Failed trials</h2>" + "".join(
                f"<details id='failed-{f.number}'><summary>trial {f.number} ({e(f.label)}): {e(f.status)}: {e(f.error)}"
                "</summary>" + (f"<pre>{e(f.traceback)}</pre>" if f.traceback else "")
                + (f"<p class='muted'>log: {e(f.log)}</p>" if f.log else "") + "</details>" for f in m.failed))
        parts.append("<h2>Environment</h2><table><tbody>" + "".join(
            f"<tr><td class='l'>{e(str(k))}</td><td class='l'>{e(str(v))}</td></tr>" for k, v in m.environment.items()
            if k != "argv") + "</tbody></table>")
        if m.notes:
            parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in m.notes) + "</ul>")
        parts.append(f"<script>{_JS}</script></body></html>")
        return "\n".join(parts) + "\n"

    def _trials(self, m: ScanReport) -> str:
        e = escape
        left = (1, 13)  # purpose and status: text, aligned left
        rows = [f"<tr class='{row.role}'>" + "".join(
            f"<td class='{'l' if j in left else ''}'>{e(c)}</td>" for j, c in enumerate(trial_cells(row))) + "</tr>"
            for row in m.trials]
        return ("<h2>All trials</h2><p class='muted'>Click a column to sort. Green: recommended; amber: baseline.</p>"
                "<table class='sortable' id='trials'><thead><tr>" +
                "".join(f"<th class='{'l' if j in left else ''}'>{e(h)}</th>" for j, h in enumerate(TRIAL_HEAD)) +
                "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")

"""Write every report of a scan into a folder: report.md (+ its plot files), report.html, and the
Perfetto traces, trace.json (the recommendation's run) and, when the baseline is not kept,
trace-baseline.json. The reports come from the results alone (one ``ScanReport``); the traces
need the per-trial dumps and are written where those are. Works without torch."""
from __future__ import annotations

import os

from dlprof.records import load_json
from dlprof.report.html import HtmlRenderer
from dlprof.report.model import scan_report
from dlprof.report.scan_text import MarkdownRenderer
from dlprof.report.trace import TraceRenderer
from dlprof.scan_records import ScanResult
from dlprof.scan_views import keep_views, run_of

FORMATS = ("md", "html")


def _write(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def write_reports(result: ScanResult, out_dir: str, results_dir: str, formats=FORMATS) -> list[str]:
    """Render and write; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    model = scan_report(result)
    written = []
    if "html" in formats:
        written.append(_write(os.path.join(out_dir, "report.html"), HtmlRenderer().render(model)))
    if "md" in formats:
        for f in model.figures:
            _write(os.path.join(out_dir, f.file), f.svg)
        written.append(_write(os.path.join(out_dir, "report.md"), MarkdownRenderer().render(model)))
    rec, base = result.recommendation, result.baseline
    traces = {"trace.json": run_of(rec, results_dir) or run_of(base, results_dir)}
    if rec is not base:  # kept: the same run, written once
        traces["trace-baseline.json"] = run_of(base, results_dir)
    for name, run in traces.items():
        if run is not None:
            written.append(_write(os.path.join(out_dir, name), TraceRenderer().render(run)))
    return written


def load_scan(path: str) -> ScanResult:
    """A saved scan; one written before its results kept the views (schema 4 and older) gets them
    from the per-trial dumps beside it, where they are."""
    result = ScanResult.from_dict(load_json(path))
    keep_views(result, os.path.dirname(os.path.abspath(path)))
    return result

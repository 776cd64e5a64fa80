"""Reports of a real scan: HTML (self-contained, escaped), Markdown with plot files, traces,
and `dlprof report` re-rendering them on a machine without torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from html.parser import HTMLParser

import pytest

from tests.test_results_and_cli import NO_TORCH, REPO

HOSTILE = """
    import torch
    from torch.utils.data import DataLoader, Dataset, get_worker_info

    class Hostile(Dataset):
        def __len__(self):
            return 256
        def __getitem__(self, i):
            if get_worker_info() is not None:
                raise ValueError("<script>alert('x')</script> & friends")
            return torch.tensor([float(i)])

    loader = DataLoader(Hostile(), batch_size=8)
"""


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.external = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.external.append(value)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    target = root / "hostile.py"
    target.write_text(textwrap.dedent(HOSTILE))
    out = root / "out"
    proc = subprocess.run([sys.executable, "-m", "dlprof", "scan", str(target), "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_html_is_self_contained_escaped_and_complete(scanned):
    html = (scanned / "report.html").read_text()
    parser = _Tags()
    parser.feed(html)
    assert parser.external == []  # nothing fetched from anywhere
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in html
    assert parser.tags.count("svg") >= 5  # throughput, stage bars, producer bars, timeline, CPU/memory
    for section in ("Recommendation", "Throughput by num_workers", "Timeline of the baseline", "All trials",
                    "Environment", "Warnings"):
        assert section in html
    assert "DataLoader(dataset, batch_size=8, num_workers=0" in html


def test_markdown_links_plot_files_and_traces_exist(scanned):
    md = (scanned / "report.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert links and all((scanned / name).read_text().startswith("<svg") for name in links)
    trace = json.loads((scanned / "trace.json").read_text())
    assert any(e.get("name") == "wait" for e in trace["traceEvents"])


def test_report_command_rerenders_without_torch(scanned, tmp_path):
    code = NO_TORCH + "\nfrom dlprof.cli import main\nraise SystemExit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + code, "report", str(scanned / "results.json"),
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {"report.html", "report.md", "trace.json"} <= set(os.listdir(tmp_path))
    assert (tmp_path / "report.html").read_text().count("<svg") >= 5

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

    Hostile.__qualname__ = "Hostile<script>alert(1)</script>"  # a name a report must not run
    loader = DataLoader(Hostile(), batch_size=8)
"""


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.external = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith(("#", "data:")):
                self.external.append(value)


def _dlprof_on_hostile(root, *command):
    """``dlprof COMMAND hostile.py ... --out root/out`` on the HOSTILE target; the folder."""
    target = root / "hostile.py"
    target.write_text(textwrap.dedent(HOSTILE))
    out = root / "out"
    proc = subprocess.run([sys.executable, "-m", "dlprof", command[0], str(target), *command[1:], "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    return _dlprof_on_hostile(tmp_path_factory.mktemp("scan"), "scan", "--quick")[0]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """``dlprof profile`` of the same target (no workers: its dataset raises only in one)."""
    out, proc = _dlprof_on_hostile(tmp_path_factory.mktemp("profile"), "profile", "--epochs", "1")
    assert f"reports: {out / 'report.html'}, {out / 'report.md'}, {out / 'trace.json'}" in proc.stdout
    return out


def test_html_is_self_contained_escaped_and_complete(scanned):
    html = (scanned / "report.html").read_text()
    parser = _Tags()
    parser.feed(html)
    assert parser.external == []  # nothing fetched from anywhere
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in html
    assert "Hostile&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("data:image/svg+xml;base64,") >= 5  # throughput, stages, producers, timeline, CPU
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
    assert (tmp_path / "report.html").read_text().count("data:image/svg+xml") >= 5
    # the same reports the scan wrote, byte for byte, from its results file alone
    for name in ("report.md", "report.html", "trace.json"):
        assert (tmp_path / name).read_text() == (scanned / name).read_text(), name


def test_profile_writes_a_self_contained_page_markdown_and_a_trace(profiled):
    html = (profiled / "report.html").read_text()
    parser = _Tags()
    parser.feed(html)
    assert parser.external == [] and "script" not in parser.tags
    assert "<script>alert" not in html and "Hostile&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("data:image/svg+xml;base64,") == 1  # the timeline
    for shown in ("data-bound", "stage", "fetch", "wait", "steady state"):
        assert shown in html, shown
    md = (profiled / "report.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert links == ["plot-timeline.svg"] and (profiled / links[0]).read_text().startswith("<svg")
    assert (profiled / "summary.txt").read_text().split("  note: no train_step")[0] in md  # the same table
    trace = json.loads((profiled / "trace.json").read_text())
    assert sum(e.get("name") == "wait" for e in trace["traceEvents"]) == 32  # 256 samples, batches of 8


def test_report_command_takes_a_results_folder_scan_or_profile_without_torch(scanned, profiled, tmp_path):
    """`dlprof report FOLDER` of a scan (it used to read every folder as a `dlprof run`'s) and of a
    profile (it used to refuse a profile's results): the same files, byte for byte."""
    code = NO_TORCH + "\nfrom dlprof.cli import main\nraise SystemExit(main(sys.argv[1:]))"
    for source in (scanned, profiled):
        out = tmp_path / source.parent.name
        proc = subprocess.run([sys.executable, "-c", "import sys\n" + code, "report", str(source), "--out", str(out)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        written = sorted(os.listdir(out))
        assert {"report.html", "report.md", "trace.json"} <= set(written), written
        for name in written:
            assert (out / name).read_text() == (source / name).read_text(), (source, name)
        summary = subprocess.run([sys.executable, "-c", "import sys\n" + code, "summary", str(source)], cwd=REPO,
                                 capture_output=True, text=True, timeout=120)
        assert summary.returncode == 0 and "data-bound" in summary.stdout, summary.stderr
    for command in ("report", "summary"):  # a folder without results: one line (summary raised a traceback)
        proc = subprocess.run([sys.executable, "-m", "dlprof", command, str(tmp_path)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.startswith("dlprof: error:"), proc.stderr
    bad = tmp_path / "list.json"
    bad.write_text("[1, 2]")
    proc = subprocess.run([sys.executable, "-m", "dlprof", "report", str(bad)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("dlprof: error:") and "not a dlprof results file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_html_in_headless_chromium(scanned, profiled, tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Chromium could not be installed here (Debian packages chromium and chromium-driver; "
                    "`make test` tries apt-get install): the browser test did not run")
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,3000",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get((scanned / "report.html").as_uri())
        sizes = driver.execute_script(
            "return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
        assert len(sizes) >= 5 and all(done and w > 0 and h > 0 for done, w, h in sizes), sizes
        text = driver.find_element("id", "recommendation").text
        assert text.startswith("DataLoader(dataset, batch_size=8, num_workers=0")
        assert "Hostile<script>alert(1)</script>" in driver.find_element("tag name", "body").text
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # the dataset's name ran nothing
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        driver.get((profiled / "report.html").as_uri())  # dlprof profile's page
        sizes = driver.execute_script(
            "return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
        assert len(sizes) == 1 and all(done and w > 0 and h > 0 for done, w, h in sizes), sizes
        assert "Hostile<script>alert(1)</script>" in driver.find_element("tag name", "h1").text
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        driver.get((scanned / "report.html").as_uri())  # the scan's, for the screenshot
        shots = os.path.join(REPO, "reports", "screenshots")
        os.makedirs(shots, exist_ok=True)
        assert driver.save_screenshot(os.path.join(shots, "test-report.png"))
    finally:
        driver.quit()


def test_reports_render_again_from_the_results_file_alone(scanned, tmp_path):
    """The results keep what the reports draw (timelines, CPU, flame trees): without the per-trial
    dumps, `dlprof report` writes the same report.md, plots and report.html."""
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "results.json").write_text((scanned / "results.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "dlprof", "report", str(alone / "results.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plots = sorted(p for p in os.listdir(scanned) if p.startswith("plot-"))
    assert len(plots) >= 5  # throughput, loop stages, producer stages, timeline, CPU and memory
    for name in ["report.md", "report.html"] + plots:
        assert (alone / name).read_text() == (scanned / name).read_text(), name
    assert not (alone / "trace.json").exists()  # a trace is the run itself: it needs the dump


def _committed_scans() -> list[str]:
    found = []
    for root, _, files in os.walk(os.path.join(REPO, "reports")):
        if "results.json" in files:
            with open(os.path.join(root, "results.json"), encoding="utf-8") as fh:
                if json.load(fh).get("schema") == "dlprof.scan":
                    found.append(root)
    return sorted(found)


def test_every_committed_sample_scan_renders_again_as_the_scan_wrote_it(tmp_path):
    from dlprof.report.build import load_scan, write_reports
    from dlprof.report.model import scan_report
    from dlprof.report.scan_text import ConsoleScanRenderer

    folders = _committed_scans()
    assert len(folders) >= 13, folders  # every recipe's scan (make bench-recipes)
    for folder in folders:
        name = os.path.relpath(folder, REPO)
        result = load_scan(os.path.join(folder, "results.json"))
        printed = os.path.join(folder, "scan.txt")  # what the terminal showed at the scan's end
        if os.path.exists(printed):
            with open(printed, encoding="utf-8") as fh:
                assert ConsoleScanRenderer().render(scan_report(result, figures=False)) in fh.read(), name
        if not os.path.exists(os.path.join(folder, "report.md")):
            continue  # a summary only: results.json and scan.txt
        out = tmp_path / name.replace(os.sep, "-")
        write_reports(result, str(out), folder)
        for f in sorted(os.listdir(out)):
            with open(os.path.join(folder, f), encoding="utf-8") as fh:
                assert (out / f).read_text() == fh.read(), f"{name}/{f}"


def test_every_renderer_formats_one_model():
    """One signature, ``render(model) -> str``, for every output format."""
    import importlib
    import inspect
    import pkgutil

    import dlprof.report

    renderers = []
    for info in pkgutil.iter_modules(dlprof.report.__path__):
        module = importlib.import_module(f"dlprof.report.{info.name}")
        renderers += [c for _, c in inspect.getmembers(module, inspect.isclass)
                      if c.__module__ == module.__name__ and hasattr(c, "render")]
    assert len(renderers) >= 7, renderers
    for cls in renderers:
        params = list(inspect.signature(cls.render).parameters)
        assert len(params) == 2 and params[0] == "self", (cls, params)


def test_a_saved_scan_shows_as_its_html_report_in_a_notebook():
    import dlprof

    folder = os.path.join(REPO, "reports", "recipes", "image_folder")  # the complete sample
    shown = dlprof.load(os.path.join(folder, "results.json"))
    with open(os.path.join(folder, "report.html"), encoding="utf-8") as fh:
        assert shown._repr_html_() == fh.read()

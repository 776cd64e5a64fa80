"""Faults of the target and of the scan as a whole: a bad target or option is one line and exit 2,
nothing measured, nothing left behind; --debug shows the traceback; a stopped scan resumes. Real
scans (tests/test_faults.py plants faults inside the trials)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from fault_cases import BAD_TARGETS, REPO, assert_nothing_left, run_scan
from results_json import chosen

from dlprof.errors import DlprofError
from dlprof.sweep.target import load_target


# End to end: every bad option and target path, and two bad target files; each file fault costs a
# scan its torch import and a trial (8 s under the suite's load). Every file fault is read through
# load_target below, and end to end by benchmarks/reliability.py.
_END_TO_END = [c for c in BAD_TARGETS if c.source is None or c.name in ("import-raises", "several-loaders")]


@pytest.mark.parametrize("case", _END_TO_END, ids=[c.name for c in _END_TO_END])
def test_bad_target_is_one_line_naming_the_fix(case, tmp_path):
    outcome = run_scan(case, str(tmp_path), timeout=120)
    assert outcome.exit_code == case.exit_code, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("dlprof: error:") and case.message in lines[-1], outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert outcome.results is None  # nothing was measured: no results file
    assert_nothing_left(outcome)


@pytest.mark.parametrize("case", [c for c in BAD_TARGETS if c.source is not None],
                         ids=[c.name for c in BAD_TARGETS if c.source is not None])
def test_a_bad_target_file_is_refused_by_load_target_naming_the_fix(case, tmp_path):
    """The scan's trial loads the target with load_target; its DlprofError is the scan's line."""
    target = tmp_path / f"{case.name.replace('-', '_')}.py"
    target.write_text(case.source)
    with pytest.raises(DlprofError) as refused:
        load_target(str(target))
    assert case.message in str(refused.value) and "\n" not in str(refused.value)


def test_debug_shows_the_traceback(tmp_path):
    target = tmp_path / "raises.py"
    target.write_text("def helper():\n    raise RuntimeError('database unreachable')\n\nhelper()\n")
    proc = subprocess.run([sys.executable, "-m", "dlprof", "--debug", "scan", str(target), "--out", str(tmp_path / "o")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "in helper" in proc.stderr


def test_interrupted_scan_resumes(tmp_path):
    """SIGTERM here; Ctrl-C (SIGINT) stops a scan in tests/test_scan.py the same way."""
    sig = signal.SIGTERM
    target = tmp_path / "slow_io.py"
    target.write_text(
        "import time, torch\nfrom torch.utils.data import DataLoader, Dataset\n"
        "class D(Dataset):\n    def __len__(self): return 4000\n"
        "    def __getitem__(self, i):\n        time.sleep(0.002)\n        return torch.tensor([float(i)])\n"
        "loader = DataLoader(D(), batch_size=8)\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dlprof", "scan", str(target), "--out", str(out), "--budget", "25"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                # a shell's background job inherits SIGINT ignored; Ctrl-C is what is tested
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # a trial done and saved, the next one running
        if (out / "results.json").exists() and len(json.loads((out / "results.json").read_text())["trials"]) >= 1:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 10
    before = json.loads((out / "results.json").read_text())
    assert before["complete"] is False and len(before["trials"]) >= 1
    time.sleep(0.5)
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(target) in " ".join(p.info["cmdline"] or [])]

    resumed = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads((out / "results.json").read_text())
    assert after["complete"] is True and chosen(after, "recommendation")["status"] == "ok"
    kept = before["trials"]
    assert after["trials"][:len(kept)] == kept  # the earlier trials are kept, not measured again
    assert any("resumed" in n for n in after["notes"]) and not any(n.startswith("interrupted") for n in after["notes"])
    # a finished scan is not resumed again; a changed target is refused
    again = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "complete" in again.stderr


def test_resume_refuses_a_changed_target(tmp_path):
    target = tmp_path / "t.py"
    target.write_text("import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n"
                      "loader = DataLoader(TensorDataset(torch.zeros(64, 2)), batch_size=8)\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({
        "schema": "dlprof.scan", "schema_version": 2, "target": str(target), "complete": False,
        "trials": [], "target_sha256": "0" * 64}))
    proc = subprocess.run([sys.executable, "-m", "dlprof", "scan", str(target), "--out", str(out), "--resume"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "changed since the scan" in proc.stderr

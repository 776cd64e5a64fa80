"""Each planted fault: the exit code, the one-line message, the partial results kept, and
nothing left behind (processes, /dev/shm files, temporary files). Real scans, real workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from fault_cases import BAD_TARGETS, REPO, TRIAL_FAULTS, can_mount_private_shm, failed_errors, run_scan
from results_json import chosen

import dlprof
from dlprof.errors import DlprofError
from dlprof.sweep.faults import dead_worker_pids, explain_loader_failure
from dlprof.sweep.target import load_target


def _clean(outcome):
    assert not outcome.left_processes, outcome.left_processes
    assert not outcome.left_shm, outcome.left_shm
    assert not outcome.left_tmp, outcome.left_tmp


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
    _clean(outcome)


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


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """The scan of each planted fault, run once and shared by the tests that read it."""
    outcomes = {}

    def outcome(name):
        if name not in outcomes:
            case = next(c for c in TRIAL_FAULTS if c.name == name)
            outcomes[name] = run_scan(case, str(tmp_path_factory.mktemp(name)))
        return outcomes[name]
    return outcome


@pytest.mark.parametrize("case", TRIAL_FAULTS, ids=[c.name for c in TRIAL_FAULTS])
def test_trial_fault_is_reported_and_the_scan_goes_on(case, scanned):
    if case.wrap and not can_mount_private_shm():
        pytest.skip("needs a private mount namespace (root or CAP_SYS_ADMIN) for a small /dev/shm")
    outcome = scanned(case.name)
    assert outcome.exit_code == case.exit_code, outcome.stderr[-3000:]
    assert case.message in outcome.stderr + outcome.stdout
    data = outcome.results
    assert data is not None and data["trials"], "the results measured so far are saved"
    errors = failed_errors(outcome)
    assert any(case.trial_error in e for e in errors), (errors, outcome.stderr[-2000:])
    if case.exit_code == 0:  # the scan finished: the recommendation is a configuration that worked
        assert data["complete"] and chosen(data, "recommendation")["status"] == "ok"
        rec = chosen(data, "recommendation")["config"]
        assert all(t["config"] != rec for t in data["trials"] if t["status"] != "ok")
    report = (Path(outcome.out) / "report.md").read_text()
    assert "## Failed trials" in report
    _clean(outcome)


def test_failing_index_comes_with_the_workers_traceback(scanned):
    outcome = scanned("index-fails-everywhere")
    first = outcome.results["trials"][0]
    assert first["failed_index"] == 37 and first["failure_kind"] == "dataset"
    # the worker's own traceback: the user's line, not the re-raise in the main process
    assert "raise ValueError(f'corrupt record {i}')" in first["traceback"]
    assert "in __getitem__" in first["traceback"]
    fallback = outcome.results["trials"][1]  # the simplest configuration, tried after the user's failed
    assert fallback["config"]["num_workers"] == 0 and "in the main process" in fallback["error"]
    assert outcome.results["complete"] is False
    _clean(outcome)


def test_configurations_that_failed_are_warned_about_and_never_recommended(scanned):
    outcome = scanned("index-fails-in-workers")
    data = outcome.results
    failed = [t for t in data["trials"] if t["status"] == "failed"]
    assert failed and all(t["config"]["num_workers"] > 0 for t in failed)
    assert all("no handle in this process" in t["error"] for t in failed)
    assert chosen(data, "recommendation")["config"]["num_workers"] == 0 and data["speedup"] == 1.0
    assert any("no handle in this process" in w for w in data["warnings"])


def test_hung_trial_leaves_its_stacks_in_the_log(scanned):
    outcome = scanned("worker-hangs")
    timed_out = [t for t in outcome.results["trials"] if t["status"] == "timeout"]
    assert timed_out, ([(t["purpose"], t["status"]) for t in outcome.results["trials"]], outcome.stderr[-2000:])
    log = (Path(outcome.out) / timed_out[0]["log"]).read_text()
    assert "the trial hung" in log
    # py-spy is a dependency and this suite runs as root: the hung worker's own stack is there
    assert "time.sleep" in log or "__getitem__" in log, log[-2000:]
    _clean(outcome)


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


def test_shared_memory_shortfall_is_warned_before_the_trial_runs(scanned):
    case = next(c for c in TRIAL_FAULTS if c.name == "shm-bus-error")
    if not can_mount_private_shm():
        pytest.skip("needs a private mount namespace (root or CAP_SYS_ADMIN) for a small /dev/shm")
    outcome = scanned(case.name)
    lines = outcome.stderr.splitlines()
    warned = next(i for i, ln in enumerate(lines) if "need about" in ln and "/dev/shm has 4 MiB free" in ln)
    died = next(i for i, ln in enumerate(lines) if "killed by SIGBUS" in ln)
    assert warned < died  # said before the first worker trial ran, not explained after
    assert any("docker run --shm-size=" in w for w in outcome.results["warnings"])
    _clean(outcome)


class _Segfaults(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        import ctypes

        ctypes.string_at(0)  # the worker dies of SIGSEGV


def test_a_dead_worker_is_named_by_its_signal_however_torch_words_it():
    """torch reports a dead worker as "exited unexpectedly" (its liveness check) or "is killed by
    signal: ..." (its SIGCHLD handler), at times before the worker's exit code is readable (CI saw
    torch's words in a report): the report names the signal either way."""
    loader = torch.utils.data.DataLoader(_Segfaults(), num_workers=1)
    prof = dlprof.profile(loader)
    with pytest.raises(RuntimeError) as caught:
        next(iter(prof))
    dead = prof.dead_workers(dead_worker_pids(caught.value))
    assert [code for _, _, code in dead] == [-signal.SIGSEGV], str(caught.value)
    line = explain_loader_failure(caught.value, (None, None), loader, dead).error
    assert "was killed by SIGSEGV (Segmentation fault)" in line
    prof.close()
    pid = dead[0][1]
    sigchld = RuntimeError(f"DataLoader worker (pid {pid}) is killed by signal: Segmentation fault. ")
    assert explain_loader_failure(sigchld, (None, None), loader, ()).error == (
        f"DataLoader worker (pid {pid}) was killed by SIGSEGV (Segmentation fault)")

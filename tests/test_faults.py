"""Each planted fault: the exit code, the one-line message, the partial results kept, and
nothing left behind (processes, /dev/shm files, temporary files). Real scans, real workers."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from fault_cases import TRIAL_FAULTS, assert_nothing_left, can_mount_private_shm, failed_errors, run_scan
from results_json import chosen

import dlprof
from dlprof.sweep.faults import dead_worker_pids, explain_loader_failure


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
    assert_nothing_left(outcome)


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
    assert_nothing_left(outcome)


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
    assert_nothing_left(outcome)


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
    assert_nothing_left(outcome)


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

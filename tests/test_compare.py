"""dlprof compare on scan results built by hand, and through the CLI."""
from __future__ import annotations

import subprocess
import sys

import pytest

from dlprof.analysis.compare import compare
from dlprof.records import save_json
from dlprof.scan_records import LoaderSettings, ScanResult, TrialResult

A = LoaderSettings(0, False, None, False, 32)
B = LoaderSettings(2, False, 2, False, 32)


def scan(rates: dict, ci: float = 2.0) -> ScanResult:
    trials = [TrialResult(s, "ok", "workers", samples_per_s=r, ci_pct=ci) for s, r in rates.items()]
    return ScanResult(target="t.py", trials=trials, complete=True)


@pytest.mark.parametrize("new_rates, ci, verdict, regression", [
    ({A: 1000.0, B: 2000.0}, 2.0, "within noise", False),
    ({A: 1200.0, B: 2400.0}, 2.0, "faster", False),
    ({A: 800.0, B: 1600.0}, 2.0, "slower", True),
    ({A: 970.0, B: 1940.0}, 2.0, "slower", False),  # beyond the noise, within the 5% threshold
    ({A: 800.0, B: 1600.0}, 30.0, "within noise", False),  # no verdict from noise
])
def test_change_is_judged_against_spread_and_threshold(new_rates, ci, verdict, regression):
    result = compare(scan({A: 1000.0, B: 2000.0}, ci), scan(new_rates, ci), threshold_pct=5.0)
    assert result.verdict == verdict and result.regression is regression
    assert len(result.rows) == 2


def test_only_matching_configurations_count():
    result = compare(scan({A: 1000.0}), scan({B: 500.0}), 5.0)
    assert result.rows == [] and not result.regression


def test_cli_exit_code_is_1_on_regression(tmp_path):
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    save_json(scan({A: 1000.0, B: 2000.0}).to_dict(), base)
    save_json(scan({A: 700.0, B: 1400.0}).to_dict(), new)
    run = lambda *a: subprocess.run([sys.executable, "-m", "dlprof", "compare", *a], capture_output=True, text=True)
    slower = run(str(base), str(new), "--threshold", "5%")
    assert slower.returncode == 1 and "REGRESSION" in slower.stdout and "-30.0%" in slower.stdout
    tolerant = run(str(base), str(new), "--threshold", "40%")
    assert tolerant.returncode == 0
    again = tmp_path / "again.json"  # a re-run of the base: 1% apart, inside the 2% intervals
    save_json(scan({A: 990.0, B: 2015.0}).to_dict(), again)
    same = run(str(base), str(again))
    assert same.returncode == 0 and "within noise" in same.stdout and "-1.0%" in same.stdout
    folder = tmp_path / "scan-folder"  # the folder a scan wrote its results.json in
    folder.mkdir()
    save_json(scan({A: 700.0, B: 1400.0}).to_dict(), folder / "results.json")
    assert run(str(base), str(folder)).stdout == slower.stdout
    profile = tmp_path / "profile.json"  # not a scan: which file, and what compare takes
    profile.write_text('{"schema": "dlprof.profile", "schema_version": 4}')
    wrong = run(str(base), str(profile))
    assert wrong.returncode == 2 and wrong.stderr.strip() == (
        f"dlprof: error: {profile}: not a dlprof scan results file (missing 'schema': 'dlprof.scan'): "
        "dlprof compare takes two scans' results")
    bad = run(str(base), str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and bad.stderr.startswith("dlprof: error: results file not found")


PACED = """
import os, time
import torch
from torch.utils.data import DataLoader, Dataset

DELAY = 0.002 * float(os.environ.get("PACED_SLOWDOWN", "1"))  # seconds per sample

class Paced(Dataset):
    def __len__(self):
        return 4000
    def __getitem__(self, i):
        time.sleep(DELAY)
        return torch.tensor([float(i)])

loader = DataLoader(Paced(), batch_size=8)
dlprof_config = {"max_workers": 2}
"""


@pytest.mark.solo  # three scans measured one after the other: a test beside them loads some more than others
def test_compare_real_scans_same_is_fine_slowdown_fails(tmp_path):
    import os

    target = tmp_path / "paced.py"
    target.write_text(PACED)

    def scan(name, slowdown):
        env = dict(os.environ, PACED_SLOWDOWN=str(slowdown))
        proc = subprocess.run([sys.executable, "-m", "dlprof", "scan", str(target), "--quick", "--budget", "12",
                               "--no-hotspots", "--max-workers", "2", "--out", str(tmp_path / name)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return str(tmp_path / name / "results.json")

    base, same, slow = scan("a", 1), scan("b", 1), scan("c", 1 / 0.7)  # c: 30% fewer samples/s
    # --threshold as a CI gate on this kind of machine sets it: above the drift between two
    # processes minutes apart (each scan's interval holds only its own windows' noise; two scans
    # of this pipeline read 7.9% apart with a 7.7% spread in one solo run), below the 30% slowdown
    compare = lambda a, b: subprocess.run([sys.executable, "-m", "dlprof", "compare", a, b, "--threshold", "15%"],
                                          capture_output=True, text=True, timeout=60)
    unchanged = compare(base, same)
    assert unchanged.returncode == 0, unchanged.stdout
    regressed = compare(base, slow)
    assert regressed.returncode == 1, regressed.stdout
    assert "REGRESSION" in regressed.stdout

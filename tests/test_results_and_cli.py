"""Results files, the CLI, and the promise that analysis and reports work without torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from torch.utils.data import DataLoader

import dlprof
from dlprof.records import SCHEMA_VERSION, ResultsFileError
from tests.pipelines import BusyDataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Runs Python with torch made unimportable, as on a machine without torch.
NO_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is not installed here")
    sys.meta_path.insert(0, _NoTorch())
""")


def run_cli(*args, cwd=REPO, extra_code=""):
    code = extra_code + "\nfrom dlprof.cli import main\nraise SystemExit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", "import sys\n" + code, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "run.json"
    # epochs of ~0.2 s: the system sampler (10 Hz) sees the workers of each (at 1 ms a sample
    # they lived ~50 ms, and a run alone could miss them)
    prof = dlprof.profile(DataLoader(BusyDataset(32, cost_s=0.01), batch_size=8, num_workers=2))
    for _ in range(2):
        for _ in prof:
            pass
    prof.save(path)
    prof.close()
    return path, prof


def test_save_and_load_round_trip(saved_run):
    path, prof = saved_run
    data = json.loads(path.read_text())
    assert data["schema"] == "dlprof.profile" and data["schema_version"] == SCHEMA_VERSION
    loaded = dlprof.load(path)
    assert loaded.run.batches == prof.profiler.run.batches
    assert loaded.run.epochs == prof.profiler.run.epochs
    assert loaded.to_dataframe().equals(prof.to_dataframe())
    assert loaded.format_summary() == prof.result().format_summary()
    assert any(s.role == "worker" for s in loaded.run.processes)
    assert loaded.run.environment["torch"]


def test_dataframe_has_units_in_column_names(saved_run):
    df = dlprof.load(saved_run[0]).to_dataframe()
    for stage in ("fetch", "collate", "pin", "wait", "transfer", "step"):
        assert f"{stage}_ms" in df.columns
    assert len(df) == 8 and set(df["epoch"]) == {0, 1}


def test_load_rejects_wrong_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultsFileError, match="not valid JSON"):
        dlprof.load(bad)
    bad.write_text(json.dumps({"schema": "dlprof.profile", "schema_version": 999}))
    with pytest.raises(ResultsFileError, match="schema version 999"):
        dlprof.load(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ResultsFileError, match="not a dlprof"):
        dlprof.load(bad)


def test_summary_renders_from_a_saved_file_without_torch(saved_run):
    result = run_cli("summary", str(saved_run[0]), extra_code=NO_TORCH)
    assert result.returncode == 0, result.stderr
    assert "wait share" in result.stdout and "fetch" in result.stdout
    # and `import dlprof` alone does not import torch
    check = subprocess.run([sys.executable, "-c", NO_TORCH + "\nimport dlprof; r = dlprof.load(sys.argv[1]);"
                            "print(len(r.to_dataframe()))", str(saved_run[0])],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "8"


def test_cli_profile_writes_results_and_summary(tmp_path):
    target = tmp_path / "tiny_target.py"
    target.write_text(textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        loader = DataLoader(TensorDataset(torch.arange(64.0)), batch_size=16)
        steps = []
        def train_step(batch):
            steps.append(len(batch[0]))
    """))
    out = tmp_path / "out"
    result = run_cli("profile", str(target), "--epochs", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    loaded = dlprof.load(out / "results.json")
    assert len(loaded.run.batches) == 8 and len(loaded.run.epochs) == 2
    assert (out / "summary.txt").read_text() in result.stdout


@pytest.mark.parametrize("content, args, message", [
    (None, ["profile", "missing_file.py"], "target file not found"),
    ("x = = 1\n", ["profile", "{target}"], "syntax error in"),
    ("raise RuntimeError('no data here')\n", ["profile", "{target}"], "RuntimeError: no data here"),
    # the other faults of a target file: load_target's, read in tests/test_faults_of_targets.py
    (None, ["profile", "{target}", "--epochs", "0"], "expected a positive integer"),
    (None, ["summary", "no_such_results.json"], "results file not found"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, content, args, message):
    target = tmp_path / "target.py"
    target.write_text(content if content is not None else "x = 1\n")
    result = run_cli(*[a.format(target=target) for a in args], cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # argparse adds its usage line


def test_cli_accepts_dataset_factory(tmp_path):
    target = tmp_path / "factory_target.py"
    target.write_text(textwrap.dedent("""
        import torch
        from torch.utils.data import TensorDataset
        def dataset():
            return TensorDataset(torch.arange(40.0))
    """))
    result = run_cli("profile", str(target), "--epochs", "1", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "no train_step" in result.stdout
    assert "batch_size=32" in result.stdout


def test_trace_has_a_track_per_worker_and_the_loop(saved_run, tmp_path):
    path, prof = saved_run
    trace_path = tmp_path / "trace.json"
    dlprof.load(path).save_trace(trace_path)
    events = json.loads(trace_path.read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert set(names.values()) == {"training loop (main)", "worker 0", "worker 1"}
    spans = [e for e in events if e["ph"] == "X"]
    run = prof.profiler.run
    fetches = [e for e in spans if e["name"] == "fetch"]
    assert len(fetches) == len(run.batches)
    for e in fetches:  # each batch's fetch sits on the track of the worker that built it
        batch = next(b for b in run.batches if (b.epoch, b.index) == (e["args"]["epoch"], e["args"]["batch"]))
        assert names[e["tid"]] == f"worker {batch.worker_id}"
        assert e["dur"] >= 0.9 * batch.samples * 1000  # 1 ms of work per sample, in microseconds
    loop = {e["name"] for e in spans if names[e["tid"]] == "training loop (main)"}
    assert {"wait", "step", "startup"} <= loop
    assert all(e["ts"] >= 0 for e in spans)

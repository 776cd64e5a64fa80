"""`dlprof run`: an unmodified program, its DataLoaders profiled; its output, exceptions and exit
code its own. Real subprocesses and workers."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dlprof.analysis.hotspots import hotspots, process_stacks
from dlprof.probe.stacks import find_py_spy
from tests.test_results_and_cli import REPO

DLPROF = [sys.executable, "-m", "dlprof"]

TWO_LOADERS = """
    import sys
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    ds = TensorDataset(torch.arange(96.0))
    train_loader = DataLoader(ds, batch_size=4, num_workers=2)
    val_loader = DataLoader(ds, batch_size=32)
    print("argv", sys.argv[1:])
    for epoch in range(2):
        total = sum(float(b[0].sum()) for b in train_loader)
        print("epoch", epoch, total)
        for b in val_loader:
            pass
"""


def _script(tmp_path, text: str, name: str = "train.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _results(out) -> dict:
    with open(os.path.join(out, "results.json"), encoding="utf-8") as fh:
        return json.load(fh)


def test_a_script_runs_unchanged_and_every_loader_is_profiled(tmp_path):
    script = _script(tmp_path, TWO_LOADERS)
    bare = subprocess.run([sys.executable, script, "--lr", "0.1"], capture_output=True, text=True, timeout=120)
    out = tmp_path / "out"
    run = subprocess.run(DLPROF + ["run", "--out", str(out), "--", sys.executable, script, "--lr", "0.1"],
                         cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == bare.returncode == 0, run.stderr
    assert run.stdout == bare.stdout  # the program's own output, byte for byte
    data = _results(out)
    assert data["schema"] == "dlprof.run" and data["exit_code"] == 0
    loaders = {x["name"]: x for x in data["loaders"]}
    assert set(loaders) == {"train_loader", "val_loader"}
    assert loaders["train_loader"]["site"].endswith("train.py:7")
    train = loaders["train_loader"]["run"]
    assert len(train["epochs"]) == 2 and len(train["batches"]) == 48  # one profile across epochs
    assert {b["worker_id"] for b in train["batches"]} == {0, 1}
    assert len(loaders["val_loader"]["run"]["batches"]) == 6
    # the terminal's summary (stderr) names the training loader first
    assert run.stderr.index("training loader (most batches): train_loader") < run.stderr.index("val_loader")
    assert {"report.md", "report.html", "trace.json"} <= set(os.listdir(out))
    assert not [f for f in os.listdir(out) if f.startswith("process-")]  # merged into results.json


@pytest.fixture(scope="module")
def alone_run(tmp_path_factory):
    """TWO_LOADERS given alone with arguments (`dlprof run script a --b`), run once for the tests
    that read it."""
    tmp = tmp_path_factory.mktemp("alone")
    script = _script(tmp, TWO_LOADERS)
    out = tmp / "out"
    run = subprocess.run(DLPROF + ["run", "--out", str(out), script, "a", "--b"], cwd=REPO, capture_output=True,
                         text=True, timeout=180)
    return run, out, script


def test_a_script_given_alone_runs_with_its_arguments(alone_run):
    run, out, _ = alone_run
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "argv ['a', '--b']"
    assert len(_results(out)["loaders"]) == 2


def test_the_programs_exception_and_exit_code_are_its_own_and_results_are_kept(tmp_path):
    script = _script(tmp_path, """
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        loader = DataLoader(TensorDataset(torch.arange(16.0)), batch_size=4)
        for i, batch in enumerate(loader):
            if i == 2:
                raise RuntimeError("diverged at step 2")
    """)
    bare = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120)
    out = tmp_path / "out"
    run = subprocess.run(DLPROF + ["run", "--out", str(out), "--", sys.executable, script], cwd=REPO,
                         capture_output=True, text=True, timeout=180)
    assert bare.returncode == run.returncode == 1
    assert "RuntimeError: diverged at step 2" in run.stderr
    # the traceback is the program's: its frames, not dlprof's
    assert bare.stderr.strip() in run.stderr
    data = _results(out)
    assert data["exit_code"] == 1 and len(data["loaders"][0]["run"]["batches"]) == 3


def test_sigterm_stops_the_command_and_keeps_what_was_measured(tmp_path):
    script = _script(tmp_path, """
        import time
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        # persistent: workers started once, before the signal; a worker starting as its parent
        # dies reads its parent as pid 1 and never exits (torch's watchdog), with or without dlprof
        loader = DataLoader(TensorDataset(torch.arange(64.0)), batch_size=4, num_workers=2,
                            persistent_workers=True)
        while True:
            for batch in loader:
                time.sleep(0.01)
            print("epoch", flush=True)
    """)
    out = tmp_path / "out"
    proc = subprocess.Popen(DLPROF + ["run", "--out", str(out), "--", sys.executable, script], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "epoch\n"  # a whole epoch measured
    proc.send_signal(signal.SIGTERM)
    # wait for dlprof, not for the pipes: the program's workers, orphaned by the signal as without
    # dlprof, may hold them a few seconds more (torch's workers check their parent every 5 s)
    code = proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    assert code == -signal.SIGTERM  # the program died of the signal, and dlprof as it did
    deadline = time.monotonic() + 30  # its workers see their parent gone (torch checks every 5 s)
    while time.monotonic() < deadline and _processes_of(script):
        time.sleep(0.5)
    assert not _processes_of(script)
    data = _results(out)
    assert data["exit_code"] == -signal.SIGTERM
    assert len(data["loaders"][0]["run"]["batches"]) >= 16


def _processes_of(script: str) -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"]) if script in " ".join(p.info["cmdline"] or [])]


def test_a_program_without_a_dataloader_and_a_missing_command(tmp_path):
    script = _script(tmp_path, "import sys\nprint('hello')\nsys.exit(3)\n")
    out = tmp_path / "out"
    run = subprocess.run(DLPROF + ["run", "--out", str(out), script], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 3 and run.stdout == "hello\n"
    assert "0 DataLoader(s) profiled" in run.stderr and _results(out)["loaders"] == []
    missing = subprocess.run(DLPROF + ["run", "--out", str(tmp_path / "none"), "--", "no-such-command-here"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "dlprof: error: cannot run 'no-such-command-here': No such file or directory"]


@pytest.mark.solo  # two processes' timings compared: a test beside them would load one more
def test_the_stage_table_matches_dlprof_profile(tmp_path):
    """recipes/mnist_mlp.py run as a plain script under `dlprof run`: its fetch and step per
    batch as `dlprof profile` measures them. The two runs are
    separate processes on a shared machine: the fetch (about 30 ms a batch) within 2x, and the
    step (about 3 ms, where a busy host shows most) as its ratio to the fetch of the same run,
    which a host slower during one run leaves as it was, within 2x: a stage counted in the wrong
    place (the wait in the step) moves it far more."""
    recipe = os.path.join(REPO, "recipes", "mnist_mlp.py")
    out = tmp_path / "run"
    run = subprocess.run(DLPROF + ["run", "--out", str(out), recipe], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    # its output as without dlprof: test_a_script_runs_unchanged_and_every_loader_is_profiled
    # compares them byte for byte; here the recipe's own lines are all there
    assert run.stdout.startswith("step   0  loss") and "final loss" in run.stdout
    prof_out = tmp_path / "profile"
    subprocess.run(DLPROF + ["profile", recipe, "--epochs", "1", "--out", str(prof_out)], cwd=REPO, check=True,
                   capture_output=True, timeout=300)
    sys.path.insert(0, REPO)
    from dlprof.analysis.stages import batch_frame
    from dlprof.records import ProfileRun

    ran = ProfileRun.from_dict(_results(out)["loaders"][0]["run"])
    with open(prof_out / "results.json", encoding="utf-8") as fh:
        profiled = ProfileRun.from_dict(json.load(fh))
    a, b = batch_frame(ran), batch_frame(profiled)
    assert len(a) == len(b) == 94
    fetch = a["fetch_ms"].median() / b["fetch_ms"].median()
    assert 0.5 < fetch < 2.0, ("fetch_ms", fetch)
    step_to_fetch = (a["step_ms"].median() / a["fetch_ms"].median()) / (b["step_ms"].median() / b["fetch_ms"].median())
    assert 0.5 < step_to_fetch < 2.0, ("step_ms / fetch_ms", step_to_fetch, a["step_ms"].median(), b["step_ms"].median())


DDP_JOB = """
    import os
    import time

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, Dataset, DistributedSampler


    class Records(Dataset):
        def __len__(self):
            return 512

        def __getitem__(self, i):
            slow = os.environ.get("SLOW_RANK") == os.environ["RANK"]
            time.sleep(0.002 if slow else 0.0001)  # one rank's storage is slower
            return torch.full((16,), float(i)), i % 2


    dist.init_process_group("gloo")
    data = Records()
    train_loader = DataLoader(data, batch_size=16, sampler=DistributedSampler(data))
    model = DistributedDataParallel(torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for x, y in train_loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    dist.barrier()
    dist.destroy_process_group()
"""


def run_torchrun_job(tmp_path, slow_rank: int) -> tuple[subprocess.CompletedProcess, str]:
    """A 2-rank gloo job, unmodified, under `dlprof run -- torchrun ...`."""
    script = _script(tmp_path, DDP_JOB, "ddp.py")
    out = tmp_path / "out"
    env = {**os.environ, "SLOW_RANK": str(slow_rank)}
    proc = subprocess.run(DLPROF + ["run", "--out", str(out), "--", sys.executable, "-m", "torch.distributed.run",
                                    "--standalone", "--nproc_per_node", "2", script],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    return proc, str(out)


@pytest.mark.solo  # two ranks compared side by side: run alone
def test_a_torchrun_job_names_the_slowed_rank(tmp_path):
    proc, out = run_torchrun_job(tmp_path, slow_rank=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = _results(out)
    assert sorted(x["rank"] for x in data["loaders"]) == [0, 1]  # each rank wrote its own file
    assert "stragglers: rank 1" in proc.stderr
    with open(os.path.join(out, "ranks.md"), encoding="utf-8") as fh:
        ranks = fh.read()
    assert "**Stragglers:** rank 1" in ranks and "BatchSampler(DistributedSampler)" in ranks


def test_dlprof_report_renders_a_run_again_from_its_folder(alone_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(alone_run[1], out)
    before = {f: (out / f).read_text() for f in ("report.md", "report.html")}
    for f in before:
        (out / f).unlink()
    again = subprocess.run(DLPROF + ["report", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    for f, text in before.items():
        assert (out / f).read_text() == text, f
    # a run stopped before it merged: the processes' own files are merged by `dlprof report`
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "process-1.json").write_text((out / "results.json").read_text())
    again = subprocess.run(DLPROF + ["report", str(stopped)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(_results(stopped)["loaders"]) == 2 and (stopped / "report.html").exists()
    # its summary, as the run printed it at its end (it read a run's results as a profile's)
    summary = subprocess.run(DLPROF + ["summary", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.count("== ") == 2 and "training loader" in summary.stdout.split("\n")[0]


PLANTED = """
    import time
    import torch
    from torch.utils.data import DataLoader, Dataset

    def planted_decode(i):
        end = time.perf_counter() + 0.004
        while time.perf_counter() < end:  # pure Python: py-spy sees this frame
            pass
        return torch.tensor([float(i)])

    def planted_step(batch):
        end = time.perf_counter() + 0.006
        while time.perf_counter() < end:
            pass

    class Planted(Dataset):
        def __len__(self):
            return 240

        def __getitem__(self, i):
            return planted_decode(i)

    train_loader = DataLoader(Planted(), batch_size=8, num_workers=2)
    for epoch in range(2):
        for batch in train_loader:
            planted_step(batch)
    print("done")
"""


@pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed")
def test_stacks_name_the_planted_functions_of_the_workers_and_the_step(tmp_path):
    """--stacks: py-spy samples the command and its workers from dlprof run; the report gives the
    hotspots by stage of the process that iterated the loader (workers included)."""
    script = _script(tmp_path, PLANTED)
    out = tmp_path / "out"
    proc = subprocess.run(DLPROF + ["run", "--stacks", "--out", str(out), script], capture_output=True, text=True,
                          cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "done\n"
    data = _results(out)
    assert data["schema_version"] == 2 and data["stacks_raw"] and not data["stacks_note"]
    assert not (out / "stacks.txt").exists()  # kept in results.json
    pid = data["loaders"][0]["pid"]
    table = hotspots(process_stacks(data["stacks_raw"], pid))
    top = {stage: table[(table.stage == stage) & (table.rank_by == "self")].function.iloc[0]
           for stage in ("fetch", "step")}
    assert top == {"fetch": "planted_decode", "step": "planted_step"}
    assert "import" in set(table.stage)  # the program's start-up is not its step
    # the line's stages come in the order of their sampled time, which a busy machine changes
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith(f"hotspots (pid {pid}: train_loader): ")), "")
    assert "fetch: " in line and "planted_decode" in line, proc.stderr[-2000:]
    md = (out / "report.md").read_text()
    assert "## Hotspots" in md and "`planted_decode`" in md
    html = (out / "report.html").read_text()
    assert "<table class='hotspots'>" in html and html.count("class='flame'") >= 2


def test_a_run_without_stacks_has_none_and_a_shell_command_is_sampled_through_its_children(alone_run, tmp_path):
    """Without --stacks the report has no hotspots section. With it, a command that is not Python
    (a shell whose command line holds ';') is sampled through its Python children."""
    proc, out, script = alone_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Hotspots" not in (out / "report.md").read_text() and "hotspots" not in proc.stderr
    if find_py_spy() is None:
        return
    out = tmp_path / "shell"
    proc = subprocess.run(DLPROF + ["run", "--stacks", "--out", str(out), "--", "sh", "-c",
                                    f"{sys.executable} {script}; exit 0"],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = _results(out)
    assert len(data["loaders"]) == 2 and data["stacks_raw"]
    pid = data["loaders"][0]["pid"]
    assert f"hotspots (pid {pid}: train_loader, val_loader): " in proc.stderr


TUNABLE = """
    import time
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Storage(Dataset):
        def __len__(self):
            return 256

        def __getitem__(self, i):
            time.sleep(0.002)
            return torch.tensor([i])

    torch.manual_seed(0)
    train_loader = DataLoader(Storage(), batch_size=8, shuffle=True)
    val_loader = DataLoader(Storage(), batch_size=64)
    for epoch in range(8):
        order = [int(i) for b in train_loader for i in b.flatten()]
        print("epoch", epoch, sorted(order) == list(range(256)), hash(tuple(order)) % 10**8)
        print("val", sum(int(b.sum()) for b in val_loader))
"""


def test_autotune_tunes_the_shuffled_loader_and_changes_no_output(tmp_path):
    """dlprof run --autotune: the training loader (it shuffles) is tuned online, the validation
    loader only profiled; the program prints each epoch's order: the same as without dlprof."""
    script = _script(tmp_path, TUNABLE)
    bare = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    out = tmp_path / "out"
    run = subprocess.run(DLPROF + ["run", "--autotune", "--autotune-budget", "5", "--out", str(out), script],
                         capture_output=True, text=True, cwd=REPO, timeout=240, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert bare.returncode == run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == bare.stdout
    loaders = {x["name"]: x for x in _results(out)["loaders"]}
    assert loaders["train_loader"]["run"]["tuning"]["windows"]  # measured windows
    assert loaders["val_loader"]["run"]["tuning"] is None
    assert "autotune: " in (out / "report.md").read_text()

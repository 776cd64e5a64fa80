"""Plant every fault of tests/fault_cases.py, scan it, and write what happened as Markdown.

    python benchmarks/reliability.py [--out reports/reliability.md]

Per fault: the exit code (and the one expected), the line dlprof printed, what the failed
trials say, whether the results file and the report were kept, how long the scan took, and
what was left behind: processes, /dev/shm files, temporary files. Also an interrupted scan
(SIGINT) and its --resume. The same cases are asserted by tests/test_faults*.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from fault_cases import BAD_TARGETS, REPO, TRIAL_FAULTS, can_mount_private_shm, run_scan  # noqa: E402


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _last_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("dlprof: error:")]
    return lines[-1] if lines else ""


def _row(case, outcome) -> str:
    trials = (outcome.results or {}).get("trials", [])
    failed = [t for t in trials if t["status"] != "ok"]
    said = _last_error_line(outcome.stderr) or (failed[0]["error"] if failed else "")
    kept = f"{len(trials)} trials" if outcome.results is not None else "none (nothing measured)"
    if outcome.results is not None:
        kept += ", complete" if outcome.results.get("complete") else ", partial"
    left = outcome.left_processes + outcome.left_shm + outcome.left_tmp
    ok = outcome.exit_code == case.exit_code and (case.message in outcome.stderr + outcome.stdout) and not left
    if case.trial_error:
        ok = ok and any(case.trial_error in t["error"] for t in failed)
    return (f"| {case.name} | {_cell(case.fault, 90)} | {outcome.exit_code} (expected {case.exit_code}) | "
            f"{_cell(said)} | {len(failed)} | {kept} | {outcome.seconds:.1f} | "
            f"{'nothing' if not left else _cell(', '.join(left), 80)} | {'yes' if ok else 'NO'} |")


def _interrupt_and_resume(workdir: str) -> list[str]:
    target = os.path.join(workdir, "slow_io.py")
    with open(target, "w", encoding="utf-8") as fh:
        fh.write("import time, torch\nfrom torch.utils.data import DataLoader, Dataset\n"
                 "class D(Dataset):\n    def __len__(self): return 4000\n"
                 "    def __getitem__(self, i):\n        time.sleep(0.002)\n        return torch.tensor([float(i)])\n"
                 "loader = DataLoader(D(), batch_size=8)\n")
    out = os.path.join(workdir, "out")
    cmd = [sys.executable, "-m", "dlprof", "scan", target, "--out", out, "--budget", "40"]
    lines = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                # a shell's background job inherits SIGINT ignored; Ctrl-C is what is tested
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        results = os.path.join(out, "results.json")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if os.path.exists(results) and len(json.load(open(results, encoding="utf-8"))["trials"]) >= 2:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        stopped_s = time.monotonic() - sent
        before = json.load(open(results, encoding="utf-8"))
        lines.append(f"| {sig.name} during trial {len(before['trials']) + 1} | exit {proc.returncode} after "
                     f"{stopped_s:.1f} s | {len(before['trials'])} trials kept, complete={before['complete']} | "
                     f"report.md written: {os.path.exists(os.path.join(out, 'report.md'))} |")
        started = time.monotonic()
        resumed = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=240)
        after = json.load(open(results, encoding="utf-8"))
        same = after["trials"][:len(before["trials"])] == before["trials"]
        lines.append(f"| `--resume` | exit {resumed.returncode} after {time.monotonic() - started:.1f} s | "
                     f"{len(after['trials'])} trials, complete={after['complete']}, the first "
                     f"{len(before['trials'])} unchanged: {same} | speedup {after.get('speedup')} |")
        os.rename(out, out + f"-{sig.name}")
    # dlprof itself killed outright: nothing runs its clean-up; the trial dies with it
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = os.path.join(out, "results.json")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if os.path.exists(results) and len(json.load(open(results, encoding="utf-8"))["trials"]) >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    kept = json.load(open(results, encoding="utf-8"))
    import psutil

    left, waited = [], 0.0
    while waited < 15:  # orphaned DataLoader workers notice their parent is gone within seconds
        left = [p.pid for p in psutil.process_iter(["cmdline"]) if target in " ".join(p.info["cmdline"] or [])]
        if not left:
            break
        time.sleep(0.5)
        waited += 0.5
    lines.append(f"| SIGKILL of dlprof during trial {len(kept['trials']) + 1} | the trial died with it; processes "
                 f"left {waited:.1f} s later: {len(left)} | {len(kept['trials'])} trials in results.json (valid JSON) | |")
    resumed = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=240)
    after = json.load(open(results, encoding="utf-8"))
    lines.append(f"| `--resume` | exit {resumed.returncode} | {len(after['trials'])} trials, complete={after['complete']} | |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "reports", "reliability.md"))
    args = parser.parse_args()
    head = ("| fault | planted | exit code | what dlprof said | failed trials | results kept | seconds | "
            "left behind | as expected |\n|---|---|---|---|---|---|---|---|---|")
    lines = ["# dlprof reliability: planted faults", "",
             f"Generated by `python benchmarks/reliability.py` on {platform.platform()}, Python "
             f"{platform.python_version()}, {os.cpu_count()} CPUs. Each fault is planted in a real target "
             "and scanned with real worker processes (the cases live in `tests/fault_cases.py`; "
             "`tests/test_faults.py` asserts the same). \"Left behind\": processes whose command line "
             "names the target, new `torch_*` files in /dev/shm, files in the scan's private TMPDIR.", ""]
    for title, cases in (("Bad targets and options", BAD_TARGETS), ("Faults during trials", TRIAL_FAULTS)):
        lines += [f"## {title}", "", head]
        for case in cases:
            if case.wrap and not can_mount_private_shm():
                lines.append(f"| {case.name} | {_cell(case.fault, 90)} | not run: no private mount namespace here | | | | | | |")
                continue
            with tempfile.TemporaryDirectory() as workdir:
                outcome = run_scan(case, workdir)
                lines.append(_row(case, outcome))
            print(lines[-1], flush=True)
        lines.append("")
    lines += ["## Interruption and --resume", "", "| event | outcome | results | |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as workdir:
        lines += _interrupt_and_resume(workdir)
    print("\n".join(lines[-4:]), flush=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

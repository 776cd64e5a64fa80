"""``dlprof run``: a command run unchanged, with every DataLoader of its Python processes profiled.

The command gets ``dlprof/bootstrap`` (a ``sitecustomize``) first on its PYTHONPATH and
``DLPROF_RUN_OUT`` in its environment, both for that command only; its stdin, stdout, stderr and
exit code are its own. Each Python process that iterates a DataLoader writes
``process-<pid>.json`` into the output folder at exit; when the command ends they are merged into
``results.json`` with report.md, report.html and trace.json (the training loader's run), and the
per-loader summaries go to stderr. Ctrl-C reaches the command from the terminal and dlprof waits
for it; SIGTERM sent to dlprof is passed to the command; what its processes wrote is merged
either way, and dlprof ends as the command did (its exit code, or the same signal). With
``stacks``, py-spy samples the command's process and all its children from here (an ancestor may
read them where ptrace is restricted to descendants) until the command ends. No torch in this
process.
"""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

from dlprof.errors import DlprofError
from dlprof.probe.stacks import StackSampler
from dlprof.records import ResultsFileError
from dlprof.run_records import AUTOTUNE_ENV, OUT_ENV, SYNC_ENV, RunResult, merge, ranks_merged

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command_of(argv: list[str]) -> list[str]:
    """``train.py ARGS`` runs as ``python train.py ARGS`` with this interpreter (like
    ``python -m cProfile train.py``); anything else is run as given."""
    if argv and argv[0].endswith(".py") and os.path.isfile(argv[0]):
        return [sys.executable, *argv]
    return list(argv)


def default_out(command: list[str]) -> str:
    script = next((os.path.splitext(os.path.basename(a))[0] for a in command if a.endswith(".py")),
                  os.path.basename(command[0]) if command else "command")
    return os.path.join("reports", f"run-{script}-{time.strftime('%Y%m%d-%H%M%S')}")


def environment_for(out_dir: str, device_sync: bool = False, autotune: bool = False,
                    autotune_s: float | None = None) -> dict[str, str]:
    env = dict(os.environ)
    path = [BOOTSTRAP] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env[OUT_ENV] = os.path.abspath(out_dir)
    env["DLPROF_PACKAGE_ROOT"] = PACKAGE_ROOT  # the command's processes import this dlprof
    if device_sync:
        env[SYNC_ENV] = "1"
    if autotune:
        env[AUTOTUNE_ENV] = repr(float(autotune_s)) if autotune_s else "default"
    return env


def run(command: list[str], out_dir: str, stacks: bool = False, device_sync: bool = False,
        autotune: bool = False, autotune_s: float | None = None) -> tuple[int, RunResult]:
    """Run ``command`` to its end; (its exit code, the merged profiles)."""
    os.makedirs(out_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(out_dir, "process-*.json")):
        os.unlink(stale)  # an earlier run's files are not this run's
    try:
        child = subprocess.Popen(command, env=environment_for(out_dir, device_sync, autotune, autotune_s))
    except OSError as exc:
        raise DlprofError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
    sampler = None
    if stacks:
        sampler = StackSampler(os.path.join(out_dir, "stacks.txt"))  # py-spy's default rate, 100 Hz
        sampler.start(child.pid)

    def forward(signum, frame):
        child.send_signal(signum)

    # Ctrl-C reaches the command from the terminal itself (one process group): dlprof waits for
    # it to end; SIGTERM sent to dlprof alone is passed on
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                signal.SIGTERM: signal.signal(signal.SIGTERM, forward)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sampled = sampler.collect() if sampler is not None else None  # py-spy ends with the command
    parts = []
    for path in sorted(glob.glob(os.path.join(out_dir, "process-*.json"))):
        try:
            parts.append(RunResult.load(path))
        except ResultsFileError as exc:  # a process killed while writing: the others still count
            print(f"dlprof run: skipped {path}: {exc}", file=sys.stderr)
            continue
        os.unlink(path)  # merged into results.json
    result = merge(parts, command, code)
    result.device_sync = device_sync
    if sampled is not None:  # kept in results.json
        result.stacks_raw, result.stacks_note = sampled[0], sampled[1] or ""
    return code, result


def ranks_of(result: RunResult):
    """A torchrun job's ranks side by side (``analysis.ranks.RankAnalysis``), None outside one."""
    merged = ranks_merged(result)
    if merged is None:
        return None
    from dlprof.analysis.ranks import analyse_ranks

    return analyse_ranks(merged)


def write_reports(result: RunResult, out_dir: str, ranks=None) -> list[str]:
    """results.json, report.md, report.html, trace.json (the training loader's run) and, with
    ``ranks`` (``ranks_of(result)``), ranks.md naming the stragglers."""
    from dlprof.report.run_report import RunHtmlRenderer, RunMarkdownRenderer, run_report
    from dlprof.report.trace import TraceRenderer

    model = run_report(result)
    written = []
    path = os.path.join(out_dir, "results.json")
    result.save(path)
    written.append(path)
    for name, text in (("report.md", RunMarkdownRenderer().render(model)),
                       ("report.html", RunHtmlRenderer().render(model))):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        written.append(path)
    if ranks is not None:
        from dlprof.report.distributed_text import DistributedMarkdownRenderer

        path = os.path.join(out_dir, "ranks.md")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(DistributedMarkdownRenderer().render(ranks))
        written.append(path)
    top = result.headline()
    if top is not None:
        path = os.path.join(out_dir, "trace.json")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(TraceRenderer().render(top.run))
        written.append(path)
    return written

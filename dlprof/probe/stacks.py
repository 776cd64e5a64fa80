"""Python stacks of a process and its workers, sampled by py-spy from outside.

``py-spy record --subprocesses --format raw --function`` writes one line per distinct stack: the
process frames (``process PID:"cmd"``), then the Python frames root first (``func (file:line)``,
the line where the function starts), then a count. py-spy reads
the target's memory through ptrace, so the target runs untouched (``--nonblocking``: it is not
even paused); where ptrace is not allowed (containers without SYS_PTRACE) it cannot attach,
and the caller gets the reason instead of stacks.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

RATE_HZ = 100
STACKS_PER_S = 300  # py-spy's work across all processes: 100 Hz for a main process and 2 workers


def stack_rate_hz(processes: int) -> int:
    """Sampling rate per process: py-spy reads every process each tick, so its cost grows with
    the number of workers. Beyond three processes the rate drops (not under 10 Hz) to keep that
    cost flat, so a many-worker configuration is not slowed more than a small one."""
    return max(10, min(RATE_HZ, STACKS_PER_S // max(1, processes)))


def find_py_spy() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return shutil.which("py-spy") or (beside if os.path.exists(beside) else None)


class StackSampler:
    """``start(pid)`` ... ``stop()``; then ``output`` (raw stacks file) or ``problem`` (why not)."""

    def __init__(self, output: str, rate_hz: int = RATE_HZ) -> None:
        self.output = output
        self.rate_hz = rate_hz
        self.problem: str | None = None
        self._proc: subprocess.Popen | None = None

    def start(self, pid: int) -> None:
        exe = find_py_spy()
        if exe is None:
            self.problem = "py-spy is not installed (pip install py-spy)"
            return
        self._proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", str(self.rate_hz),
             "--function", "--nonblocking", "--output", self.output],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask py-spy to write what it has (it also stops by itself when the target exits)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if not os.path.exists(self.output) or os.path.getsize(self.output) == 0:
            self.problem = _why(out or "")

    def collect(self) -> tuple[str, str | None]:
        """Stop, then (the raw stacks, or "", and why there are none, or None); the file is removed."""
        self.stop()
        raw = ""
        if os.path.exists(self.output):
            with open(self.output, encoding="utf-8", errors="replace") as fh:
                raw = fh.read()
            os.unlink(self.output)
        return raw, self.problem or (None if raw else "py-spy recorded no stack")


def _why(output: str) -> str:
    text = " ".join(output.split())
    if "Permission" in text or "ptrace" in text.lower() or "Operation not permitted" in text:
        return ("py-spy could not attach to the trial (ptrace not permitted): run as root, or give the "
                "container SYS_PTRACE (docker run --cap-add SYS_PTRACE), or set "
                "/proc/sys/kernel/yama/ptrace_scope to 0")
    return f"py-spy recorded nothing: {text[-300:] or 'no output'}"

"""dlprof.progress: a bar under the lines on a real (pseudo-)terminal, plain lines elsewhere."""
from __future__ import annotations

import fcntl
import io
import os
import re
import select
import signal
import struct
import termios
import threading
import time

import pytest

from dlprof.progress import ERASE, PlainLines, TerminalProgress, progress_for

BAR = re.compile(r"dlprof scan \[([#.]+)\] (\d+)/(\d+) s")


def _read(fd, wait_s=0.3) -> str:
    """What the terminal has received, waiting up to ``wait_s`` for more."""
    chunks = []
    deadline = time.monotonic() + wait_s
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return b"".join(chunks).decode()
        chunks.append(os.read(fd, 65536))


@pytest.fixture
def terminal(monkeypatch):
    """(master fd, the slave as a text stream) of a pseudo-terminal 60 columns wide."""
    monkeypatch.setenv("TERM", "xterm")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    stream = open(slave, "w")
    assert stream.isatty()
    yield master, stream
    stream.close()
    os.close(master)


def _progress_threads():
    return [t for t in threading.enumerate() if t.name == "dlprof-progress"]


def test_terminal_gets_lines_above_a_ticking_bar_that_close_erases(terminal):
    master, stream = terminal
    progress = progress_for(stream, 100.0, time.monotonic() - 10)
    assert isinstance(progress, TerminalProgress)
    line = "[trial 3, 80 s left; no result yet] baseline: as configured in the target"
    progress(line)
    progress("    1,234 samples/s (+/- 1.0%), wait 50% of the loop")
    first = _read(master)
    # each line whole, on a line of its own (the terminal turns "\n" into "\r\n"), after an erase
    assert ERASE + line + "\r\n" in first
    assert ERASE + "    1,234 samples/s (+/- 1.0%), wait 50% of the loop\r\n" in first
    bars = BAR.findall(first)
    assert bars and bars[-1][2] == "100" and 10 <= int(bars[-1][1]) <= 12
    assert first.endswith("  trial 3")  # the bar is last, below the lines, and names the trial
    filled = bars[-1][0].count("#") / len(bars[-1][0])
    assert 0.05 <= filled <= 0.15  # about 10 of 100 s
    # the thread redraws it while nothing is printed: the seconds tick
    later = _read(master, wait_s=1.6)
    redraws = BAR.findall(later)
    assert len(redraws) >= 2 and later.startswith(ERASE)
    assert int(redraws[-1][1]) > int(bars[-1][1])
    assert _progress_threads()
    progress.close()
    assert _read(master).endswith(ERASE)  # the bar erased, nothing after it
    assert not _progress_threads()
    time.sleep(0.7)
    assert _read(master, wait_s=0.1) == ""  # no redraw after close
    progress("after close")
    assert _read(master) == "after close\r\n"
    progress.close()  # twice is fine


def test_bar_fits_the_terminal_and_is_full_past_the_budget(terminal):
    master, stream = terminal
    progress = TerminalProgress(30.0, time.monotonic() - 45, stream)  # 45 s into a 30 s budget
    progress("[trial 12, 0 s left] side by side, in turns of 0.5 s: baseline against the recommendation")
    out = _read(master)
    progress.close()
    bar = out.split("\r\n")[-1]
    assert len(bar) <= 59 and "45/30 s  trial 12" in bar  # never wraps: narrower than 60 columns
    assert set(BAR.search(bar).group(1)) == {"#"}  # the fraction clamped to 1
    fcntl.ioctl(stream.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 24, 20, 0, 0))
    narrow = TerminalProgress(30.0, time.monotonic(), stream)
    assert len(narrow.bar()) <= 19 and "[" not in narrow.bar()
    narrow.close()
    _read(master)


def test_a_forked_child_can_still_print(terminal):
    """A trial is a forked child: the lock taken around fork() must be free in the child."""
    master, stream = terminal
    progress = TerminalProgress(100.0, time.monotonic(), stream, interval_s=0.001)
    for _ in range(5):
        pid = os.fork()
        if pid == 0:
            try:
                progress("from the child")
            finally:
                os._exit(0)
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung on the progress lock")
            _read(master, wait_s=0.01)
    progress.close()
    _read(master)


def test_not_a_terminal_gets_exactly_the_lines():
    lines = ["dlprof scan t.py: budget 30 s, 2 cores; results in out/",
             "[trial 1, 28 s left; no result yet] baseline: as configured in the target",
             "    1,234 samples/s (+/- 1.0%), wait 50% of the loop"]
    text = io.StringIO()
    progress = progress_for(text, 30.0, time.monotonic())
    assert isinstance(progress, PlainLines)
    for line in lines:
        progress(line)
    progress.close()
    assert text.getvalue() == "".join(line + "\n" for line in lines)
    read_end, write_end = os.pipe()
    with open(write_end, "w") as pipe:
        progress = progress_for(pipe, 30.0, time.monotonic())
        for line in lines:
            progress(line)
        time.sleep(0.6)  # no thread redraws anything
        progress.close()
    with open(read_end) as fh:
        assert fh.read() == "".join(line + "\n" for line in lines)
    assert not _progress_threads()


def test_dumb_terminal_gets_plain_lines(terminal, monkeypatch):
    monkeypatch.setenv("TERM", "dumb")  # Emacs' shell: a terminal that cannot erase a line
    assert isinstance(progress_for(terminal[1], 30.0, time.monotonic()), PlainLines)

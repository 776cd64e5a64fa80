"""Progress of a long command on stderr: a bar kept at the bottom of a terminal, plain lines
anywhere else (a pipe, a CI log, Jupyter). No torch, no sweep: the CLI wires it in."""
from __future__ import annotations

import os
import re
import shutil
import threading
import time
from typing import TextIO

ERASE = "\r\x1b[K"  # back to the start of the line, clear it
_TRIAL = re.compile(r"\[(trial \d+)")
# One lock for every bar's writes (there is one terminal). Taken around fork() too: a trial is a
# forked child, which must not inherit the stream's buffer locked by the redrawing thread.
_LOCK = threading.Lock()
_fork_hooks = False


class PlainLines:
    """Each line as it comes, flushed: what a non-terminal gets."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class TerminalProgress:
    """Lines scroll above a one-line bar at the bottom, ``dlprof scan [####....] 52/120 s  trial 7``,
    redrawn every ``interval_s`` by a daemon thread so the seconds tick during a long trial.
    Elapsed time on the time.monotonic() clock from ``started_at``; ``close()`` erases the bar."""

    def __init__(self, total_s: float, started_at: float, stream: TextIO, label: str = "dlprof scan",
                 interval_s: float = 0.5) -> None:
        global _fork_hooks
        self.total_s, self.started_at, self.stream, self.label = total_s, started_at, stream, label
        self.interval_s = interval_s
        self.status = ""  # "trial 7", from the last line that named one
        self.closed = False
        if not _fork_hooks and hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_LOCK.acquire, after_in_parent=_LOCK.release,
                                after_in_child=_LOCK.release)
            _fork_hooks = True
        self._stop = threading.Event()
        with _LOCK:
            self._write(self.bar())
        self._thread = threading.Thread(target=self._redraw, name="dlprof-progress", daemon=True)
        self._thread.start()

    def __call__(self, line: str) -> None:
        found = _TRIAL.match(line)
        with _LOCK:
            if found:
                self.status = found.group(1)
            self._write(line + "\n" if self.closed else ERASE + line + "\n" + self.bar())

    def bar(self) -> str:
        """The bar's text, one character narrower than the terminal (a full line could wrap)."""
        elapsed = max(0.0, time.monotonic() - self.started_at)
        fraction = min(1.0, elapsed / self.total_s) if self.total_s > 0 else 1.0
        tail = f" {elapsed:.0f}/{self.total_s:.0f} s" + (f"  {self.status}" if self.status else "")
        room = _columns(self.stream) - 1
        width = min(40, room - len(self.label) - len(tail) - 3)  # " [" and "]"
        if width < 5:  # a narrow terminal: the numbers only, cut to fit
            return (self.label + tail)[:max(0, room)]
        filled = int(fraction * width)
        return f"{self.label} [{'#' * filled}{'.' * (width - filled)}]{tail}"

    def close(self) -> None:
        """Stop the redrawing thread and erase the bar; later lines are printed plain."""
        self._stop.set()
        try:
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=5)
        finally:  # erased even when a second Ctrl-C cuts the wait short
            with _LOCK:
                if not self.closed:
                    self.closed = True
                    self._write(ERASE)

    def _redraw(self) -> None:
        while not self._stop.wait(self.interval_s):
            with _LOCK:
                if self.closed:
                    return
                try:
                    self._write(ERASE + self.bar())
                except (OSError, ValueError):  # the terminal went away
                    return

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _columns(stream: TextIO) -> int:
    """The stream's terminal width; else the environment's ($COLUMNS, stdout, 80)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns if columns > 0 else shutil.get_terminal_size().columns


def progress_for(stream: TextIO, total_s: float, started_at: float, label: str = "dlprof scan"):
    """A bar on a terminal (not TERM=dumb, which cannot erase a line), plain lines elsewhere.
    Either is called with each line and closed at the end."""
    try:
        terminal = bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        terminal = False
    return TerminalProgress(total_s, started_at, stream, label) if terminal else PlainLines(stream)

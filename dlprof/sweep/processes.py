"""The processes of one trial: its fork and the wait for it, its process group, its workers'
shared-memory leftovers, and the stacks taken when it hangs. Kept apart from the measurement so
each reads on its own."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def die_with_parent() -> None:
    """If the scan process itself is killed (SIGKILL, OOM killer), the trial goes too: its
    workers then notice their parent is gone and exit. Linux only; elsewhere a no-op."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def kill_group(pgid: int) -> None:
    """Kill the trial's process group and any descendant that left it, then remove the
    shared-memory files a killed process can leave (torch names them torch_<pid>_...)."""
    import psutil

    try:
        strays = psutil.Process(pgid).children(recursive=True)
    except psutil.Error:  # the trial process is gone; its group may not be
        strays = []
    pids = {pgid} | {p.pid for p in strays} | set(_group_pids(pgid))
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in strays:
        try:
            proc.kill()
        except psutil.Error:
            pass
    # a SIGKILL lands asynchronously: a worker inside shm_open can still create its file, so
    # look for leftovers only once every process of the trial is gone
    psutil.wait_procs(procs, timeout=3)
    _remove_shm_files(pids)


def reap(pid: int) -> None:
    """Collect the killed trial process (psutil may have reaped it while waiting for it)."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _group_pids(pgid: int) -> list[int]:
    import psutil

    pids = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid:
                pids.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return pids


SHM_DIR = "/dev/shm"


def _remove_shm_files(pids: set[int]) -> None:
    try:
        names = os.listdir(SHM_DIR)
    except OSError:  # no /dev/shm on this system
        return
    prefixes = tuple(f"torch_{pid}_" for pid in pids)
    for name in names:
        if name.startswith(prefixes):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
            except OSError:  # gone already, or not ours to remove
                pass


_MAX_DUMPS = 6  # py-spy takes about 0.2 s a process: the trial process and its first workers


def dump_stacks(pgid: int, log_path: str) -> None:
    """Append the Python stacks of the trial's processes (py-spy dump) to its log."""
    from dlprof.probe.stacks import find_py_spy

    py_spy = find_py_spy()
    with open(log_path, "a", encoding="utf-8") as log:
        if py_spy is None:
            log.write("\n[dlprof] the trial hung; py-spy is not installed, so no stacks were taken\n")
            return
        for pid in sorted(_group_pids(pgid))[:_MAX_DUMPS]:
            try:
                out = subprocess.run([py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=10)
                text = out.stdout or out.stderr
            except subprocess.TimeoutExpired:
                text = "py-spy dump did not answer within 10 s\n"
            log.write(f"\n[dlprof] the trial hung; stack of process {pid} (py-spy dump):\n{text}")


def fork_and_wait(child, log_path: str, timeout_s: float) -> int | None:
    """Fork; the child runs ``child(tmp_dir)``, which never returns. Wait at most ``timeout_s``:
    the child's wait status, or None when it overran (its stacks are appended to the log first).
    Either way its process group (DataLoader workers too) is killed and its temporary folder removed."""
    # short, in the system's temp folder: multiprocessing puts sockets there (paths of at most
    # 108 bytes); removed after the trial
    base = tempfile.gettempdir()
    tmp_dir = tempfile.mkdtemp(prefix="dlp", dir=base if len(base) <= 60 else "/tmp")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        child(tmp_dir)
    deadline = time.monotonic() + timeout_s
    status = None
    try:
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif time.monotonic() > deadline:
                dump_stacks(pid, log_path)  # where it hung, before the evidence is gone
                kill_group(pid)
                reap(pid)
                return None
            else:
                time.sleep(0.02)
        kill_group(pid)  # DataLoader workers the child left behind
        return status
    except BaseException:  # Ctrl-C or an error here: leave no trial running
        kill_group(pid)
        if status is None:
            reap(pid)
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # the trial's temporary files

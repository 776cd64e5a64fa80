"""What went wrong in a trial, in words a user can act on.

A trial fails in the loader (the dataset or collate_fn raised, in a worker or in the main
process; a worker died), in the training step (an exception, CUDA out of memory), or as a
whole (the trial process died, or hung and was stopped). Each becomes a ``Failure``: a kind,
one line, the dataset index when it can be found, and the traceback (the worker's own one
when the error came from a worker).
"""
from __future__ import annotations

import re
import traceback as tb
from dataclasses import dataclass

# kinds
DATASET, COLLATE, WORKER_DIED, SHM, OOM, STEP, CRASH, TIMEOUT = (
    "dataset", "collate", "worker-died", "shared-memory", "out-of-memory", "step", "crash", "timeout")

# torch's words for a dead worker, from its SIGCHLD handler or its liveness check: "DataLoader
# worker (pid 123) is killed by signal: ...", "DataLoader worker (pid(s) 123, 456) exited unexpectedly"
_WORKER_DEATH = re.compile(r"DataLoader worker \(pid(?:\(s\))? (\d+(?:, \d+)*)\)")
_TORCH_KILLED = re.compile(r"DataLoader worker \(pid (\d+)\) is killed by signal: ([^.]+)\.")
_WORKER_CAUGHT = re.compile(r"Caught (\w+) in DataLoader worker process (\d+)\.\s*\nOriginal (Traceback[\s\S]*)")
_SHM_ADVICE = ("shared memory (/dev/shm) ran out: batches travel from workers through it, about "
               "batch bytes x prefetch_factor x num_workers at once. Raise it (docker run --shm-size=8g, "
               "or a larger /dev/shm mount) or lower num_workers or prefetch_factor")
_MAX_TRACEBACK_LINES = 60


@dataclass
class Failure:
    kind: str
    error: str  # one line
    index: object = None  # the dataset index that raised, when found
    traceback: str = ""

    def as_fields(self) -> dict:
        return {"failure_kind": self.kind, "error": self.error, "failed_index": self.index,
                "traceback": _clip(self.traceback)}


def _clip(text: str) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) <= _MAX_TRACEBACK_LINES:
        return "\n".join(lines)
    return "\n".join(lines[:10] + [f"... ({len(lines) - _MAX_TRACEBACK_LINES} lines left out) ..."]
                     + lines[-(_MAX_TRACEBACK_LINES - 10):])


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _is_oom(exc: BaseException) -> bool:
    names = {t.__name__ for t in type(exc).__mro__}
    return "OutOfMemoryError" in names or "CUDA out of memory" in str(exc)


def explain_step_failure(exc: BaseException, batch_size) -> Failure:
    text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    last = _last_line("".join(tb.format_exception_only(type(exc), exc)))
    if _is_oom(exc):
        return Failure(OOM, f"out of memory in train_step at batch_size={batch_size}: {last}", None, text)
    return Failure(STEP, f"train_step raised {last}", None, text)


def dead_worker_pids(exc: BaseException) -> set[int]:
    """The pids of the workers whose death ``exc`` reports (torch's message), else none. torch's
    SIGCHLD handler raises it in whatever code the main thread runs then: the training step's
    too, where it is still the loader's failure, not the step's."""
    return {int(p) for group in _WORKER_DEATH.findall(str(exc)) for p in group.split(", ")}


def _shm_ran_out(message: str) -> bool:
    """torch's words when a worker's batch did not fit in /dev/shm: the worker dies of SIGBUS
    writing it, or the write fails ("unable to write to file </torch_...>: No space left")."""
    return "killed by signal: Bus error" in message or ("No space left on device" in message and "torch_" in message)


def loader_error_line(exc: BaseException) -> str:
    """One line for an exception the DataLoader raised: a worker's own error where torch wrapped
    it ("Caught RuntimeError in DataLoader worker process 0." and its traceback), the advice
    where shared memory ran out."""
    message = str(exc)
    caught = _WORKER_CAUGHT.search(message)
    if caught:
        line = f"{_last_line(caught.group(3))} (in DataLoader worker {caught.group(2)})"
    else:
        line = f"{type(exc).__name__}: {message.splitlines()[0]}" if message.strip() else type(exc).__name__
    return f"{line}; {_SHM_ADVICE}" if _shm_ran_out(message) else line


def explain_loader_failure(exc: BaseException, failed_batch, loader, dead_workers=()) -> Failure:
    """``failed_batch``: (index, batch indices) from the profiled loader, each None if unknown;
    ``dead_workers``: (worker id, pid, exit code) of workers that exited with an error."""
    message = str(exc)
    local_tb = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    signals = {code: _signal_name(-code) for _, _, code in dead_workers if code < 0}
    if _shm_ran_out(message) or "SIGBUS" in signals.values():
        return Failure(SHM, f"a DataLoader worker was killed by SIGBUS: {_SHM_ADVICE}", None, local_tb)
    if "killed by signal" in message or "exited unexpectedly" in message or dead_workers:
        if dead_workers:
            wid, pid, code = dead_workers[0]
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            more = f" ({len(dead_workers)} workers died)" if len(dead_workers) > 1 else ""
            return Failure(WORKER_DIED, f"DataLoader worker {wid} (pid {pid}) {how}{more}", None, local_tb)
        return Failure(WORKER_DIED, _torch_worker_death_line(message), None, local_tb)
    if _is_oom(exc):
        return Failure(OOM, f"out of memory in the loader: {_last_line(message)}", None, local_tb)
    index, indices = failed_batch
    caught = _WORKER_CAUGHT.search(message)
    if caught:  # the DataLoader re-raised a worker's exception; its traceback is in the message
        worker, worker_tb = caught.group(2), caught.group(3)
        where, last = f" (in DataLoader worker {worker})", _last_line(worker_tb)
    else:
        worker_tb, where = local_tb, " (in the main process, num_workers=0)"
        last = _last_line("".join(tb.format_exception_only(type(exc), exc)))
    reproduced = False
    if index is None and indices is not None:
        index, collate_only = _find_failing_index(loader, indices)
        if index is None and collate_only:
            return Failure(COLLATE, f"collate_fn raised {last} on the batch of indices {_short(indices)}{where}",
                           None, worker_tb)
        reproduced = index is not None
    if index is not None:
        return Failure(DATASET, f"dataset[{index!r}] raised {last}{where}", index, worker_tb)
    if indices is None:  # an IterableDataset, or a batch no longer held
        return Failure(DATASET, f"the dataset raised {last}{where}", None, worker_tb)
    hint = "" if reproduced or not caught else (
        "; each of its samples loads in the main process, so the failure depends on the worker"
        " (its worker_init_fn, or a handle opened before the workers were forked)")
    return Failure(DATASET, f"the dataset raised {last} on the batch of indices {_short(indices)}{where}{hint}",
                   None, worker_tb)


def _torch_worker_death_line(message: str) -> str:
    """torch's words for a dead worker, in the words of a worker whose exit code was read: the
    code is not always readable yet when torch raises (the worker not reaped, or its iterator
    gone), and the same death must read the same either way."""
    killed = _TORCH_KILLED.search(message)
    if killed:
        return f"DataLoader worker (pid {killed.group(1)}) was killed by {_signal_of(killed.group(2))}"
    return _last_line(message.split(". ")[0] + ".")


def _signal_of(description: str) -> str:
    """'Segmentation fault' (torch's strsignal text) -> 'SIGSEGV (Segmentation fault)'."""
    import signal

    for sig in signal.Signals:
        if signal.strsignal(sig) == description:
            return _signal_name(sig.value)
    return f"signal: {description}"


def _signal_name(number: int) -> str:
    import signal

    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"signal {number}"
    return f"{sig.name} ({signal.strsignal(sig)})"


def _short(indices) -> str:
    items = list(indices)
    return repr(items) if len(items) <= 8 else repr(items[:8])[:-1] + f", ... ({len(items)} in all)]"


def _find_failing_index(loader, indices) -> tuple[object, bool]:
    """Fetch the batch's samples again in this process, one by one: the first that raises is the
    index. (None, True) when every sample loads but collating them fails; (None, False) when
    all of it works here: the failure depends on the worker (its state, or its worker_init_fn)."""
    dataset = loader.dataset
    if not hasattr(dataset, "__getitem__") or not isinstance(indices, list):
        return None, False
    samples = []
    for i in indices:
        try:
            samples.append(dataset[i])
        except Exception:  # the user's dataset: any exception marks the index  # noqa: BLE001
            return i, False
    try:
        loader.collate_fn(samples)
    except Exception:  # the user's collate_fn raised on these samples  # noqa: BLE001
        return None, True
    return None, False


def explain_dead_trial(signal_name: str | None, exit_code: int | None) -> Failure:
    if signal_name == "SIGBUS":
        return Failure(SHM, f"the trial process was killed by SIGBUS: {_SHM_ADVICE}")
    how = f"killed by signal {signal_name}" if signal_name else f"exit code {exit_code}"
    return Failure(CRASH, f"the trial process died ({how})")


def explain_timeout(timeout_s: float, log_name: str) -> Failure:
    return Failure(TIMEOUT, f"no result within {timeout_s:.0f} s, so the trial and its workers were stopped "
                            f"(a hung worker or a very slow batch; their stacks at that moment are in {log_name})")

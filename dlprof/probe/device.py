"""Host-to-device copy of a batch, timed.

On CUDA the copy is timed with CUDA events on the current stream and resolved later (at the
end of an epoch), so timing adds no synchronisation to the training loop. Elsewhere the copy
is timed with the host clock.
"""
from __future__ import annotations

import collections.abc
from time import perf_counter_ns

import torch


def move_to(data, device: torch.device, non_blocking: bool):
    """Move every tensor in ``data`` to ``device``, keeping container types (as pin_memory does)."""
    if isinstance(data, torch.Tensor):
        return data.to(device, non_blocking=non_blocking)
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        moved = {k: move_to(v, device, non_blocking) for k, v in data.items()}
        try:
            return type(data)(moved)
        except TypeError:  # a mapping type that cannot be built from a dict
            return moved
    if isinstance(data, tuple):
        if hasattr(data, "_fields"):  # namedtuple
            return type(data)(*(move_to(v, device, non_blocking) for v in data))
        return tuple(move_to(v, device, non_blocking) for v in data)
    if isinstance(data, list):
        return [move_to(v, device, non_blocking) for v in data]
    to = getattr(data, "to", None)
    if callable(to):  # custom batch classes that know how to move themselves
        return to(device)
    return data


def unavailable_device(device: str | None, fix: str = "leave the device out (no copy) or use 'cpu'") -> str | None:
    """Why batches cannot be moved to ``device`` in this process (None: they can, or no device),
    ending with ``fix``. Asked before profiling: moving the first batch would otherwise fail deep
    in torch (a CPU build of torch raises "Tried to instantiate dummy base class Event")."""
    if device is None:
        return None
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        return f"device {device!r} is not a torch device ({exc})"
    backend = getattr(torch, kind, None)
    if kind != "cpu" and callable(getattr(backend, "is_available", None)) and not backend.is_available():
        return (f"device {device!r} is not available here: torch.{kind}.is_available() is False (a CPU build of "
                f"torch, or no device visible); {fix}")
    return None


class DeviceMover:
    """Moves batches to one device and records how long each copy took."""

    def __init__(self, device, non_blocking: bool) -> None:
        self.device = torch.device(device)
        self.non_blocking = non_blocking
        self.uses_events = self.device.type == "cuda"
        self._pending: list = []  # (record, start_event, end_event) awaiting resolution

    def move(self, batch, record):
        """Return the moved batch; ``record.transfer_ns`` is filled now or by ``resolve``."""
        if self.uses_events:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            moved = move_to(batch, self.device, self.non_blocking)
            end.record()
            self._pending.append((record, start, end))
            return moved
        t0 = perf_counter_ns()
        moved = move_to(batch, self.device, self.non_blocking)
        record.transfer_ns = perf_counter_ns() - t0
        return moved

    def resolve(self) -> None:
        for record, start, end in self._pending:
            end.synchronize()
            record.transfer_ns = int(start.elapsed_time(end) * 1e6)  # ms -> ns
        self._pending.clear()


def synchronize() -> None:
    """Wait for the work queued on the current CUDA device (``--device-sync``). A process that
    has not used CUDA is left alone: synchronizing would create a CUDA context on device 0."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def sync_note(asked: bool) -> str | None:
    """What the profile says of ``--device-sync`` (None when it was not asked for)."""
    if not asked:
        return None
    if torch.cuda.is_initialized():
        return ("device sync: each step's time includes the GPU work it queued (torch.cuda.synchronize "
                "before each next()), so the wait is time the GPU had no work")
    return "device sync asked for, but this process used no CUDA device: nothing was synchronized"

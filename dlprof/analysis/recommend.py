"""The recommendation as code a user can paste, and what changed from the baseline. Pure."""
from __future__ import annotations

from dlprof.scan_records import LoaderSettings


def dataloader_call(s: LoaderSettings) -> str:
    args = [f"batch_size={s.batch_size}", f"num_workers={s.num_workers}"]
    if s.num_workers:
        args += [f"prefetch_factor={s.prefetch_factor}", f"persistent_workers={s.persistent_workers}"]
    args.append(f"pin_memory={s.pin_memory}")
    if not s.in_order:
        args.append("in_order=False")
    call = "DataLoader(dataset, " + ", ".join(args) + ", ...)  # other arguments as before"
    if s.num_threads:
        call = (f"torch.set_num_threads({s.num_threads})  # in the training process, before the loop: the step's "
                "intra-op threads leave the workers their cores\n" + call)
    return call


def changes(base: LoaderSettings, rec: LoaderSettings) -> list[str]:
    """``name: old -> new`` for each setting that differs."""
    out = []
    for name in ("num_workers", "batch_size", "prefetch_factor", "persistent_workers", "pin_memory", "num_threads",
                 "in_order"):
        old, new = getattr(base, name), getattr(rec, name)
        if old != new and not (name in ("prefetch_factor", "persistent_workers") and rec.num_workers == 0):
            out.append(f"{name}: {old} -> {new}")
    return out

"""A user's DataLoader as settings, and the same pipeline rebuilt with other settings."""
from __future__ import annotations

from torch.utils.data import BatchSampler, DataLoader

from dlprof.scan_records import DEFAULT_PREFETCH, LoaderSettings


def settings_of(loader: DataLoader) -> LoaderSettings:
    workers = loader.num_workers
    return LoaderSettings(
        num_workers=workers,
        pin_memory=bool(loader.pin_memory),
        prefetch_factor=(loader.prefetch_factor or DEFAULT_PREFETCH) if workers else None,
        persistent_workers=bool(loader.persistent_workers) and workers > 0,
        batch_size=loader.batch_size,
        in_order=bool(getattr(loader, "in_order", True)) or not workers,
    )


def batch_size_is_free(loader: DataLoader) -> bool:
    """False when the user's own batch_sampler fixes the batches (dlprof cannot resize them)."""
    if loader.batch_size is None:
        return False
    bs = loader.batch_sampler
    return type(bs) is BatchSampler and bs.sampler is loader.sampler


def build_loader(base: DataLoader, s: LoaderSettings) -> DataLoader:
    """``base``'s dataset, sampler, collate_fn, worker_init_fn, generator... with settings ``s``."""
    kwargs = dict(
        num_workers=s.num_workers,
        collate_fn=base.collate_fn,
        pin_memory=s.pin_memory,
        timeout=base.timeout,
        worker_init_fn=base.worker_init_fn,
        # torch refuses a start method without workers (ValueError): only with workers
        multiprocessing_context=base.multiprocessing_context if s.num_workers else None,
        generator=base.generator,
        persistent_workers=s.persistent_workers and s.num_workers > 0,
        prefetch_factor=(s.prefetch_factor or DEFAULT_PREFETCH) if s.num_workers else None,
    )
    if not s.in_order:  # only asked for when the user allowed it (torch >= 2.6 has the argument)
        kwargs["in_order"] = False
    iterable = base._dataset_kind == 1  # _DatasetKind.Iterable: the DataLoader makes its own sampler
    if base.batch_size is None:
        if not iterable:
            kwargs["sampler"] = base.sampler
        return DataLoader(base.dataset, batch_size=None, **kwargs)
    if not batch_size_is_free(base):
        return DataLoader(base.dataset, batch_sampler=base.batch_sampler, **kwargs)
    if not iterable:
        kwargs["sampler"] = base.sampler
    return DataLoader(base.dataset, batch_size=s.batch_size, drop_last=base.drop_last, **kwargs)

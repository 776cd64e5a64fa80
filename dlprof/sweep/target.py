"""Loading what a user points dlprof at: a Python file or module defining ``loader`` or ``dataset``.

Module-level names looked up:
  ``loader``      a DataLoader (preferred: its settings are the user's baseline);
  ``dataset``     a Dataset, or a zero-argument callable returning one, used when there is no
                  ``loader``; batched with ``batch_size=32`` and the optional ``collate_fn``;
  ``train_step``  optional callable run on every batch;
  ``dlprof_config`` optional dict limiting a scan: ``batch_size`` (list), ``max_workers``,
                  ``device``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable

from dlprof.errors import DlprofError

DEFAULT_BATCH_SIZE = 32


@dataclass
class Target:
    name: str
    loader: object  # torch.utils.data.DataLoader
    train_step: Callable | None
    config: dict = field(default_factory=dict)  # dlprof_config


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec


def check_target(spec: str) -> None:
    """What can be told of a target without importing it (nor torch): the file exists, the
    top-level package of a module name can be found. One line for the user, seconds sooner."""
    if _is_file(spec):
        if not os.path.isfile(spec):
            raise DlprofError(f"target file not found: {spec}")
    elif importlib.util.find_spec(spec.split(".")[0]) is None:
        raise DlprofError(_no_module(spec))


def _no_module(spec: str) -> str:
    return f"no module named {spec!r} (give a .py file or an importable module)"


def import_target(spec: str):
    """Import a file path or a dotted module name; errors become one-line DlprofErrors."""
    is_file = _is_file(spec)
    check_target(spec)
    try:
        if is_file:
            name = module_name(spec)
            module_spec = importlib.util.spec_from_file_location(name, os.path.abspath(spec))
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            # as `python file.py` does: the file's folder first on sys.path. Workers started by
            # spawn or forkserver get this sys.path and import the file by that name to unpickle
            # its classes
            sys.path.insert(0, os.path.dirname(os.path.abspath(spec)))
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
    except SyntaxError as exc:
        raise DlprofError(f"syntax error in {exc.filename}:{exc.lineno}: {exc.msg}") from None
    except ModuleNotFoundError as exc:
        if not is_file and exc.name and spec.startswith(exc.name):
            raise DlprofError(_no_module(spec)) from None
        raise DlprofError(f"importing {spec} failed: {_last_line(exc)}") from exc
    except Exception as exc:  # the user's module raised while importing: report it, one line
        raise DlprofError(f"importing {spec} failed: {_last_line(exc)}") from exc
    return module


def module_name(spec: str) -> str:
    """The name a target file is imported under: its own (``recipes/mnist_mlp.py`` ->
    ``mnist_mlp``), which a worker started by spawn or forkserver can import again from the
    file's folder. A name that is not an identifier, or that is already imported (``random.py``
    beside torch's own ``random``), gets a ``dlprof_target_`` prefix: such a target works with
    fork, and with spawn only if its classes are defined in an importable module."""
    stem = os.path.splitext(os.path.basename(spec))[0]
    imported = sys.modules.get(stem)
    if stem.isidentifier() and (imported is None or getattr(imported, "__file__", None) == os.path.abspath(spec)):
        return stem
    return "dlprof_target_" + stem


def load_target(spec: str) -> Target:
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    module = import_target(spec)
    name = os.path.splitext(os.path.basename(spec))[0] if spec.endswith(".py") else spec
    train_step = getattr(module, "train_step", None)
    if train_step is not None and not callable(train_step):
        raise DlprofError(f"{spec}: train_step must be a function taking a batch, got {type(train_step).__name__}")
    config = getattr(module, "dlprof_config", None) or {}
    if not isinstance(config, dict):
        raise DlprofError(f"{spec}: dlprof_config must be a dict, got {type(config).__name__}")
    loader = getattr(module, "loader", None)
    if loader is not None:
        if not isinstance(loader, DataLoader):
            raise DlprofError(f"{spec}: 'loader' must be a torch.utils.data.DataLoader, got {type(loader).__name__}")
        return Target(name, loader, train_step, config)
    dataset = getattr(module, "dataset", None)
    if dataset is None:
        raise DlprofError(_no_candidate(spec, module, DataLoader, Dataset))
    if callable(dataset) and not isinstance(dataset, (Dataset, IterableDataset)):
        try:
            dataset = dataset()
        except Exception as exc:  # the user's factory raised: report it, one line
            raise DlprofError(f"{spec}: dataset() raised {_last_line(exc)}") from exc
    if not isinstance(dataset, (Dataset, IterableDataset)):
        raise DlprofError(f"{spec}: 'dataset' must be a torch Dataset (or return one), got {type(dataset).__name__}")
    collate_fn = getattr(module, "collate_fn", None)
    loader = DataLoader(dataset, batch_size=DEFAULT_BATCH_SIZE, collate_fn=collate_fn)
    return Target(name, loader, train_step, config)


def _no_candidate(spec: str, module, loader_type, dataset_type) -> str:
    """Neither 'loader' nor 'dataset': name what the module has under other names, if anything."""
    names = [n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, type)]
    loaders = [n for n in names if isinstance(getattr(module, n), loader_type)]
    datasets = [n for n in names if isinstance(getattr(module, n), dataset_type)]
    if loaders:
        found = ", ".join(loaders)
        which = "the one to scan" if len(loaders) > 1 else "to scan it"
        return (f"{spec} defines no 'loader' but has DataLoader{'s' if len(loaders) > 1 else ''} {found}: "
                f"add `loader = {loaders[0]}` ({which})")
    if datasets:
        found = ", ".join(datasets)
        return (f"{spec} defines no 'loader' or 'dataset' but has Dataset{'s' if len(datasets) > 1 else ''} {found}: "
                f"add `dataset = {datasets[0]}` or a `loader`")
    return f"{spec} defines neither 'loader' (a DataLoader) nor 'dataset': add one at module level"


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()

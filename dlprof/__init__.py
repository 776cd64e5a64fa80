"""dlprof: where a PyTorch DataLoader pipeline spends its time, measured.

``import dlprof`` stays light: torch is imported only when profiling starts, so saved results
can be loaded and rendered on a machine without torch.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["profile", "autotune", "Profiler", "ProfiledLoader", "ProfileResult", "load", "__version__"]

_LAZY = {
    "profile": "dlprof.api",
    "autotune": "dlprof.tuned",
    "Profiler": "dlprof.api",
    "ProfiledLoader": "dlprof.api",
    "ProfileResult": "dlprof.result",
    "load": "dlprof.result",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dlprof' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

"""dlprof's modules byte-compiled before a benchmark measures anything.

A process that imports a module with no cached ``.pyc`` compiles it from source first. pip
compiles at install and an editable checkout writes ``__pycache__/`` at its first import, but
not under ``PYTHONDONTWRITEBYTECODE=1`` (our dev shell, many Dockerfiles): there every autotuned
run compiled dlprof's tuner again, a cost a user's installed dlprof does not pay, and the
baseline, which imports less of dlprof, paid less of it. So the benchmarks measure the
installed state: ``compiled()`` writes the ``.pyc`` files (ignored by git) and says so in the
report's header. benchmarks/settled.py's kind ``source`` measures the other state.
"""
from __future__ import annotations

import compileall
import os

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dlprof")


def compiled() -> str:
    """Byte-compile dlprof (a no-op when the ``.pyc`` files are current); the header line."""
    if not compileall.compile_dir(PACKAGE, quiet=1):
        raise SystemExit(f"could not byte-compile {os.path.normpath(PACKAGE)}")
    return "# dlprof byte-compiled first (as pip installs it; benchmarks/bytecode.py)"

"""Callbacks for frameworks that own the training loop, for users who prefer a callback to
``dlprof run``: ``dlprof.integrations.lightning.DlprofCallback`` (Lightning) and
``dlprof.integrations.transformers.DlprofCallback`` (Hugging Face ``Trainer``). Both profile every
DataLoader iterated between the start and the end of training, as ``dlprof run`` does, and write
the same results and reports into ``out`` at the end."""
from __future__ import annotations

import os
import time


class _Session:
    """Shared by both callbacks: patch at the start, write at the end."""

    def __init__(self, out: str | None) -> None:
        self.out = out

    def start(self) -> None:
        from dlprof.probe import autowrap

        autowrap.clear()
        autowrap.install(at_exit=False)

    def end(self) -> str:
        import sys

        from dlprof import run_command
        from dlprof.probe import autowrap
        from dlprof.report.run_report import RunConsoleRenderer, run_report

        autowrap.uninstall()
        result = autowrap.collect()
        out = self.out or os.path.join("reports", f"run-{time.strftime('%Y%m%d-%H%M%S')}")
        os.makedirs(out, exist_ok=True)
        run_command.write_reports(result, out)
        print(RunConsoleRenderer().render(run_report(result, figures=False)), end="", file=sys.stderr)
        return out

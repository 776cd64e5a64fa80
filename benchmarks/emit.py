"""A benchmark's report: printed, and written to ``--out`` when given (no dlprof imported)."""
from __future__ import annotations


def emit(lines: list[str], out: str | None) -> None:
    """``lines`` to stdout, and to the file ``out`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)

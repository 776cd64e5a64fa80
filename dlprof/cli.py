"""Command line: ``dlprof <command>``. Thin: parse, call, exit code."""
from __future__ import annotations

import argparse
import os
import sys

from dlprof import __version__
from dlprof.errors import DlprofError
from dlprof.records import ResultsFileError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_profile(args) -> int:
    """Iterate the target's loader under dlprof.profile for a few epochs and summarise."""
    from dlprof.api import profile
    from dlprof.target import load_target

    target = load_target(args.target)
    prof = profile(target.loader, device=args.device)
    out = args.out or os.path.join("reports", target.name)
    step = target.train_step
    for epoch in range(args.epochs):
        print(f"epoch {epoch + 1}/{args.epochs} ...", file=sys.stderr, flush=True)
        for batch in prof:
            if step is not None:
                step(batch)
    os.makedirs(out, exist_ok=True)
    results = os.path.join(out, "results.json")
    prof.save(results)
    text = prof.result().format_summary()
    if step is None:
        text += "  note: no train_step in the target: the loader was measured alone\n"
    with open(os.path.join(out, "summary.txt"), "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text, end="")
    print(f"results: {results}")
    return 0


def cmd_summary(args) -> int:
    """Print the summary of a saved results file (no torch needed)."""
    from dlprof.result import load

    load(args.results).summary()
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), in the same form as dlprof's own."""

    def error(self, message: str):
        self.exit(2, f"dlprof: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dlprof", description="Profile PyTorch DataLoader pipelines.")
    parser.add_argument("--version", action="version", version=f"dlprof {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="profile a target's DataLoader as it is configured")
    p.add_argument("target", help="a .py file or module defining 'loader' or 'dataset' (and optionally 'train_step')")
    p.add_argument("--epochs", type=_positive_int, default=2)
    p.add_argument("--device", default=None, help="move batches to this device (e.g. cuda); default: no copy")
    p.add_argument("--out", default=None, help="output folder (default: reports/<target-name>)")
    p.set_defaults(func=cmd_profile)

    s = sub.add_parser("summary", help="print the summary of a saved results.json")
    s.add_argument("results")
    s.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DlprofError, ResultsFileError) as exc:
        if args.debug:
            raise
        print(f"dlprof: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlprof: interrupted", file=sys.stderr)
        return 130

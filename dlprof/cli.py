"""Command line: ``dlprof <command>``. Thin: parse, call, exit code."""
from __future__ import annotations

import argparse
import glob
import os
import signal
import sys

from dlprof import __version__
from dlprof.errors import DlprofError, ScanFailed
from dlprof.records import ResultsFileError
from dlprof.scan_start import FINISH_RESERVE_S, file_sha256, process_started_at, resumable


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
    from dlprof.sweep.target import check_target, load_target

    check_target(args.target)  # before importing torch
    from dlprof.api import profile

    target = load_target(args.target)
    try:
        prof = profile(target.loader, device=args.device)
    except ValueError as exc:  # a device this machine does not have
        raise DlprofError(str(exc)) from None
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
    result = prof.result()
    text = result.format_summary()
    if step is None:
        text += "  note: no train_step in the target: the loader was measured alone\n"
    with open(os.path.join(out, "summary.txt"), "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text, end="")
    reports = result.save_reports(out)
    print(f"results: {results}; reports: {', '.join(reports)}")
    return 0


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return sizes


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_scan(args) -> int:
    """Search DataLoader settings for the target, diagnose, recommend a verified configuration."""
    from dlprof.sweep.target import check_target

    check_target(args.target)  # before importing torch
    from dlprof.probe.environment import available_cores
    from dlprof.progress import progress_for
    from dlprof.report.model import scan_report
    from dlprof.report.scan_text import ConsoleScanRenderer
    from dlprof.scan_records import ScanResult
    from dlprof.sweep.search import Scan, ScanPlan

    name = os.path.splitext(os.path.basename(args.target))[0] if args.target.endswith(".py") else args.target
    out = args.out or os.path.join("reports", name)
    digest = file_sha256(args.target) if os.path.isfile(args.target) else ""
    budget = args.budget or (30.0 if args.quick else 120.0)
    if args.resume:
        result = resumable(out, args.target, digest)
        budget = args.budget or result.budget_s or budget
    else:
        result = ScanResult(target=args.target, target_sha256=digest)
    result.budget_s = budget
    os.makedirs(out, exist_ok=True)
    cores = available_cores()
    plan = ScanPlan(spec=args.target, out_dir=out, budget_s=budget,
                    cores=cores, max_workers=args.max_workers or max(16, 4 * cores),
                    batch_sizes=args.batch_sizes or [], device=args.device, max_epochs=args.epochs,
                    quick=args.quick, max_workers_from_cli=args.max_workers is not None,
                    trial_timeout_s=args.trial_timeout, hotspots=not args.no_hotspots,
                    allow_reorder=args.allow_reorder, started_at=process_started_at(), finish_reserve_s=FINISH_RESERVE_S)
    # a bar under the lines on a terminal, the lines alone in a pipe or a log; its clock is the
    # budget's, as Scan counts it (a resumed scan has spent some already)
    progress = progress_for(sys.stderr, plan.budget_s, plan.started_at - result.elapsed_s)
    scan = Scan(plan, result, progress)
    resumed = f"; resuming after {len(result.trials)} trials" if args.resume else ""
    progress(f"dlprof scan {args.target}: budget {plan.budget_s:.0f} s, {cores} cores; results in {out}/{resumed}")
    interrupted = False
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: kill the trial, keep the results
    try:
        scan.run()
    except KeyboardInterrupt:
        interrupted = True
        result.notes.append("interrupted: these are the trials finished before the interruption "
                            "(continue with the same command and --resume)")
    finally:
        progress.close()  # the bar gone before the summary (and before an error's message)
        if result.trials:
            from dlprof.report.build import write_reports  # matplotlib: only once there is a report
            from dlprof.scan_views import keep_views

            keep_views(result, out)  # what the reports draw, into the results: they need no dump
            scan.save()
            write_reports(result, out, out)
    print(ConsoleScanRenderer().render(scan_report(result, figures=False)), end="")
    print(f"results: {os.path.join(out, 'results.json')}; reports: {os.path.join(out, 'report.html')}, "
          f"{os.path.join(out, 'report.md')}, {os.path.join(out, 'trace.json')}")
    if interrupted:
        return 130
    return 0 if result.recommendation is not None else 1


def cmd_run(args) -> int:
    """Run a command unchanged with every DataLoader of its Python processes profiled; exit with
    the command's own exit code."""
    from dlprof import run_command

    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    if not command:
        raise DlprofError("nothing to run: give a command, e.g. dlprof run -- python train.py, or a script")
    command = run_command.command_of(command)
    out = args.out or run_command.default_out(command)
    code, result = run_command.run(command, out, stacks=args.stacks, device_sync=args.device_sync,
                                   autotune=args.autotune, autotune_s=args.autotune_budget)
    if result.loaders:
        from dlprof.report.run_report import RunConsoleRenderer, run_report

        print(RunConsoleRenderer().render(run_report(result, figures=False)), end="", file=sys.stderr)
    ranks = run_command.ranks_of(result)
    paths = run_command.write_reports(result, out, ranks)
    if ranks is not None:
        print(f"dlprof run: {ranks.world_size} ranks; " + (
            "stragglers: " + ", ".join(f"rank {r}" for r in ranks.stragglers) if ranks.stragglers else "no straggler")
              + f" (details: {os.path.join(out, 'ranks.md')})", file=sys.stderr)
    print(f"dlprof run: {len(result.loaders)} DataLoader(s) profiled; results: {paths[0]}; reports: "
          + ", ".join(paths[1:]), file=sys.stderr, flush=True)
    if code < 0:  # the command died of a signal: so does dlprof, as a shell would show it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def cmd_report(args) -> int:
    """Render the reports of a saved scan, profile or `dlprof run` again (no torch needed): a
    results.json, or the folder that holds it."""
    from dlprof.records import SCHEMA_NAME, ProfileRun, load_json
    from dlprof.report.build import load_scan, write_reports
    from dlprof.run_records import RUN_SCHEMA_NAME
    from dlprof.scan_records import SCAN_SCHEMA_NAME

    if os.path.isdir(args.results) and glob.glob(os.path.join(args.results, "process-*.json")):
        return _report_run(args)  # a dlprof run stopped before it merged its processes' files
    path = _results_file(args.results)
    data = load_json(path)
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema == RUN_SCHEMA_NAME:
        return _report_run(args)
    results_dir = os.path.dirname(os.path.abspath(path))
    out = args.out or results_dir
    formats = ("md", "html") if args.format == "all" else (args.format,)
    if schema == SCHEMA_NAME:  # dlprof profile, ProfileResult.save
        from dlprof.result import ProfileResult

        written = ProfileResult(ProfileRun.from_dict(data)).save_reports(out, formats)
    elif schema == SCAN_SCHEMA_NAME:
        written = write_reports(load_scan(path), out, results_dir, formats)
    else:
        raise ResultsFileError(f"{path} is not a dlprof results file (its 'schema' is {schema!r}; dlprof writes "
                               f"{SCAN_SCHEMA_NAME!r}, {SCHEMA_NAME!r} and {RUN_SCHEMA_NAME!r})")
    for p in written:
        print(p)
    return 0


def _report_run(args) -> int:
    """A `dlprof run` folder: its results.json, or the processes' own files where the run was
    stopped before it merged them (a torchrun job's ranks' report included)."""
    from dlprof import run_command
    from dlprof.run_records import RunResult, merge

    folder = args.results if os.path.isdir(args.results) else os.path.dirname(os.path.abspath(args.results))
    parts = sorted(glob.glob(os.path.join(folder, "process-*.json")))
    if os.path.isdir(args.results) and parts:
        loaded = [RunResult.load(p) for p in parts]
        result = merge(loaded, loaded[0].command, None)
    else:
        result = RunResult.load(args.results if not os.path.isdir(args.results)
                                else os.path.join(folder, "results.json"))
    for path in run_command.write_reports(result, args.out or folder, run_command.ranks_of(result)):
        print(path)
    return 0


def cmd_summary(args) -> int:
    """Print the summary of a saved profile, scan or `dlprof run` (a results.json or its folder;
    no torch needed)."""
    from dlprof.records import ProfileRun, load_json
    from dlprof.report.model import scan_report
    from dlprof.report.scan_text import ConsoleScanRenderer
    from dlprof.result import ProfileResult
    from dlprof.run_records import RUN_SCHEMA_NAME, RunResult
    from dlprof.scan_records import SCAN_SCHEMA_NAME, ScanResult

    path = _results_file(args.results)
    data = load_json(path)
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema == SCAN_SCHEMA_NAME:
        print(ConsoleScanRenderer().render(scan_report(ScanResult.from_dict(data), figures=False)), end="")
    elif schema == RUN_SCHEMA_NAME:
        from dlprof.report.run_report import RunConsoleRenderer, run_report

        print(RunConsoleRenderer().render(run_report(RunResult.load(path), figures=False)), end="")
    else:
        ProfileResult(ProfileRun.from_dict(data)).summary()
    return 0


def _results_file(path: str) -> str:
    """A results file, or the folder dlprof wrote it in."""
    return os.path.join(path, "results.json") if os.path.isdir(path) else path


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), in the same form as dlprof's own."""

    def error(self, message: str):
        self.exit(2, f"dlprof: error: {message} (see '{self.prog} --help')\n")


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 5%, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative percentage, got {text!r}")
    return value


def cmd_compare(args) -> int:
    """Throughput change between two scans; exit 1 on a regression beyond threshold and noise."""
    from dlprof.analysis.compare import compare
    from dlprof.records import load_json
    from dlprof.report.compare_text import CompareRenderer
    from dlprof.scan_records import ScanResult

    def scan_of(path: str) -> ScanResult:
        path = _results_file(path)
        try:
            return ScanResult.from_dict(load_json(path))
        except ResultsFileError as exc:  # which of the two, and what compare takes
            if str(exc).startswith("not a dlprof scan"):
                raise ResultsFileError(f"{path}: {exc}: dlprof compare takes two scans' results") from None
            raise

    base, new = scan_of(args.base), scan_of(args.new)
    result = compare(base, new, args.threshold)
    print(CompareRenderer().render(result), end="")
    return 1 if result.regression else 0


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

    sc = sub.add_parser("scan", help="search DataLoader settings, diagnose, recommend a measured configuration")
    sc.add_argument("target", help="a .py file or module defining 'loader' or 'dataset' (and optionally 'train_step')")
    sc.add_argument("--out", default=None, help="output folder (default: reports/<target-name>)")
    sc.add_argument("--budget", type=_positive_float, default=None, help="seconds for the whole scan (default 120, --quick 30)")
    sc.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where batches go before train_step (auto: cuda when present, else no copy)")
    sc.add_argument("--max-workers", type=_positive_int, default=None, help="most num_workers to try (default: 16, or 4 per core on more than 4 cores)")
    sc.add_argument("--batch-sizes", type=_batch_sizes, default=None, help="batch sizes to try, e.g. 32,64")
    sc.add_argument("--epochs", type=_positive_int, default=None, help="most epochs per trial")
    sc.add_argument("--quick", action="store_true", help="a short scan (about 30 s)")
    sc.add_argument("--no-hotspots", action="store_true",
                    help="do not sample Python stacks (py-spy) in the final baseline/recommendation trials")
    sc.add_argument("--allow-reorder", action="store_true",
                    help="the training loop accepts batches in another order: in_order=False may be recommended "
                         "where a slow batch holds up the rest (also dlprof_config['allow_reorder'])")
    sc.add_argument("--resume", action="store_true",
                    help="continue the interrupted scan saved in --out (its finished trials are kept)")
    sc.add_argument("--trial-timeout", type=_positive_float, default=None,
                    help="seconds before a trial that gives no result (a hung worker) is stopped "
                         "(default: 35 s with --quick, 45 s otherwise; the first trial also gets the budget)")
    sc.set_defaults(func=cmd_scan)

    ru = sub.add_parser("run", help="run a command or script unchanged, profiling every DataLoader it iterates",
                        usage="dlprof run [--out DIR] [--stacks] [--device-sync] [--autotune] -- COMMAND [ARGS...]  |  "
                              "dlprof run SCRIPT.py [ARGS...]")
    ru.add_argument("--out", default=None, help="output folder (default: reports/run-<script>-<time>)")
    ru.add_argument("--stacks", action="store_true",
                    help="sample the Python stacks of the command's processes and workers with py-spy "
                         "(100 Hz each): hotspots per stage in the report")
    ru.add_argument("--device-sync", action="store_true",
                    help="wait for the GPU's queued work when the loop asks for a batch, so the step's time "
                         "includes its GPU work (changes the program's timing: off by default)")
    ru.add_argument("--autotune", action="store_true",
                    help="tune the training loaders (map-style, shuffled) online: the same batches in the same "
                         "order, other num_workers/prefetch_factor/persistent_workers tried in measured windows")
    ru.add_argument("--autotune-budget", type=_positive_float, default=None,
                    help="seconds of exploring per tuned loader (default: dlprof.autotune's)")
    ru.add_argument("command_line", nargs=argparse.REMAINDER, metavar="COMMAND")
    ru.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="render report.html / report.md / trace.json from a scan's results.json, "
                                       "or a dlprof run's results.json or folder")
    rp.add_argument("results")
    rp.add_argument("--format", choices=["html", "md", "all"], default="all")
    rp.add_argument("--out", default=None, help="output folder (default: beside the results file)")
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser("compare", help="throughput change between two scan results; exit 1 on a regression")
    cp.add_argument("base")
    cp.add_argument("new")
    cp.add_argument("--threshold", type=_percent, default=5.0, help="regression threshold (default 5%%)")
    cp.set_defaults(func=cmd_compare)

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
            log = getattr(exc, "log", None)
            if log and os.path.exists(log):  # the trial's own output, tracebacks included
                with open(log, encoding="utf-8", errors="replace") as fh:
                    sys.stderr.write(fh.read())
            raise
        print(f"dlprof: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, ScanFailed) else 2
    except KeyboardInterrupt:
        print("dlprof: interrupted", file=sys.stderr)
        return 130

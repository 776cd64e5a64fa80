"""One trial: one DataLoader configuration, measured with the training step in the loop, in a
fresh child process, so a crash, leak or hang in one trial cannot spoil the others.

The scan process imports torch but runs no torch op and never imports the user's target, so
forking it is safe (a child forked after OpenMP has run can hang in its own first parallel
region) and each child starts from the same clean state without paying for a new interpreter.
The child loads the target, measures, writes its result as JSON and exits; the parent kills
its whole process group (the trial's DataLoader workers too) if it overruns.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from time import perf_counter

from dlprof.analysis.throughput import MIN_EPOCH_BLOCKS, rate_and_ci
from dlprof.errors import DlprofError
from dlprof.records import save_json
from dlprof.scan_records import LoaderSettings, TrialResult

_NO_SETTINGS = LoaderSettings(0, False, None, False, None)  # the target did not load


@dataclass(frozen=True)
class TrialLimits:
    max_seconds: float  # past this, stop as soon as there are min_steady batches, stable or not
    max_epochs: int | None
    rel_ci: float  # stop when the 95% CI half-width is below this fraction of the estimate
    min_seconds: float = 0.5
    min_batches: int = 16  # before the stability test is tried
    min_steady: int = 16  # a slow pipeline gets up to hard_factor x max_seconds to reach these
    hard_factor: float = 3.0


def warmup_batches(s: LoaderSettings) -> int:
    """Batches left out at the start: the ones prefetched while workers started, and a few more."""
    return 3 + (s.num_workers * (s.prefetch_factor or 2))


def measure(target, settings: LoaderSettings | None, device: str | None, limits: TrialLimits,
            purpose: str, profile_path: str | None = None) -> TrialResult:
    """Iterate the rebuilt loader with the training step until the estimate is stable."""
    from dlprof.api import profile
    from dlprof.sweep.loaders import batch_size_is_free, build_loader, settings_of

    info = {}
    if settings is None:  # the baseline: the target's own loader, whose settings we report
        import torch

        from dlprof.probe.environment import collect_environment
        from dlprof.probe.loader import describe_loader

        settings = settings_of(target.loader)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else None
        info = {"dlprof_config": json.loads(json.dumps(target.config, default=str)),
                "batch_size_free": batch_size_is_free(target.loader), "device": device,
                "environment": {**collect_environment(device),
                                "dataset": describe_loader(target.loader, device).dataset_type}}
        loader = target.loader
    else:
        loader = build_loader(target.loader, settings)
    prof = profile(loader, device=device)
    batches = prof.profiler.run.batches  # filled as we go
    step = target.train_step
    warm = warmup_batches(settings)
    start = perf_counter()
    hard = start + limits.hard_factor * limits.max_seconds
    soft = hard  # set when the warm-up ends: start-up does not eat the measuring time
    # many workers deliver in bursts of up to num_workers batches: each of the 8 blocks of the
    # CI must span a whole burst, or the interval says more about bursts than about throughput
    min_batches = max(limits.min_batches, 8 * settings.num_workers)
    epochs = 0
    done = False
    while not done and (limits.max_epochs is None or epochs < limits.max_epochs):
        for batch in prof:
            if step is not None:
                step(batch)
            now = perf_counter()
            n = len(batches) - warm
            if n == 0:
                soft = min(hard, now + limits.max_seconds)
            # whole epochs in the window make blocks of their own, bursts or not
            enough = n >= min_batches or (n > 0 and batches[-1].epoch - batches[warm].epoch > MIN_EPOCH_BLOCKS)
            if now >= hard or (now >= soft and n >= limits.min_steady and enough):
                done = True
                break
            if enough and n >= limits.min_batches and n % 4 == 0 and now - start >= limits.min_seconds:
                window = batches[warm:]
                _, ci = rate_and_ci([b.wait_end_ns for b in window], [b.samples for b in window],
                                    [b.epoch for b in window])
                if ci <= 100 * limits.rel_ci:
                    done = True
                    break
        epochs += 1
        if not batches:
            raise DlprofError("the loader yielded no batch")
    prof.close()
    from dlprof.analysis.trial import trial_stats

    run = prof.result().run
    result = trial_stats(run, settings, warm)
    if profile_path:  # the full per-batch record, for timelines and traces in reports
        save_json(run.to_dict(), profile_path)
        result.profile = profile_path
    result.purpose = purpose
    result.info = info
    result.has_train_step = step is not None
    if purpose == "baseline" and result.dataset_kind == "iterable":
        result.stream_repeats = stream_repeats(target.loader)
    return result


def stream_repeats(loader) -> bool:
    """Do two workers of an IterableDataset yield the same first samples (no sharding)?"""
    from torch.utils.data import DataLoader

    probe = DataLoader(loader.dataset, batch_size=None, num_workers=2, collate_fn=lambda x: x,
                       worker_init_fn=loader.worker_init_fn, multiprocessing_context=loader.multiprocessing_context)
    firsts: list[list] = [[], []]
    for i, sample in zip(range(16), probe):  # workers alternate: even from worker 0, odd from 1
        firsts[i % 2].append(_fingerprint(sample))
    return len(firsts[0]) >= 3 and firsts[0] == firsts[1][:len(firsts[0])]


def _fingerprint(sample):
    """A comparable value for a sample: tensors by content, containers item by item."""
    import torch

    if isinstance(sample, torch.Tensor):
        return (str(sample.dtype), tuple(sample.shape), sample.detach().cpu().numpy().tobytes())
    if isinstance(sample, dict):
        return tuple((k, _fingerprint(v)) for k, v in sample.items())
    if isinstance(sample, (list, tuple)):
        return tuple(_fingerprint(v) for v in sample)
    return repr(sample)


def _child(spec: str, settings: LoaderSettings, device: str | None, limits: TrialLimits,
           purpose: str, result_path: str, log_path: str) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # own group: the parent can kill us with our DataLoader workers
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        from dlprof.sweep.target import load_target

        try:
            result = measure(load_target(spec), settings, device, limits, purpose,
                             profile_path=log_path[:-len(".log")] + ".profile.json")
        except DlprofError as exc:
            result = TrialResult(settings or _NO_SETTINGS, "error", purpose, error=str(exc))
        except Exception as exc:  # the user's pipeline failed: record why; the scan goes on
            traceback.print_exc()
            # one line: the original exception's last line (a worker's error message carries the
            # worker's whole traceback; that goes to the trial's log above)
            last = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
            result = TrialResult(settings or _NO_SETTINGS, "failed", purpose, error=last.strip())
        result.log = log_path
        save_json(dataclasses.asdict(result), result_path)
        code = 0
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def preload_torch() -> None:
    """Import what nearly every target imports, once, in the scan process: each forked trial
    then starts with it loaded. torch takes about 0.9 s to import on our 2-core machine, and
    creating any optimizer imports torch._dynamo, another 0.9 s: together most of a quick
    trial. Importing runs no torch op, so forking stays safe."""
    import importlib

    for name in ("torch", "torch.nn", "torch.optim", "torch.utils.data", "torch._dynamo"):
        try:
            importlib.import_module(name)
        except ImportError:  # an older or slimmer torch: the trial imports what it needs itself
            pass


def run_trial(spec: str, settings: LoaderSettings | None, purpose: str, trial_dir: str, index: int,
              device: str | None, limits: TrialLimits, timeout_s: float) -> TrialResult:
    """Fork a child that measures ``settings`` (None: the target's own loader); wait for it at
    most ``timeout_s``."""
    os.makedirs(trial_dir, exist_ok=True)
    result_path = os.path.join(trial_dir, f"trial-{index:02d}.json")
    log_path = os.path.join(trial_dir, f"trial-{index:02d}.log")
    if os.path.exists(result_path):
        os.unlink(result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(spec, settings, device, limits, purpose, result_path, log_path)
    deadline = time.monotonic() + timeout_s
    status = None
    try:
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif time.monotonic() > deadline:
                _kill_group(pid)
                os.waitpid(pid, 0)
                return TrialResult(settings or _NO_SETTINGS, "timeout", purpose, log=log_path,
                                   error=f"no result within {timeout_s:.0f} s: the trial was stopped")
            else:
                time.sleep(0.02)
    except BaseException:  # Ctrl-C or an error here: leave no trial running
        _kill_group(pid)
        if status is None:
            os.waitpid(pid, 0)
        raise
    _kill_group(pid)  # DataLoader workers the child left behind
    if not os.path.exists(result_path):
        how = (f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exit code {os.WEXITSTATUS(status)}")
        return TrialResult(settings or _NO_SETTINGS, "failed", purpose, log=log_path, error=f"the trial process died ({how})")
    with open(result_path, encoding="utf-8") as fh:
        data = json.load(fh)
    data["settings"] = LoaderSettings(**data["settings"])
    return TrialResult(**data)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

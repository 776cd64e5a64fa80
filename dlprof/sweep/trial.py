"""One trial: one DataLoader configuration, measured with the training step in the loop, in a
fresh child process, so a crash, leak or hang in one trial cannot spoil the others.

The scan process imports torch but runs no torch op and never imports the user's target, so
forking it is safe (a child forked after OpenMP has run can hang in its own first parallel
region) and each child starts from the same clean state without paying for a new interpreter.
The child loads the target, measures, writes its result as JSON and exits; the parent kills
its whole process group (the trial's DataLoader workers too) if it overruns.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import traceback
from dataclasses import dataclass
from time import perf_counter, perf_counter_ns

from dlprof.analysis.thresholds import MIN_GAIN, spanned_cutoffs
from dlprof.analysis.throughput import MIN_EPOCH_BLOCKS, rate_and_ci, share_and_ci
from dlprof.errors import DlprofError
from dlprof.records import save_json
from dlprof.scan_records import LoaderSettings, TrialResult
from dlprof.sweep.faults import (Failure, dead_worker_pids, explain_dead_trial, explain_loader_failure,
                                 explain_step_failure, explain_timeout)
from dlprof.sweep.processes import die_with_parent, fork_and_wait
from dlprof.sweep.rules import buffer_matters

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


VERDICT_WINDOWS = 4  # a baseline whose wait share spans a verdict's cut-off measures up to this many windows


def warmup_batches(s: LoaderSettings) -> int:
    """Batches left out at the start: the ones prefetched while workers started, and a few more."""
    return 3 + (s.num_workers * (s.prefetch_factor or 2))


def measure(target, settings: LoaderSettings | None, device: str | None, limits: TrialLimits,
            purpose: str, profile_path: str | None = None, sample_stacks: bool = False) -> TrialResult:
    """Iterate the rebuilt loader with the training step until the estimate is stable."""
    from dlprof.api import Profiler
    from dlprof.probe.device import unavailable_device
    from dlprof.sweep.loaders import batch_size_is_free, build_loader, settings_of

    import torch

    info = {}
    if settings is not None and settings.num_threads:
        torch.set_num_threads(settings.num_threads)  # the training process's intra-op threads
    if device == "auto":  # the baseline tells the scan; a trial after a failed baseline decides here
        device = "cuda" if torch.cuda.is_available() else None
    why = unavailable_device(device, fix="use --device auto or --device cpu")
    if why:  # asked for (--device cuda) where there is none: the scan stops with this line
        raise DlprofError(why)
    if settings is None:  # the baseline: the target's own loader, whose settings we report
        from dlprof.probe.environment import collect_environment
        from dlprof.probe.loader import describe_loader

        settings = settings_of(target.loader)
        info = {"dlprof_config": json.loads(json.dumps(target.config, default=str)),
                "batch_size_free": batch_size_is_free(target.loader), "device": device,
                "environment": {**collect_environment(device),
                                "dataset": describe_loader(target.loader, device).dataset_type}}
        loader = target.loader
    else:
        loader = build_loader(target.loader, settings)
    # USS at 5 Hz: trials are short, and worker memory growth needs several readings
    prof = Profiler(uss_every=2, sample_stacks=sample_stacks).wrap(loader, device=device)
    batches = prof.profiler.run.batches  # filled as we go
    step = target.train_step
    warm = warmup_batches(settings)
    # many workers deliver in bursts of up to num_workers batches: each of the 8 blocks of the
    # CI must span a whole burst, or the interval says more about bursts than about throughput
    min_batches = max(limits.min_batches, 8 * settings.num_workers)
    try:
        batch_bytes = _loop(prof, step, batches, warm, limits, min_batches, verdict_matters=purpose == "baseline",
                            whole_epochs=buffer_matters(settings, len_or_none(loader)))
    except DlprofError:
        raise
    except StepRaised as raised:  # the training step failed
        raise TrialFailed(explain_step_failure(raised.exc, settings.batch_size)) from raised.exc
    except WorkerDiedInStep as died:
        raise TrialFailed(explain_loader_failure(died.exc, (None, None), loader, died.dead)) from died.exc
    except Exception as exc:  # the loader failed (dataset, collate, a worker): explain it
        raise TrialFailed(explain_loader_failure(exc, prof.failed_batch(), loader,
                                                    prof.dead_workers(dead_worker_pids(exc)))) from exc
    finally:
        prof.close()
    from dlprof.analysis.trial import trial_stats

    run = prof.result().run
    result = trial_stats(run, settings, warm)
    if profile_path:  # the full per-batch record, for timelines and traces in reports
        save_json(run.to_dict(), profile_path)
        result.profile = profile_path
    result.purpose = purpose
    result.info = info
    result.batch_bytes = batch_bytes
    result.has_train_step = step is not None
    if purpose == "baseline" and result.dataset_kind == "iterable":
        result.stream_repeats = stream_repeats(target.loader)
    return result


def len_or_none(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:  # an IterableDataset without __len__
        return None


def batch_nbytes(batch) -> int:
    """Bytes of the tensors and arrays in a batch (nested lists, tuples and dicts walked)."""
    nbytes = getattr(batch, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(batch, dict):
        return sum(batch_nbytes(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return sum(batch_nbytes(v) for v in batch)
    return 0


class TrialFailed(Exception):
    """The user's pipeline failed in a trial; carries the explanation."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.error)
        self.failure = failure


class StepRaised(Exception):
    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


class WorkerDiedInStep(Exception):
    """torch's SIGCHLD handler reported a worker's death while the step ran: the loader's
    failure. ``dead``: the workers' exit codes, read before the loop lets go of its iterator
    (and with it of the workers)."""

    def __init__(self, exc: Exception, dead: list[tuple[int, int, int]]) -> None:
        super().__init__(str(exc))
        self.exc, self.dead = exc, dead


def _loop(prof, step, batches, warm: int, limits: TrialLimits, min_batches: int,
          verdict_matters: bool = False, whole_epochs: bool = False) -> int:
    """Epochs of the training loop until the estimate is stable or the limits are reached.
    ``whole_epochs``: do not stop before the window holds a whole epoch, end to end (up to the
    hard limit). Returns the bytes of the first batch (for the shared-memory check of later trials)."""
    batch_bytes = -1
    start = perf_counter()
    hard = start + limits.hard_factor * limits.max_seconds
    soft = hard  # set when the warm-up ends: start-up does not eat the measuring time
    epochs = 0
    undecided = False  # the baseline's verdict still spans a cut-off
    check_at = 0  # the window's size at the next check of its intervals (next_check)
    while limits.max_epochs is None or epochs < limits.max_epochs:
        for batch in prof:
            if batch_bytes < 0:
                batch_bytes = batch_nbytes(batch)
                # workers that took most of the hard limit to start (spawned ones import torch:
                # seconds on a busy machine) still get one window to measure in
                hard = max(hard, perf_counter() + limits.max_seconds)
            if step is not None:
                try:
                    step(batch)
                except Exception as exc:  # the user's step: reported as such, not as the loader's
                    if dead_worker_pids(exc):  # a worker died while the step ran: the loader's failure
                        raise WorkerDiedInStep(exc, prof.dead_workers(dead_worker_pids(exc))) from exc
                    raise StepRaised(exc) from exc
            now = perf_counter()
            n = len(batches) - warm
            if n == 0:
                soft = min(hard, now + limits.max_seconds)
            # whole epochs in the window make blocks of their own, bursts or not
            crossed = batches[-1].epoch - batches[warm].epoch if n > 0 else 0
            enough = n >= min_batches or crossed > MIN_EPOCH_BLOCKS
            # Epochs short enough that two ended in the window: each one is a pause, then a
            # burst, and a rate over two or three of them is mostly where the window cut the
            # pattern. Such epochs take at most half a window, so the hard limit leaves room for
            # enough of them to become the blocks of the interval.
            # Only while the interval is still far too wide to compare: the extension costs time.
            few_short_epochs = 2 <= crossed <= MIN_EPOCH_BLOCKS or (whole_epochs and crossed < 2)
            # The intervals below walk the window inside the measured loop: they are computed
            # when it has grown by an eighth since the last time (next_check: linear work over a
            # trial, not a walk every few batches, which on a loop of microseconds a batch took
            # more time than the loop), and their time is left out of the step being timed.
            due = enough and n >= check_at
            checked_ns = 0
            # The baseline's verdict depends on its wait share: while the share's interval spans
            # a cut-off, it measures on, up to VERDICT_WINDOWS windows, past the hard limit (then
            # the verdict says borderline). The interval narrows as the square root of the time:
            # four windows halve it. Checked once a stop is possible, and holds in between.
            verdict_until = soft + (VERDICT_WINDOWS - 1) * limits.max_seconds
            may_stop = now >= soft or (n >= limits.min_batches and now - start >= limits.min_seconds)
            if verdict_matters and due and may_stop:
                t0 = perf_counter_ns()
                undecided = now < verdict_until and _wait_undecided(batches[warm:])
                checked_ns += perf_counter_ns() - t0
            if now >= hard and not (undecided and now < verdict_until):
                return batch_bytes
            past_soft = now >= soft and n >= limits.min_steady and enough
            if past_soft and not few_short_epochs and not undecided:
                return batch_bytes
            if due and (past_soft or (n >= limits.min_batches and now - start >= limits.min_seconds)):
                t0 = perf_counter_ns()
                ci = _window_ci(batches[warm:])
                checked_ns += perf_counter_ns() - t0
                if (ci <= 100 * limits.rel_ci or (past_soft and ci <= 3 * 100 * limits.rel_ci)) and not undecided \
                        and not (whole_epochs and crossed < 2):
                    return batch_bytes
            if checked_ns:
                check_at = next_check(n)
                prof.not_a_step(checked_ns)
        epochs += 1
        if not batches:
            raise DlprofError("the loader yielded no batch")
    return max(batch_bytes, 0)


def next_check(n: int) -> int:
    """The window's size at which its intervals are computed again, after a check at ``n``
    batches: an eighth larger, and at least 4 batches on (the trials' and the online tuner's
    windows alike)."""
    return n + max(4, n // 8)


def _wait_undecided(window) -> bool:
    """Does the 95% interval of the window's wait share span a verdict's cut-off? (The last
    batch's step is still running: left out.)"""
    window = window[:-1]
    wait = [(b.wait_end_ns - b.wait_start_ns) / 1e6 for b in window]
    loop = [w + (b.transfer_ns + b.step_ns) / 1e6 for w, b in zip(wait, window)]
    share, ci = share_and_ci(wait, loop, [b.epoch for b in window])
    return bool(spanned_cutoffs(share, ci))


def _window_ci(window) -> float:
    """Half-width of the 95% interval of the window's throughput, in %."""
    return rate_and_ci([b.wait_end_ns for b in window], [b.samples for b in window], [b.epoch for b in window])[1]


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


def child_setup(log_path: str, tmp_dir: str) -> None:
    """The forked child's surroundings: its own process group, its output in the log."""
    os.setpgid(0, 0)  # own group: the parent can kill us with our DataLoader workers
    die_with_parent()
    # temporary files of the trial (multiprocessing's pymp-* folders among them, which a
    # killed or os._exit-ed process never removes) go to a folder the parent removes
    os.environ["TMPDIR"] = tempfile.tempdir = tmp_dir
    os.environ.pop("DLPROF_OUT", None)  # a trial's profile is the scan's, not the user's job's
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))  # no core files in the user's folder
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)


def _child(spec: str, settings: LoaderSettings, device: str | None, limits: TrialLimits,
           purpose: str, result_path: str, log_path: str, tmp_dir: str, sample_stacks: bool) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        child_setup(log_path, tmp_dir)
        from dlprof.sweep.loaders import settings_of
        from dlprof.sweep.target import load_target

        tried = settings or _NO_SETTINGS  # the baseline's, once the target is loaded
        try:
            target = load_target(spec)
            tried = settings or settings_of(target.loader)
            result = measure(target, settings, device, limits, purpose,
                             profile_path=log_path[:-len(".log")] + ".profile.json", sample_stacks=sample_stacks)
        except DlprofError as exc:  # the target cannot be used: the scan stops with this line
            traceback.print_exc()  # the cause's traceback, for --debug and the log
            result = TrialResult(tried, "error", purpose, error=str(exc))
        except TrialFailed as exc:  # the user's pipeline failed: record why; the scan goes on
            traceback.print_exc()
            result = TrialResult(tried, "failed", purpose, **exc.failure.as_fields())
        except Exception as exc:  # failed outside the loop (building the loader, a probe)
            traceback.print_exc()
            last = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
            result = TrialResult(tried, "failed", purpose, error=last.strip(),
                                 failure_kind="crash", traceback=traceback.format_exc())
        result.log = log_path
        save_json(result.to_file_dict(), result_path)
        code = 0
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def preload_torch() -> None:
    """Import what nearly every target imports, once, in the scan process: each forked trial
    then starts with it loaded. torch takes about 0.9 s to import on our 2-core machine, and
    creating any optimizer imports torch._dynamo, another 0.9 s: together most of a quick
    trial. Importing runs no torch op, so forking stays safe. All of it before the first trial:
    importing torch._dynamo after it (a target that does not load would fail 2 s sooner) left
    image_folder's quick scans 1-2 s less for their trials (the baseline imported it itself)."""
    import importlib

    for name in ("torch", "torch.nn", "torch.optim", "torch.utils.data", "torch._dynamo"):
        try:
            importlib.import_module(name)
        except ImportError:  # an older or slimmer torch: the trial imports what it needs itself
            pass


def run_trial(spec: str, settings: LoaderSettings | None, purpose: str, trial_dir: str, index: int,
              device: str | None, limits: TrialLimits, timeout_s: float, sample_stacks: bool = False) -> TrialResult:
    """Fork a child that measures ``settings`` (None: the target's own loader); wait for it at
    most ``timeout_s``."""
    result_path, log_path = trial_paths(trial_dir, index)
    status = fork_and_wait(lambda tmp_dir: _child(spec, settings, device, limits, purpose, result_path, log_path,
                                                  tmp_dir, sample_stacks), log_path, timeout_s)
    if status is None:
        failure = explain_timeout(timeout_s, os.path.basename(log_path))
        return TrialResult(settings or _NO_SETTINGS, "timeout", purpose, log=log_path, **failure.as_fields())
    if not os.path.exists(result_path):
        return TrialResult(settings or _NO_SETTINGS, "failed", purpose, log=log_path, **dead_child(status).as_fields())
    with open(result_path, encoding="utf-8") as fh:
        return TrialResult.from_file_dict(json.load(fh))


def trial_paths(trial_dir: str, index: int) -> tuple[str, str]:
    """(result JSON, log) of trial ``index``; an old result at that path is removed."""
    os.makedirs(trial_dir, exist_ok=True)
    result_path = os.path.join(trial_dir, f"trial-{index:02d}.json")
    if os.path.exists(result_path):
        os.unlink(result_path)
    return result_path, os.path.join(trial_dir, f"trial-{index:02d}.log")


def dead_child(status: int) -> Failure:
    """Why a child that wrote no result ended, from its wait status."""
    return explain_dead_trial(signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None,
                              os.WEXITSTATUS(status) if os.WIFEXITED(status) else None)

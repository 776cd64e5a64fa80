"""Throughput over a window of batch arrivals, with a confidence interval. Pure.

Batches arrive in bursts (several workers, epoch restarts), so successive per-batch times are
correlated; the interval comes from the rates of consecutive blocks (batch means), which are
close to independent. When the window spans several whole epochs, each block is one epoch
(its batches and the restart gap before them): short epochs repeat a pattern (a pause while
workers restart, then a burst), and blocks cut across that pattern vary more than throughput.
For the same reason the rate itself is taken over whole epochs when they cover most of the window.
"""
from __future__ import annotations

import math

_BLOCKS = 8
MIN_EPOCH_BLOCKS = 4  # whole epochs in the window before blocks follow epochs
# Student's t, 97.5% quantile, by degrees of freedom (blocks - 1)
_T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
          9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(dof: int) -> float:
    """Student's t, 97.5% quantile, at ``dof`` degrees of freedom (conservative between rows)."""
    return _T_975[max(k for k in _T_975 if k <= dof)] if dof < 30 else 2.0


def half_width(values: list[float]) -> float:
    """Half-width of the 95% interval of the mean of ``values`` (block means, log ratios...)."""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return t975(len(values) - 1) * sd / math.sqrt(len(values))


def _epoch_ends(epochs: list[int] | None) -> list[int]:
    """Indices of the last batch of each epoch in the window (the window's last batch aside)."""
    return [] if epochs is None else [i for i in range(len(epochs) - 1) if epochs[i + 1] != epochs[i]]


def _edges(n_times: int, ends: list[int]) -> list[int]:
    """Indices that close each block; times[edges[0]] opens the first. Blocks follow epochs
    when there are enough of them (the first epoch of the window is partial)."""
    if len(ends) >= MIN_EPOCH_BLOCKS + 1:
        return ends
    n = n_times - 1
    return [round(i * n / _BLOCKS) for i in range(_BLOCKS + 1)]


def _whole_epochs_rate(times: list[int], samples: list[int], ends: list[int]) -> float | None:
    """The rate from the end of the window's first epoch to the end of its last whole one, when
    those whole epochs cover at least half the window. Batches that arrive in a burst were made
    before they arrive: a window opening mid-burst counts samples made before it, which
    flatters configurations that deliver an epoch in one burst (many workers, short epochs)."""
    if len(ends) < 2:
        return None
    first, last = ends[0], ends[-1]
    if 2 * (times[last] - times[first]) < times[-1] - times[0]:
        return None
    return sum(samples[first + 1:last + 1]) / ((times[last] - times[first]) / 1e9)


def _block_rates(times: list[int], samples: list[int], edges: list[int]) -> list[float]:
    rates = []
    for a, b in zip(edges, edges[1:]):
        if b > a and times[b] > times[a]:
            rates.append(sum(samples[a + 1:b + 1]) / ((times[b] - times[a]) / 1e9))
    return rates


def rate_and_ci(times: list[int], samples: list[int], epochs: list[int] | None = None) -> tuple[float, float]:
    """Throughput over the window and the half-width of its 95% CI, in % of it (block means).

    ``epochs``: the epoch of each batch, when known; blocks then follow whole epochs if there
    are enough of them.
    """
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0, math.inf
    rate = sum(samples[1:]) / ((times[-1] - times[0]) / 1e9)
    ends = _epoch_ends(epochs)
    edges = _edges(len(times), ends)
    rate = _whole_epochs_rate(times, samples, ends) or rate
    rates = _block_rates(times, samples, edges)
    if len(rates) < min(_BLOCKS, len(edges) - 1) or len(rates) < MIN_EPOCH_BLOCKS:
        return rate, math.inf
    return rate, 100.0 * half_width(rates) / rate


def noise_margin(ci_a_pct: float, ci_b_pct: float, floor: float) -> float:
    """How far apart two measured rates may be and still be noise, as a fraction: their
    intervals combined (each capped at 100%), at least ``floor``."""
    return max(math.hypot(min(ci_a_pct, 100), min(ci_b_pct, 100)) / 100, floor)


def share_and_ci(part_ms: list[float], whole_ms: list[float], epochs: list[int] | None = None
                 ) -> tuple[float, float]:
    """The share (%) of ``whole_ms`` that ``part_ms`` takes over a window of batches (the wait
    in the loop's time), and the half-width of its 95% interval in percentage points, from
    the shares of the same blocks as ``rate_and_ci`` (one per whole epoch when there are
    enough, else eight). inf when there are too few batches for blocks."""
    total = sum(whole_ms)
    if not part_ms or total <= 0:
        return float("nan"), math.inf
    share = 100.0 * sum(part_ms) / total
    ends = _epoch_ends(epochs)  # blocks of batches [a, b): whole epochs, else eight equal ones
    edges = ([e + 1 for e in ends] if len(ends) >= MIN_EPOCH_BLOCKS + 1
             else [round(i * len(part_ms) / _BLOCKS) for i in range(_BLOCKS + 1)])
    shares = []
    for a, b in zip(edges, edges[1:]):
        whole = sum(whole_ms[a:b])
        if b > a and whole > 0:
            shares.append(100.0 * sum(part_ms[a:b]) / whole)
    if len(shares) < MIN_EPOCH_BLOCKS:
        return share, math.inf
    return share, half_width(shares)


def mean_and_ci(values: list[float]) -> tuple[float, float]:
    """The mean of per-batch values (ms) and the half-width of its 95% interval, from the means
    of eight consecutive blocks (successive batches are correlated). inf with too few values."""
    if not values:
        return float("nan"), math.inf
    mean = sum(values) / len(values)
    edges = [round(i * len(values) / _BLOCKS) for i in range(_BLOCKS + 1)]
    blocks = [sum(values[a:b]) / (b - a) for a, b in zip(edges, edges[1:]) if b > a]
    if len(blocks) < MIN_EPOCH_BLOCKS:
        return mean, math.inf
    return mean, half_width(blocks)


def paired_ratio(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
    """The speedup of side-by-side pairs and its 95% interval: (ratio, low, high).

    ``pairs``: (baseline samples/s, candidate samples/s) of turns taken one after the other in
    one process. Ratios are combined on a log scale (geometric mean); the interval is Student's
    t over the pairs' log ratios, so it holds the drift and noise that each pair saw. Fewer than
    two pairs: no interval (0, inf)."""
    logs = [math.log(cand / base) for base, cand in pairs if base > 0 and cand > 0]
    if not logs:
        return 0.0, 0.0, math.inf
    mean = sum(logs) / len(logs)
    if len(logs) < 2:
        return math.exp(mean), 0.0, math.inf
    half = half_width(logs)
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)

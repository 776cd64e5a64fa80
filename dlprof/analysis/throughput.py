"""Throughput over a window of batch arrivals, with a confidence interval. Pure.

Batches arrive in bursts (several workers, epoch restarts), so successive per-batch times are
correlated; the interval comes from the rates of 8 consecutive blocks (batch means), which
are close to independent.
"""
from __future__ import annotations

import math

# Student's t, 97.5% quantile, for 7 degrees of freedom: 8 blocks of batches.
_BLOCKS = 8
_T_975 = 2.365


def _block_rates(times: list[int], samples: list[int]) -> list[float]:
    """Samples/s in consecutive blocks of batch arrivals (times[0] opens the window)."""
    n = len(times) - 1
    edges = [round(i * n / _BLOCKS) for i in range(_BLOCKS + 1)]
    rates = []
    for a, b in zip(edges, edges[1:]):
        if b > a and times[b] > times[a]:
            rates.append(sum(samples[a + 1:b + 1]) / ((times[b] - times[a]) / 1e9))
    return rates


def rate_and_ci(times: list[int], samples: list[int]) -> tuple[float, float]:
    """Throughput over the window and the half-width of its 95% CI, in % of it (block means)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0, math.inf
    rate = sum(samples[1:]) / ((times[-1] - times[0]) / 1e9)
    rates = _block_rates(times, samples)
    if len(rates) < _BLOCKS:
        return rate, math.inf
    mean = sum(rates) / len(rates)
    sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1))
    return rate, 100.0 * _T_975 * sd / math.sqrt(len(rates)) / rate



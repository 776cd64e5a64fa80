"""Cut-offs shared by the analyses.

Share of the training loop's time spent waiting for data. The TensorFlow profiler's
input-pipeline analyzer calls an input stall above 5% of step time moderate and above 20%
high; we use the same cut-offs so verdicts read the same across tools.
"""
DATA_BOUND_PCT = 20.0
BALANCED_PCT = 5.0

# Two measured rates closer than this fraction count as equal: a candidate must beat the best
# by it to count as better, and pinning must lose by it to be called harmful.
MIN_GAIN = 0.03

"""Cut-offs shared by the analyses.

Share of the training loop's time spent waiting for data. The TensorFlow profiler's
input-pipeline analyzer calls an input stall above 5% of step time moderate and above 20%
high; we use the same cut-offs so verdicts read the same across tools.
"""
DATA_BOUND_PCT = 20.0
BALANCED_PCT = 5.0

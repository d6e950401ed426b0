"""Numbers people read off a run: sliding windows of samples and success-rate intervals. No ROS."""
from __future__ import annotations

import math

import numpy as np


class Window:
    """The last `size` samples of one quantity, for percentiles in diagnostics and benchmarks."""

    def __init__(self, size: int):
        self.values = np.zeros(size)
        self.count = 0

    def add(self, value: float) -> None:
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def samples(self) -> np.ndarray:
        return self.values[: min(self.count, len(self.values))]

    def percentile(self, q: float) -> float:
        """The q-th percentile of the samples (NaN when there are none)."""
        samples = self.samples()
        return float(np.percentile(samples, q)) if len(samples) else float("nan")

    def clear(self) -> None:
        self.count = 0


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% for z = 1.96).

    Unlike p +- z*sqrt(p(1-p)/n) it stays inside [0, 1] and does not shrink to a point at 0/n or
    n/n, which is where a 40-episode evaluation often lands. No trials: (0, 1), nothing is known.
    """
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1.0 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)

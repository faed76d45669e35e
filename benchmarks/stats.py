"""Summary statistics of latency samples, defined so they can be checked by hand.

Definitions (documented in docs/benchmarks.md):
- median: the middle sample, or the mean of the two middle samples for an even count;
- p90 / p99: nearest rank, i.e. the smallest sample such that at least 90 % / 99 %
  of all samples are less than or equal to it (always an observed value);
- std: population standard deviation (divides by n), as LiteRT's benchmark_model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

# Below this many steady-state runs the p99 rests on a single sample or none;
# the report flags it instead of pretending it is stable.
MIN_RUNS_FOR_STABLE_P99 = 100
NS_PER_US = 1_000


def percentile_nearest_rank(sorted_values: Sequence[float], percent: int) -> float:
    """The nearest-rank percentile of already sorted values.

    Args:
        sorted_values: samples in ascending order, at least one.
        percent: an integer percentage in 1..100.

    Returns:
        The sample at 1-based rank ceil(percent * n / 100).

    Raises:
        ValueError: no samples, or `percent` outside 1..100.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("cannot take a percentile of no samples")
    if not 1 <= percent <= 100:
        raise ValueError(f"percent must be in 1..100, got {percent}")
    rank = -(-percent * n // 100)  # integer ceil, no float rounding at exact ranks
    return sorted_values[rank - 1]


def median(sorted_values: Sequence[float]) -> float:
    """The median of already sorted values (mean of the middle two for an even count)."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("cannot take the median of no samples")
    middle = n // 2
    if n % 2:
        return float(sorted_values[middle])
    return (sorted_values[middle - 1] + sorted_values[middle]) / 2


@dataclasses.dataclass(frozen=True)
class Summary:
    """Steady-state figures of one configuration, in microseconds.

    Attributes:
        runs: number of timed samples.
        min_us, median_us, p90_us, p99_us, mean_us, std_us: see the module docstring.
        p99_stable: False when `runs` < MIN_RUNS_FOR_STABLE_P99.
    """

    runs: int
    min_us: float
    median_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    std_us: float
    p99_stable: bool

    def candidates_per_second(self, candidates: int) -> Optional[float]:
        """Throughput at the median latency; None when the median is zero."""
        if self.median_us <= 0:
            return None
        return candidates * 1e6 / self.median_us


def summarize(samples_ns: Sequence[int]) -> Summary:
    """Summarises latency samples given in nanoseconds.

    Args:
        samples_ns: one duration per timed run (time.perf_counter_ns differences).

    Returns:
        The Summary in microseconds.

    Raises:
        ValueError: no samples.
    """
    if not samples_ns:
        raise ValueError("no samples to summarise")
    values = sorted(sample / NS_PER_US for sample in samples_ns)
    n = len(values)
    mean = math.fsum(values) / n
    variance = math.fsum((value - mean) ** 2 for value in values) / n
    return Summary(
        runs=n,
        min_us=values[0],
        median_us=median(values),
        p90_us=percentile_nearest_rank(values, 90),
        p99_us=percentile_nearest_rank(values, 99),
        mean_us=mean,
        std_us=math.sqrt(variance),
        p99_stable=n >= MIN_RUNS_FOR_STABLE_P99,
    )

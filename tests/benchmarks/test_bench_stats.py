"""Summary statistics on inputs whose figures are worked out by hand."""

from __future__ import annotations

import math

import pytest

from benchmarks.stats import median, percentile_nearest_rank, summarize


def test_one_to_hundred_microseconds():
    # 1, 2, ..., 100 us given in ns, shuffled: the order must not matter.
    samples = [k * 1000 for k in range(1, 101)]
    samples = samples[50:] + samples[:50][::-1]
    summary = summarize(samples)
    assert summary.runs == 100
    assert summary.min_us == 1.0
    assert summary.median_us == 50.5  # (50 + 51) / 2
    assert summary.p90_us == 90.0  # rank ceil(0.90 * 100) = 90
    assert summary.p99_us == 99.0  # rank ceil(0.99 * 100) = 99
    assert summary.mean_us == 50.5
    # population variance of 1..n is (n^2 - 1) / 12
    assert summary.std_us == pytest.approx(math.sqrt((100**2 - 1) / 12))
    assert summary.p99_stable is True


def test_five_samples():
    summary = summarize([5000, 1000, 4000, 2000, 3000])
    assert (summary.min_us, summary.median_us, summary.mean_us) == (1.0, 3.0, 3.0)
    assert summary.p90_us == 5.0  # rank ceil(4.5) = 5
    assert summary.p99_us == 5.0  # rank ceil(4.95) = 5
    assert summary.std_us == pytest.approx(math.sqrt(2.0))  # deviations -2..2: (4+1+0+1+4)/5 = 2


def test_even_count_median_and_exact_ranks():
    values = [10.0, 20.0, 30.0, 40.0]
    assert median(values) == 25.0
    assert percentile_nearest_rank(values, 50) == 20.0  # rank 2
    assert percentile_nearest_rank(values, 75) == 30.0  # rank 3 exactly
    assert percentile_nearest_rank(values, 76) == 40.0  # rank ceil(3.04) = 4
    # 0.9 * 10 is 9.000000000000002 in floating point; the rank must still be 9.
    assert percentile_nearest_rank([float(k) for k in range(1, 11)], 90) == 9.0
    assert percentile_nearest_rank([7.0], 99) == 7.0


def test_sub_microsecond_resolution_is_kept():
    summary = summarize([1500, 2500])
    assert summary.median_us == 2.0
    assert summary.min_us == 1.5


def test_p99_is_flagged_below_one_hundred_runs():
    assert summarize([1000] * 99).p99_stable is False
    assert summarize([1000] * 100).p99_stable is True


def test_throughput_at_the_median():
    summary = summarize([400_000, 500_000, 600_000])  # median 500 us
    assert summary.candidates_per_second(1000) == pytest.approx(2_000_000)


@pytest.mark.parametrize("percent", [0, 101])
def test_percent_out_of_range(percent):
    with pytest.raises(ValueError, match="1..100"):
        percentile_nearest_rank([1.0], percent)


def test_no_samples():
    with pytest.raises(ValueError, match="no samples"):
        summarize([])

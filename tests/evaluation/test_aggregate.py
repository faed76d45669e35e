"""Figures over seeds: mean and sample standard deviation, against hand computations."""

from __future__ import annotations

import math

import pytest

from convert import Quantization
from evaluation.aggregate import Aggregate, summarize
from tests.evaluation import fakes


def test_mean_and_sample_standard_deviation_by_hand():
    # mean (1 + 2 + 4) / 3 = 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9, / (n - 1) = 7/3.
    aggregate = Aggregate.of([1.0, 2.0, 4.0])
    assert aggregate.mean == pytest.approx(7 / 3, abs=1e-12)
    assert aggregate.std == pytest.approx(math.sqrt(7 / 3), abs=1e-12)
    assert aggregate.to_dict() == {"mean": aggregate.mean, "std": aggregate.std, "n": 3, "values": [1.0, 2.0, 4.0]}


def test_missing_values_are_left_out_and_one_value_has_no_spread():
    assert Aggregate.of([None, 3.0, None]) == Aggregate(values=(3.0,), mean=3.0, std=None)
    assert Aggregate.of([None, None]) == Aggregate(values=(), mean=None, std=None)
    # Two values 0.5 apart: sample std = 0.5 / sqrt(2).
    assert Aggregate.of([1.0, None, 1.5]).std == pytest.approx(0.5 / math.sqrt(2), abs=1e-12)


def _three_seeds():
    return tuple(
        fakes.seed_run(
            "tutorial", seed, test_rmse=keras,
            variants=(
                fakes.accepted("none", keras, 600 * 1024, median),
                fakes.rejected("dynamic-int8", 1.5, "2 checks failed: top-10 overlap 0.70 < 0.80")
                if seed == 2
                else fakes.accepted("dynamic-int8", keras + 0.01, 250 * 1024, None if seed == 1 else 3000.0),
            ),
        )
        for seed, keras, median in ((0, 1.10, 1000.0), (1, 1.12, 1100.0), (2, 1.14, 1200.0))
    )


def test_summary_over_seeds_by_hand():
    variants = (Quantization.NONE, Quantization.DYNAMIC_INT8)
    summary = summarize("tutorial", _three_seeds(), variants)
    assert summary.seeds == (0, 1, 2)
    # Keras: 1.10, 1.12, 1.14 -> mean 1.12, deviations ±0.02 and 0 -> sample std sqrt(0.0008 / 2) = 0.02.
    assert summary.test_rmse.mean == pytest.approx(1.12, abs=1e-12)
    assert summary.test_rmse.std == pytest.approx(0.02, abs=1e-12)
    float32, int8 = summary.variants
    assert (float32.label, float32.accepted, float32.failed) == ("float32", 3, 0)
    assert float32.latency_median_us.mean == pytest.approx(1100.0)
    assert float32.latency_median_us.std == pytest.approx(100.0)
    # dynamic-int8: seeds 0 and 1 accepted (1.11, 1.13), seed 2 rejected with its measured RMSE kept apart.
    assert (int8.accepted, int8.failed) == (2, 1)
    assert int8.failures == ("2 checks failed: top-10 overlap 0.70 < 0.80",)
    assert int8.rejected_test_rmse == (1.5,)
    assert int8.test_rmse.values == pytest.approx((1.11, 1.13))
    assert int8.test_rmse.std == pytest.approx(0.02 / math.sqrt(2), abs=1e-12)
    # Seed 1's latency was not measured: only seed 0's 3000 us counts.
    assert int8.latency_median_us.values == (3000.0,)
    assert int8.size_bytes.mean == 250 * 1024


def test_summary_as_json_is_keyed_by_variant():
    document = summarize("tutorial", _three_seeds(), (Quantization.NONE, Quantization.DYNAMIC_INT8)).to_dict()
    assert list(document["variants"]) == ["none", "dynamic-int8"]
    assert document["variants"]["dynamic-int8"]["test_rmse"]["n"] == 2
    assert document["keras"]["test_rmse"]["values"] == [1.10, 1.12, 1.14]

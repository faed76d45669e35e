"""Figures over seeds: mean and sample standard deviation of each, per preset and variant."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Optional, Sequence

from convert import Quantization
from evaluation.records import SeedRun
from evaluation.settings import VARIANT_LABELS


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """Mean and sample standard deviation of one figure over the seeds that produced it.

    Attributes:
        values: the per-seed values (seeds without a value are left out).
        mean: their mean, None without values.
        std: their sample standard deviation (divides by n - 1), None with fewer than two values.
    """

    values: tuple[float, ...]
    mean: Optional[float]
    std: Optional[float]

    @classmethod
    def of(cls, values: Sequence[Optional[float]]) -> "Aggregate":
        """Aggregates the values that are not None."""
        present = tuple(float(value) for value in values if value is not None)
        mean = statistics.fmean(present) if present else None
        std = statistics.stdev(present) if len(present) > 1 else None
        return cls(present, mean, std)

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict."""
        return {"mean": self.mean, "std": self.std, "n": len(self.values), "values": list(self.values)}


@dataclasses.dataclass(frozen=True)
class VariantSummary:
    """One .tflite variant of one preset over its seeds.

    Attributes:
        variant / label: the quantization mode's name and how the table shows it.
        accepted / failed: seeds whose conversion passed or failed the converter's checks.
        failures: why each failed seed failed.
        rejected_test_rmse: the rejected files' test RMSE, where the converter measured it.
        test_rmse / size_bytes / latency_median_us: over the accepted seeds.
        latency_errors: why an accepted seed's latency could not be measured.
    """

    variant: str
    label: str
    accepted: int
    failed: int
    failures: tuple[str, ...]
    rejected_test_rmse: tuple[float, ...]
    test_rmse: Aggregate
    size_bytes: Aggregate
    latency_median_us: Aggregate
    latency_errors: tuple[str, ...]

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict."""
        data = dataclasses.asdict(self)
        for name in ("test_rmse", "size_bytes", "latency_median_us"):
            data[name] = getattr(self, name).to_dict()
        for name in ("failures", "rejected_test_rmse", "latency_errors"):
            data[name] = list(data[name])
        return data


@dataclasses.dataclass(frozen=True)
class PresetSummary:
    """One preset over its seeds: the Keras model's figures and each variant's.

    Attributes:
        preset / seeds: what was trained.
        test_rmse / test_ndcg_at_10 / fit_seconds / train_wall_seconds / saved_model_bytes: the Keras model.
        variants: one summary per variant, in the settings' order.
    """

    preset: str
    seeds: tuple[int, ...]
    test_rmse: Aggregate
    test_ndcg_at_10: Aggregate
    fit_seconds: Aggregate
    train_wall_seconds: Aggregate
    saved_model_bytes: Aggregate
    variants: tuple[VariantSummary, ...]

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict (keyed by variant name)."""
        keras = ("test_rmse", "test_ndcg_at_10", "fit_seconds", "train_wall_seconds", "saved_model_bytes")
        return {
            "seeds": list(self.seeds),
            "keras": {name: getattr(self, name).to_dict() for name in keras},
            "variants": {summary.variant: summary.to_dict() for summary in self.variants},
        }


def summarize(preset: str, runs: Sequence[SeedRun], variants: Sequence[Quantization]) -> PresetSummary:
    """Mean and sample standard deviation of every figure over one preset's seeds."""
    return PresetSummary(
        preset=preset,
        seeds=tuple(run.seed for run in runs),
        test_rmse=Aggregate.of([run.test_rmse for run in runs]),
        test_ndcg_at_10=Aggregate.of([run.test_ndcg_at_10 for run in runs]),
        fit_seconds=Aggregate.of([run.fit_seconds for run in runs]),
        train_wall_seconds=Aggregate.of([run.train_wall_seconds for run in runs]),
        saved_model_bytes=Aggregate.of([run.saved_model_bytes for run in runs]),
        variants=tuple(_summarize_variant(runs, quantization) for quantization in variants),
    )


def _summarize_variant(runs: Sequence[SeedRun], quantization: Quantization) -> VariantSummary:
    variant_runs = [run.variant(quantization) for run in runs if run.variant(quantization) is not None]
    accepted = [run for run in variant_runs if run.accepted]
    rejected = [run for run in variant_runs if not run.accepted]
    return VariantSummary(
        variant=quantization.value,
        label=VARIANT_LABELS[quantization],
        accepted=len(accepted),
        failed=len(rejected),
        failures=tuple(run.error or "unknown reason" for run in rejected),
        rejected_test_rmse=tuple(run.rmse_tflite for run in rejected if run.rmse_tflite is not None),
        test_rmse=Aggregate.of([run.rmse_tflite for run in accepted]),
        size_bytes=Aggregate.of([run.size_bytes for run in accepted]),
        latency_median_us=Aggregate.of([run.latency.median_us if run.latency else None for run in accepted]),
        latency_errors=tuple(run.latency_error for run in accepted if run.latency_error),
    )

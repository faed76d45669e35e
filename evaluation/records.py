"""What a preset evaluation measured: per variant, per seed, and the whole run."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

from benchmarks.machine import Machine
from convert import Quantization
from evaluation.settings import PresetSettings


@dataclasses.dataclass(frozen=True)
class Latency:
    """Median latency of ranking every movie for one user with one model (from the benchmark harness).

    Attributes:
        median_us: median of the timed `Ranker.rank` calls, microseconds.
        runs: timed calls.
        candidates: movies ranked per call.
        backend / backend_version: the interpreter package and its version.
        delegate: "default" (XNNPACK on LiteRT) or "none" (turned off after a delegate failure).
        load_average: the 1-minute load average the harness saw before loading, if known.
    """

    median_us: float
    runs: int
    candidates: int
    backend: str
    backend_version: Optional[str]
    delegate: Optional[str]
    load_average: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class VariantRun:
    """One .tflite variant of one trained model.

    Attributes:
        variant: the quantization mode's name ("none" is float32).
        accepted: the converter accepted the file (every check passed).
        tflite_path: the accepted file, or the rejected copy the converter kept.
        size_bytes: the .tflite's size, manifest included.
        rmse_tflite / rmse_saved_model: test RMSE of the .tflite and of the
            SavedModel on the same pairs (the converter's parity figures).
        max_abs_diff / top10_overlap: parity of the .tflite with the SavedModel.
        error: why the conversion failed, if it did.
        latency: ranking latency of an accepted file.
        latency_error: why its latency could not be measured, if it could not.
    """

    variant: str
    accepted: bool
    tflite_path: Optional[str] = None
    size_bytes: Optional[int] = None
    rmse_tflite: Optional[float] = None
    rmse_saved_model: Optional[float] = None
    max_abs_diff: Optional[float] = None
    top10_overlap: Optional[float] = None
    error: Optional[str] = None
    latency: Optional[Latency] = None
    latency_error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SeedRun:
    """One preset trained with one seed, and its variants.

    Attributes:
        preset / seed: what was trained.
        export_dir: the training export folder.
        test_rmse / test_ndcg_at_10: the Keras model's figures (metrics.json).
        fit_seconds / train_wall_seconds: the fitting, and the whole `train_and_export` call (metrics.json).
        saved_model_bytes: the SavedModel folder's size (from the converter), if a conversion got that far.
        variants: one entry per .tflite variant, in the settings' order.
        versions: the training stack's versions (metrics.json).
        seconds: wall time of this seed's training, conversions and latency.
    """

    preset: str
    seed: int
    export_dir: str
    test_rmse: float
    test_ndcg_at_10: Optional[float]
    fit_seconds: float
    train_wall_seconds: float
    saved_model_bytes: Optional[int]
    variants: tuple[VariantRun, ...]
    versions: Mapping[str, Optional[str]]
    seconds: float

    def variant(self, quantization: Quantization) -> Optional[VariantRun]:
        """This seed's run of one variant, or None when it was not evaluated."""
        return next((run for run in self.variants if run.variant == quantization.value), None)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation measured.

    Attributes:
        settings: what was asked for.
        machine: the benchmark harness's description of this machine, taken before training
            (its backends are those the latency runs used).
        started_at: UTC time of the start, ISO 8601.
        runs: one entry per preset and seed, presets in settings order.
        wall_seconds: the whole evaluation.
    """

    settings: PresetSettings
    machine: Machine
    started_at: str
    runs: tuple[SeedRun, ...]
    wall_seconds: float

    def runs_of(self, preset: str) -> tuple[SeedRun, ...]:
        """The runs of one preset, in seed order."""
        return tuple(run for run in self.runs if run.preset == preset)


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A published MovieLens 100K figure to compare with."""

    name: str
    rmse: float
    protocol: str
    approximate: bool = False


ANCHORS = (
    Anchor("Original TFRS tutorial", 1.11, "same split"),
    Anchor("Tutorial architecture, Adam + early stopping", 0.937, "same split", approximate=True),
    Anchor("Surprise BaselineOnly", 0.944, "5-fold CV"),
    Anchor("Surprise SVD", 0.934, "5-fold CV"),
    Anchor("Surprise KNNBaseline", 0.931, "5-fold CV"),
    Anchor("Surprise SVD++", 0.919, "5-fold CV"),
    Anchor("DCN with user demographics", 0.93, "same split", approximate=True),
    Anchor("GC-MC (graph autoencoder)", 0.905, "u1 split"),
    Anchor("GLocal-K", 0.889, "u1 split"),
)

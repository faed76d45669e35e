"""Evaluate training presets end to end and tabulate them beside the published anchors.

    python -m scripts.evaluate_presets --out DIR [--presets tutorial,default] [--seeds 0,1,2]
        [--markdown FILE] [-v]

For every preset and seed: train with `train.train_and_export`; convert the
export to each .tflite variant (float32, float16, dynamic-int8,
weight-only-int8) with `convert.convert_saved_model` on the default target
(LiteRT); time ranking every movie with `python -m benchmarks latency` (or,
if that harness is not usable, with `device_runtime.Ranker` directly). A
variant that fails the converter's checks is recorded as failed, not fatal.

Writes DIR/<preset>/seed-<N>/ (export/, model_<variant>.tflite with its
parity report, latency.json), DIR/results.json (every per-seed figure and the
aggregates) and DIR/table.md (or --markdown FILE): mean ± sample standard
deviation over the seeds. The Markdown is also printed to stdout.

Exit codes: 0 done (failed variants are reported in the table); 2 a setting is
wrong or a step could not run (one line on stderr says what and how to fix it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import enum
import gc
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, Sequence

import convert
import train
from convert import ConversionConfig, Quantization

logger = logging.getLogger("evaluate_presets")

REPO = Path(__file__).resolve().parents[1]
EXIT_USAGE = 2

DEFAULT_PRESETS = ("tutorial", "default")
DEFAULT_SEEDS = (0, 1, 2)
VARIANTS = (Quantization.NONE, Quantization.FLOAT16, Quantization.DYNAMIC_INT8, Quantization.WEIGHT_ONLY_INT8)
VARIANT_LABELS = {
    Quantization.NONE: "float32",
    Quantization.FLOAT16: "float16",
    Quantization.DYNAMIC_INT8: "dynamic-int8",
    Quantization.WEIGHT_ONLY_INT8: "weight-only-int8",
}

# Latency: one thread, every movie in the model's vocabulary, as issue 6 asks.
LATENCY_THREADS = 1
LATENCY_RUNS = 200
LATENCY_WARMUP = 20
LATENCY_USER = "42"
LATENCY_BACKEND = "ai_edge_litert"
HARNESS_TIMEOUT_SECONDS = 900
HARNESS_PROBE_TIMEOUT_SECONDS = 120

# Output layout under --out.
MARKER_FILE = ".evaluate_presets"  # marks a folder this tool owns and may clear
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
EXPORT_DIR = "export"
LATENCY_FILE = "latency.json"
RESULTS_FORMAT_VERSION = 1

# Issue 6's bounds, checked for the presets named here when they were evaluated.
GOAL_PRESET = "default"
REFERENCE_PRESET = "tutorial"
GOAL_FLOAT32_RMSE = 0.900
STRETCH_FLOAT32_RMSE = 0.89
MAX_INT8_RMSE_GAP = 0.01
MAX_FLOAT32_BYTES = 2_000_000
MAX_LATENCY_RATIO = 2.0
MAX_TRAINING_SECONDS = 180.0
TUTORIAL_RMSE_RANGE = (1.05, 1.17)

# Above this 1-minute load average per usable core the notes say the machine was busy.
BUSY_LOAD_PER_CORE = 0.5
# Size spreads below this share of the mean are not shown (a few bytes of manifest text).
VISIBLE_SIZE_SPREAD = 0.001
# The longest failure reason shown in the table's notes (results.json keeps all of it).
MAX_REASON_CHARS = 300


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


class EvaluationError(Exception):
    """A setting is wrong or a step of the evaluation could not run."""


class LatencyMethod(str, enum.Enum):
    """How ranking latency was measured."""

    HARNESS = "benchmarks latency"
    RANKER = "device_runtime.Ranker"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to evaluate and where to write it.

    Attributes:
        out: the output folder (created; one this tool made earlier is cleared).
        presets: training presets, in table order.
        seeds: training seeds; each preset is trained once per seed.
        markdown: where the Markdown table goes; None means OUT/table.md.
    """

    out: Path
    presets: tuple[str, ...] = DEFAULT_PRESETS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    markdown: Optional[Path] = None

    def __post_init__(self):
        if not self.presets:
            raise EvaluationError("--presets is empty; give e.g. tutorial,default")
        if not self.seeds:
            raise EvaluationError("--seeds is empty; give e.g. 0,1,2")
        for what, values in (("--presets", self.presets), ("--seeds", self.seeds)):
            if len(set(values)) != len(values):
                raise EvaluationError(f"{what} lists a value twice ({', '.join(map(str, values))}); give each once")
        if any(isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 for seed in self.seeds):
            raise EvaluationError(f"--seeds must be non-negative integers, got {', '.join(map(str, self.seeds))}")
        for preset in self.presets:
            train.preset_config(preset)  # raises ConfigError naming the known presets

    @property
    def markdown_path(self) -> Path:
        return self.markdown if self.markdown is not None else self.out / TABLE_FILE


@dataclasses.dataclass(frozen=True)
class Latency:
    """Median latency of ranking every movie for one user with one model.

    Attributes:
        median_us: median of the timed calls, microseconds.
        runs: timed calls.
        candidates: movies scored per call.
        backend: interpreter package and version.
        delegates: "default" (XNNPACK on LiteRT) or "none" (turned off after a delegate failure).
        method: how it was measured (LatencyMethod value).
        load_average: the 1-minute load average just before timing, if known.
    """

    median_us: float
    runs: int
    candidates: int
    backend: str
    delegates: Optional[str]
    method: str
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
        export_dir: the `python -m train` export folder.
        test_rmse / test_ndcg_at_10: the Keras model's figures (metrics.json).
        fit_seconds / train_wall_seconds: training time and the whole
            `train_and_export` call (metrics.json).
        saved_model_bytes: the SavedModel folder's size.
        variants: one entry per .tflite variant.
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
    seconds: float

    def variant(self, quantization: Quantization) -> VariantRun:
        return next(run for run in self.variants if run.variant == quantization.value)


@dataclasses.dataclass(frozen=True)
class Machine:
    """Where the evaluation ran."""

    cpu_model: Optional[str]
    cores: Optional[int]
    cores_usable: Optional[int]
    python: str
    platform: str
    versions: dict
    load_average: Optional[tuple[float, ...]]


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """Mean and sample standard deviation of one figure over the seeds that produced it.

    Attributes:
        values: the per-seed values (seeds without a value are left out).
        mean: their mean, None without values.
        std: their sample standard deviation, None with fewer than two values.
    """

    values: tuple[float, ...]
    mean: Optional[float]
    std: Optional[float]

    @classmethod
    def of(cls, values: Sequence[Optional[float]]) -> "Aggregate":
        present = tuple(float(v) for v in values if v is not None)
        mean = statistics.fmean(present) if present else None
        std = statistics.stdev(present) if len(present) > 1 else None
        return cls(present, mean, std)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": len(self.values), "values": list(self.values)}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation measured."""

    settings: Settings
    machine: Machine
    started_at: str
    runs: tuple[SeedRun, ...]
    latency_methods: tuple[str, ...]
    wall_seconds: float

    def runs_of(self, preset: str) -> tuple[SeedRun, ...]:
        return tuple(run for run in self.runs if run.preset == preset)

    def to_dict(self) -> dict:
        return {
            "format_version": RESULTS_FORMAT_VERSION,
            "kind": "ranking-kit preset evaluation",
            "started_at": self.started_at,
            "wall_seconds": round(self.wall_seconds, 1),
            "settings": {
                "out": str(self.settings.out),
                "presets": list(self.settings.presets),
                "seeds": list(self.settings.seeds),
                "variants": [q.value for q in VARIANTS],
                "latency": {
                    "methods": list(self.latency_methods),
                    "threads": LATENCY_THREADS,
                    "runs": LATENCY_RUNS,
                    "warmup": LATENCY_WARMUP,
                    "user": LATENCY_USER,
                    "backend": LATENCY_BACKEND,
                    "candidates": "all",
                },
            },
            "machine": dataclasses.asdict(self.machine),
            "anchors": [dataclasses.asdict(anchor) for anchor in ANCHORS],
            "summary": {preset: summarize(self.runs_of(preset)) for preset in self.settings.presets},
            "goals": [dataclasses.asdict(goal) for goal in goal_checks(self)],
            "runs": [dataclasses.asdict(run) for run in self.runs],
        }


# --------------------------------------------------------------------------- the evaluation


def evaluate(settings: Settings) -> Evaluation:
    """Trains, converts and times every preset and seed.

    Args:
        settings: presets, seeds and the output folder.

    Returns:
        Every figure measured, per seed.

    Raises:
        EvaluationError: the output folder cannot be used. (Latency that cannot be
            measured is recorded per variant, as are variants that fail their checks.)
        train.TrainError: training failed (bad data, output folder in use).
        convert.ConvertError: a conversion could not even start (other than a
            variant failing its checks, which is recorded).
    """
    started = time.perf_counter()
    started_at = _now()
    prepare_output(settings.out)
    machine = describe_machine()
    harness = harness_usable()
    logger.info(
        "latency via %s",
        "python -m benchmarks latency" if harness else "device_runtime.Ranker (benchmarks harness not usable)",
    )
    runs, methods = [], []
    total = len(settings.presets) * len(settings.seeds)
    for preset in settings.presets:
        for seed in settings.seeds:
            logger.info("[%d/%d] %s seed %d", len(runs) + 1, total, preset, seed)
            run = evaluate_seed(preset, seed, settings.out / preset / f"seed-{seed}", harness)
            runs.append(run)
            for variant in run.variants:
                if variant.latency and variant.latency.method not in methods:
                    methods.append(variant.latency.method)
    machine = dataclasses.replace(machine, versions={**machine.versions, **_run_versions(runs)})
    return Evaluation(settings, machine, started_at, tuple(runs), tuple(methods), time.perf_counter() - started)


def prepare_output(out: Path) -> None:
    """Creates the output folder, or clears one this tool wrote before.

    Raises:
        EvaluationError: `out` is a file, or a non-empty folder this tool did not write.
    """
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER_FILE).is_file():
            raise EvaluationError(
                f"--out {out} is a non-empty folder this tool did not write; give a new or empty folder"
            )
        logger.info("clearing the earlier evaluation in %s", out)
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).write_text("written by python -m scripts.evaluate_presets\n", encoding="utf-8")


def evaluate_seed(preset: str, seed: int, folder: Path, harness: bool) -> SeedRun:
    """Trains one preset with one seed, converts every variant and times the accepted ones."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    export_dir = folder / EXPORT_DIR
    logger.info("%s seed %d: training", preset, seed)
    metrics = train.train_and_export(train.preset_config(preset, seed=seed), export_dir).metrics
    logger.info(
        "%s seed %d: trained in %.1f s (fit %.1f s), test RMSE %.4f, NDCG@10 %s",
        preset, seed, metrics["wall_seconds"], metrics["fit_seconds"], metrics["test_rmse"],
        _maybe(metrics.get("test_ndcg_at_10"), "{:.4f}"),
    )

    variants = []
    for quantization in VARIANTS:
        logger.info("%s seed %d: converting %s", preset, seed, VARIANT_LABELS[quantization])
        variants.append(convert_variant(export_dir, folder / f"model_{quantization.value}.tflite", quantization))
        _log_variant(preset, seed, variants[-1])

    accepted = {v.variant: Path(v.tflite_path) for v in variants if v.accepted}
    latencies: dict = {}
    if accepted:
        logger.info("%s seed %d: timing %d variant(s), all movies, %d thread", preset, seed, len(accepted), LATENCY_THREADS)
        latencies = measure_latency(accepted, folder / LATENCY_FILE, harness)
    variants = [_with_latency(v, latencies) for v in variants]
    for variant in variants:
        if variant.latency:
            logger.info(
                "%s seed %d: %s ranks %d movies in %.3f ms (median)",
                preset, seed, VARIANT_LABELS[Quantization(variant.variant)], variant.latency.candidates,
                variant.latency.median_us / 1000,
            )

    return SeedRun(
        preset=preset,
        seed=seed,
        export_dir=str(export_dir),
        test_rmse=float(metrics["test_rmse"]),
        test_ndcg_at_10=_optional_float(metrics.get("test_ndcg_at_10")),
        fit_seconds=float(metrics["fit_seconds"]),
        train_wall_seconds=float(metrics["wall_seconds"]),
        saved_model_bytes=_folder_bytes(export_dir / train.SAVED_MODEL_DIR),
        variants=tuple(variants),
        seconds=time.perf_counter() - started,
    )


def convert_variant(export_dir: Path, output: Path, quantization: Quantization) -> VariantRun:
    """Converts one variant; a file that fails the converter's checks is recorded, not raised.

    Raises:
        convert.ConvertError: the conversion could not start (a bad path or model).
    """
    try:
        result = convert.convert_saved_model(export_dir, output, ConversionConfig(quantization=quantization))
    except convert.ValidationError as error:
        # The rejected file's figures are kept for the record; the table shows it as failed.
        return _variant_run(quantization, error.result, accepted=False, error=str(error))
    except convert.ConversionError as error:
        # The converter itself refused this mode for this model (e.g. an op it cannot quantize).
        return VariantRun(variant=quantization.value, accepted=False, error=str(error))
    return _variant_run(quantization, result, accepted=True)


def _variant_run(quantization: Quantization, result, accepted: bool, error: Optional[str] = None) -> VariantRun:
    if result is None or result.parity is None:
        return VariantRun(variant=quantization.value, accepted=accepted, error=error)
    parity = result.parity
    return VariantRun(
        variant=quantization.value,
        accepted=accepted,
        tflite_path=str(result.tflite_path),
        size_bytes=int(result.size_bytes),
        rmse_tflite=float(parity.rmse_tflite),
        rmse_saved_model=float(parity.rmse_saved_model),
        max_abs_diff=float(parity.max_abs_diff),
        top10_overlap=float(parity.top10_overlap),
        error=error,
    )


def _log_variant(preset: str, seed: int, run: VariantRun) -> None:
    label = VARIANT_LABELS[Quantization(run.variant)]
    if run.accepted:
        logger.info(
            "%s seed %d: %s accepted, %s, test RMSE %.4f (SavedModel %.4f)",
            preset, seed, label, _size(run.size_bytes), run.rmse_tflite, run.rmse_saved_model,
        )
    else:
        logger.warning("%s seed %d: %s FAILED: %s", preset, seed, label, _one_line(run.error or "unknown reason"))


def _with_latency(run: VariantRun, latencies: dict) -> VariantRun:
    if not run.accepted:
        return run
    found = latencies.get(run.variant)
    if isinstance(found, Latency):
        return dataclasses.replace(run, latency=found)
    return dataclasses.replace(run, latency_error=str(found or "not measured"))


# --------------------------------------------------------------------------- latency


def harness_usable() -> bool:
    """Whether `python -m benchmarks latency --help` runs in this environment."""
    try:
        probe = subprocess.run(
            [sys.executable, "-m", "benchmarks", "latency", "--help"],
            cwd=REPO, capture_output=True, text=True, timeout=HARNESS_PROBE_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.warning("benchmarks harness not usable: %s", error)
        return False
    if probe.returncode != 0:
        logger.warning("benchmarks harness not usable: %s", _last_line(probe.stderr) or f"exit {probe.returncode}")
        return False
    return True


def measure_latency(models: dict, report_path: Path, harness: bool) -> dict:
    """Times ranking every movie with each model, one thread, interleaved across the models.

    Args:
        models: variant name -> accepted .tflite path.
        report_path: where the harness writes its JSON report.
        harness: use `python -m benchmarks latency`; if False, or if the
            harness fails on these models, `device_runtime.Ranker` is timed here.

    Returns:
        variant name -> Latency, or -> the reason it could not be measured.
    """
    if harness:
        try:
            return _harness_latency(models, report_path)
        except EvaluationError as error:
            logger.warning("benchmarks harness failed (%s); timing with device_runtime.Ranker instead", error)
    return _ranker_latency(models)


def _harness_latency(models: dict, report_path: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks", "latency"]
    for path in models.values():
        command += ["--model", str(path)]
    command += [
        "--candidates", "all", "--threads", str(LATENCY_THREADS), "--runs", str(LATENCY_RUNS),
        "--warmup", str(LATENCY_WARMUP), "--user", LATENCY_USER, "--backend", "litert",
        "--methods", "rank", "--no-saved-model", "--out", str(report_path), "-q",
    ]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=HARNESS_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise EvaluationError(f"it did not finish within {HARNESS_TIMEOUT_SECONDS} s") from None
    except OSError as error:
        raise EvaluationError(f"it could not start: {error}") from None
    if done.returncode != 0:
        raise EvaluationError(f"exit {done.returncode}: {_last_line(done.stderr) or 'no message'}")
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        records = report["records"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise EvaluationError(f"its report {report_path} is unreadable: {error}") from None
    load = (report.get("machine") or {}).get("load_average") or [None]

    by_path = {Path(path).resolve(): variant for variant, path in models.items()}
    latencies: dict = {}
    for record in records:
        variant = by_path.get(Path(str(record.get("model", ""))).resolve())
        if variant is None or record.get("method") != "rank":
            continue
        if record.get("status") != "ok" or record.get("median_us") is None:
            latencies[variant] = f"benchmarks latency: {record.get('error') or 'failed'}"
            continue
        latencies[variant] = Latency(
            median_us=float(record["median_us"]),
            runs=int(record["runs"]),
            candidates=int(record["candidates"]),
            backend=f"{record.get('backend')} {record.get('backend_version')}",
            delegates=record.get("delegate"),
            method=LatencyMethod.HARNESS.value,
            load_average=_optional_float(load[0]),
        )
    missing = sorted(set(models) - set(latencies))
    if missing:
        raise EvaluationError(f"its report {report_path} has no rank record for {', '.join(missing)}")
    return latencies


def _ranker_latency(models: dict, clock: Callable[[], int] = time.perf_counter_ns) -> dict:
    """Median of LATENCY_RUNS interleaved `Ranker.score(user, all movies)` calls per model after LATENCY_WARMUP."""
    from device_runtime import DeviceRuntimeError, Ranker

    rankers, latencies = {}, {}
    load = _load_average()
    for variant, path in models.items():
        try:
            ranker = Ranker(path, num_threads=LATENCY_THREADS, backend=LATENCY_BACKEND)
            movies = list(ranker.manifest.movies) if ranker.manifest and ranker.manifest.movies else None
            if not movies:
                raise EvaluationError(f"{path} has no embedded movie vocabulary to rank")
            for _ in range(LATENCY_WARMUP):
                ranker.score(LATENCY_USER, movies)
        except (DeviceRuntimeError, EvaluationError) as error:
            latencies[variant] = f"device_runtime.Ranker: {error}"
            continue
        rankers[variant] = (ranker, movies)

    samples: dict = {variant: [] for variant in rankers}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(LATENCY_RUNS):
            for variant, (ranker, movies) in rankers.items():
                begin = clock()
                ranker.score(LATENCY_USER, movies)
                samples[variant].append(clock() - begin)
    finally:
        if gc_was_enabled:
            gc.enable()

    for variant, (ranker, movies) in rankers.items():
        info = ranker.info()
        latencies[variant] = Latency(
            median_us=statistics.median(samples[variant]) / 1000,
            runs=len(samples[variant]),
            candidates=len(movies),
            backend=f"{info.backend} {info.backend_version}",
            delegates=info.delegates,
            method=LatencyMethod.RANKER.value,
            load_average=load[0] if load else None,
        )
    return latencies


# --------------------------------------------------------------------------- aggregation


def summarize(runs: Sequence[SeedRun]) -> dict:
    """Mean and sample standard deviation of every figure over one preset's seeds."""
    summary = {
        "seeds": [run.seed for run in runs],
        "keras": {
            "test_rmse": Aggregate.of([run.test_rmse for run in runs]).to_dict(),
            "test_ndcg_at_10": Aggregate.of([run.test_ndcg_at_10 for run in runs]).to_dict(),
            "fit_seconds": Aggregate.of([run.fit_seconds for run in runs]).to_dict(),
            "train_wall_seconds": Aggregate.of([run.train_wall_seconds for run in runs]).to_dict(),
            "saved_model_bytes": Aggregate.of([run.saved_model_bytes for run in runs]).to_dict(),
        },
        "variants": {},
    }
    for quantization in VARIANTS:
        variant_runs = [run.variant(quantization) for run in runs]
        accepted = [v for v in variant_runs if v.accepted]
        summary["variants"][quantization.value] = {
            "label": VARIANT_LABELS[quantization],
            "accepted": len(accepted),
            "failed": len(variant_runs) - len(accepted),
            "failures": [v.error for v in variant_runs if not v.accepted],
            "rejected_test_rmse": [v.rmse_tflite for v in variant_runs if not v.accepted and v.rmse_tflite is not None],
            "test_rmse": Aggregate.of([v.rmse_tflite for v in accepted]).to_dict(),
            "size_bytes": Aggregate.of([v.size_bytes for v in accepted]).to_dict(),
            "latency_median_us": Aggregate.of([v.latency.median_us if v.latency else None for v in accepted]).to_dict(),
            "latency_errors": [v.latency_error for v in accepted if v.latency_error],
        }
    return summary


@dataclasses.dataclass(frozen=True)
class GoalCheck:
    """One of issue 6's bounds against the measured figure."""

    goal: str
    figure: Optional[float]
    shown: str  # the figure as the table shows it
    bound: str
    passed: Optional[bool]  # None: not measurable from this run


def goal_checks(evaluation: Evaluation) -> tuple[GoalCheck, ...]:
    """Issue 6's bounds on the default preset (and the tutorial's reproduction), where measured."""
    checks = []
    goal_runs = evaluation.runs_of(GOAL_PRESET)
    reference_runs = evaluation.runs_of(REFERENCE_PRESET)
    if goal_runs:
        float32 = Aggregate.of([_accepted_rmse(r, Quantization.NONE) for r in goal_runs]).mean
        checks.append(_at_most(f"{GOAL_PRESET} float32 .tflite test RMSE (mean)", float32, GOAL_FLOAT32_RMSE, "{:.4f}"))
        checks.append(_at_most(f"{GOAL_PRESET} float32 .tflite test RMSE (mean), stretch", float32, STRETCH_FLOAT32_RMSE, "{:.4f}"))
        # Paired by seed, so a seed whose int8 variant failed does not shift the comparison.
        pairs = [(_accepted_rmse(r, Quantization.DYNAMIC_INT8), _accepted_rmse(r, Quantization.NONE)) for r in goal_runs]
        gaps = [int8 - f32 for int8, f32 in pairs if int8 is not None and f32 is not None]
        gap = abs(statistics.fmean(gaps)) if gaps else None
        checks.append(_at_most(f"{GOAL_PRESET} |dynamic-int8 - float32| test RMSE (mean over seeds)", gap, MAX_INT8_RMSE_GAP, "{:.4f}"))
        sizes = [r.variant(Quantization.NONE).size_bytes for r in goal_runs if r.variant(Quantization.NONE).accepted]
        checks.append(_at_most(
            f"{GOAL_PRESET} float32 .tflite size (largest seed), bytes", max(sizes) if sizes else None, MAX_FLOAT32_BYTES, "{:,.0f}"
        ))
        checks.append(_at_most(
            f"{GOAL_PRESET} training, whole train_and_export (longest seed), s",
            max(r.train_wall_seconds for r in goal_runs), MAX_TRAINING_SECONDS, "{:.1f}",
        ))
        if reference_runs:
            goal_latency, reference_latency = _mean_latency(goal_runs), _mean_latency(reference_runs)
            ratio = goal_latency / reference_latency if goal_latency and reference_latency else None
            checks.append(_at_most(
                f"{GOAL_PRESET} / {REFERENCE_PRESET} float32 latency, all movies (means)", ratio, MAX_LATENCY_RATIO, "{:.2f}x"
            ))
    if reference_runs:
        mean = Aggregate.of([r.test_rmse for r in reference_runs]).mean
        low, high = TUTORIAL_RMSE_RANGE
        checks.append(GoalCheck(
            f"{REFERENCE_PRESET} Keras test RMSE (mean) reproduces the tutorial",
            mean, f"{mean:.4f}", f"in {low}..{high}", low <= mean <= high,
        ))
    return tuple(checks)


def _accepted_rmse(run: SeedRun, quantization: Quantization) -> Optional[float]:
    variant = run.variant(quantization)
    return variant.rmse_tflite if variant.accepted else None


def _at_most(goal: str, figure: Optional[float], bound: float, pattern: str) -> GoalCheck:
    passed = None if figure is None else figure <= bound
    return GoalCheck(goal, figure, _maybe(figure, pattern), "<= " + pattern.format(bound), passed)


def _mean_latency(runs: Sequence[SeedRun]) -> Optional[float]:
    values = [r.variant(Quantization.NONE).latency.median_us for r in runs if r.variant(Quantization.NONE).latency]
    return statistics.fmean(values) if values else None


# --------------------------------------------------------------------------- the Markdown report


def format_markdown(evaluation: Evaluation) -> str:
    """The results as Markdown: the main table, the anchors, per-seed figures, goals and notes."""
    settings = evaluation.settings
    seeds = ", ".join(str(s) for s in settings.seeds)
    candidates = sorted({v.latency.candidates for r in evaluation.runs for v in r.variants if v.latency})
    candidates_text = "/".join(f"{c:,}" for c in candidates) or "all"
    lines = [
        "## Presets on MovieLens 100K (the tutorial's seed-42 80,000/20,000 split)",
        "",
        f"Mean ± sample standard deviation over training seeds {seeds} "
        f"(n = {len(settings.seeds)}); produced by `python -m scripts.evaluate_presets`.",
        "",
        f"| Preset | Model | Test RMSE | NDCG@10 | Size | Rank all {candidates_text} movies (ms) | Training time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    footnotes: list[str] = []
    for preset in settings.presets:
        runs = evaluation.runs_of(preset)
        summary = summarize(runs)
        keras = summary["keras"]
        lines.append(
            f"| {preset} | Keras SavedModel | {_pm(keras['test_rmse'], 4)} | {_pm(keras['test_ndcg_at_10'], 4)} "
            f"| {_size_cell(keras['saved_model_bytes'])} (folder) | — "
            f"| fit {_pm(keras['fit_seconds'], 1)}; whole run {_pm(keras['train_wall_seconds'], 1)} |"
        )
        for quantization in VARIANTS:
            variant = summary["variants"][quantization.value]
            rmse = _pm(variant["test_rmse"], 4) if variant["accepted"] else "failed"
            if variant["failed"]:
                footnotes.append(
                    f"{preset} {variant['label']}: failed on {variant['failed']} of {len(runs)} seeds: "
                    f"{_one_line(variant['failures'][0] or 'unknown reason', MAX_REASON_CHARS)}"
                    + (f"; the rejected file's test RMSE: {', '.join(f'{x:.4f}' for x in variant['rejected_test_rmse'])}"
                       if variant["rejected_test_rmse"] else "")
                )
                rmse += f" [{len(footnotes)}]" + (f" ({variant['accepted']}/{len(runs)} ok)" if variant["accepted"] else "")
            latency = variant["latency_median_us"]
            latency_cell = _pm({**latency, "mean": _scaled(latency["mean"], 1e-3), "std": _scaled(latency["std"], 1e-3)}, 3)
            if variant["latency_errors"]:
                footnotes.append(f"{preset} {variant['label']} latency: {_one_line(variant['latency_errors'][0], MAX_REASON_CHARS)}")
                latency_cell += f" [{len(footnotes)}]"
            lines.append(
                f"| {preset} | .tflite {variant['label']} | {rmse} | — | {_size_cell(variant['size_bytes'])} "
                f"| {latency_cell} | — |"
            )
    lines += ["", "Published anchors, all MovieLens 100K (other protocols are not directly comparable):", ""]
    lines += ["| Anchor | Test RMSE | Protocol |", "|---|---|---|"]
    lines += [f"| {a.name} | {'~' if a.approximate else ''}{a.rmse:g} | {a.protocol} |" for a in ANCHORS]

    lines += ["", "Per seed (test RMSE; latency in ms, all movies):", ""]
    header = ["Preset", "Seed", "Keras RMSE", "NDCG@10"]
    header += [f"{VARIANT_LABELS[q]} RMSE" for q in VARIANTS] + [f"{VARIANT_LABELS[q]} ms" for q in VARIANTS]
    header += ["fit s", "train s"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in evaluation.runs:
        cells = [run.preset, str(run.seed), f"{run.test_rmse:.4f}", _maybe(run.test_ndcg_at_10, "{:.4f}")]
        cells += [f"{v.rmse_tflite:.4f}" if v.accepted else "failed" for v in map(run.variant, VARIANTS)]
        cells += [_maybe(v.latency.median_us / 1000 if v.latency else None, "{:.3f}") for v in map(run.variant, VARIANTS)]
        cells += [f"{run.fit_seconds:.1f}", f"{run.train_wall_seconds:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")

    checks = goal_checks(evaluation)
    if checks:
        lines += ["", "Issue 6 bounds:", ""]
        for check in checks:
            verdict = {True: "met", False: "NOT met", None: "not measured"}[check.passed]
            lines.append(f"- {check.goal}: {check.shown} ({check.bound}): {verdict}")

    lines += ["", "Notes:", ""]
    lines += [f"- {note}" for note in _notes(evaluation)]
    lines += [f"- [{number}] {text}" for number, text in enumerate(footnotes, start=1)]
    return "\n".join(lines) + "\n"


def _notes(evaluation: Evaluation) -> list[str]:
    machine = evaluation.machine
    latencies = [v.latency for r in evaluation.runs for v in r.variants if v.latency]
    backends = sorted({latency.backend for latency in latencies})
    no_delegate = [
        f"{preset} {VARIANT_LABELS[q]}"
        for preset in evaluation.settings.presets
        for q in VARIANTS
        if any(r.variant(q).latency and r.variant(q).latency.delegates == "none" for r in evaluation.runs_of(preset))
    ]
    notes = [
        "Test RMSE: the Keras row is the SavedModel as trained (metrics.json); the .tflite rows are the "
        "converted files on all 20,000 test pairs (the converter's parity report). NDCG@10 is over each test "
        "user's rated movies, scored by the Keras model.",
        "Size: the .tflite file with its embedded manifest (vocabularies included); KiB = 1,024 bytes.",
        "Training time: `fit` is the model fitting, `whole run` the whole `train_and_export` call (data, "
        "fitting, evaluation, export; the first run in the process also imports TensorFlow), on a shared "
        "machine under `nice`.",
    ]
    if LatencyMethod.HARNESS.value in evaluation.latency_methods:
        notes.append(
            f"Latency: `python -m benchmarks latency --candidates all --threads {LATENCY_THREADS} --runs {LATENCY_RUNS} "
            f"--warmup {LATENCY_WARMUP} --backend litert --methods rank --no-saved-model`, all variants of a seed "
            f"in one interleaved run: median of the timed `Ranker.rank(user {LATENCY_USER}, every movie, k=10)` calls "
            "per seed, then mean ± std of those medians over the seeds."
        )
    if LatencyMethod.RANKER.value in evaluation.latency_methods:
        notes.append(
            f"Latency measured here, not with the benchmarks harness (it was not usable"
            f"{' for some runs' if LatencyMethod.HARNESS.value in evaluation.latency_methods else ''}): median of "
            f"{LATENCY_RUNS} interleaved `Ranker.score(user {LATENCY_USER}, every movie)` calls timed with "
            f"time.perf_counter_ns after {LATENCY_WARMUP} warm-up calls, {LATENCY_THREADS} thread, garbage "
            "collection off; then mean ± std of those medians over the seeds."
        )
    if latencies:
        counts = "/".join(f"{c:,}" for c in sorted({latency.candidates for latency in latencies}))
        notes.append(
            f"All movies: every title in the model's vocabulary ({counts}); titles are the model's movie ids, and "
            "MovieLens 100K's 1,682 movie ids carry 1,664 distinct titles."
        )
        notes.append(
            f"Latency backend: {', '.join(backends)}, {LATENCY_THREADS} thread, default delegates (XNNPACK)"
            + (f" except {', '.join(no_delegate)}, which ran without them (XNNPACK could not prepare it)" if no_delegate else "")
            + "."
        )
    loads = [latency.load_average for latency in latencies if latency.load_average is not None]
    if loads and machine.cores_usable and max(loads) > BUSY_LOAD_PER_CORE * machine.cores_usable:
        notes.append(
            f"The machine was shared: 1-minute load average (this evaluation included) "
            f"{min(loads):.1f}{'' if min(loads) == max(loads) else f' to {max(loads):.1f}'} on "
            f"{machine.cores_usable} usable cores just before the latency runs, so latencies and training "
            "times are slower and noisier than on a quiet machine."
        )
    versions = ", ".join(f"{name} {version}" for name, version in machine.versions.items() if version)
    load = ", ".join(f"{value:.2f}" for value in machine.load_average) if machine.load_average else "n/a"
    notes.append(
        f"Machine: {machine.cpu_model or 'unknown CPU'}, {machine.cores} cores ({machine.cores_usable} usable), "
        f"{machine.python}, {machine.platform}; {versions}; load average at start {load}. "
        f"Date: {evaluation.started_at}. Whole evaluation: {evaluation.wall_seconds / 60:.1f} min."
    )
    return notes


def _pm(aggregate: dict, digits: int) -> str:
    mean, std = aggregate["mean"], aggregate["std"]
    if mean is None:
        return "—"
    if std is None:
        return f"{mean:.{digits}f} (n={aggregate['n']})"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _size_cell(aggregate: dict) -> str:
    mean, std = aggregate["mean"], aggregate["std"]
    if mean is None:
        return "—"
    text = _size(mean)
    # Sizes differ between seeds by a few bytes of manifest; show a spread only when it is visible.
    return f"{text} ± {_size(std)}" if std and std >= VISIBLE_SIZE_SPREAD * mean else text


def _size(size: Optional[float]) -> str:
    if size is None:
        return "—"
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.2f} MiB"
    return f"{size / 1024:.1f} KiB"


def _scaled(value: Optional[float], factor: float) -> Optional[float]:
    return None if value is None else value * factor


def _maybe(value, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


# --------------------------------------------------------------------------- helpers


def describe_machine() -> Machine:
    """The CPU model, core counts, Python and platform of this machine."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return Machine(
        cpu_model=_cpu_model(),
        cores=os.cpu_count(),
        cores_usable=usable,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=platform.platform(),
        versions={name: _version(name) for name in ("tensorflow", "ai-edge-litert", "numpy")},
        load_average=_load_average(),
    )


def _load_average() -> Optional[tuple[float, ...]]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except (AttributeError, OSError):
        return None


def _cpu_model() -> Optional[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or None


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _run_versions(runs: Sequence[SeedRun]) -> dict:
    backends = sorted({v.latency.backend for r in runs for v in r.variants if v.latency})
    return {"latency backend": "; ".join(backends)} if backends else {}


def _folder_bytes(folder: Path) -> Optional[int]:
    if not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _optional_float(value) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _one_line(text: str, limit: Optional[int] = None) -> str:
    line = " ".join(str(text).split())
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_atomically(path: Path, text: str) -> None:
    """Writes `text` to a temporary file beside `path`, then renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit 2)."""

    def error(self, message: str):  # noqa: D102 (argparse's hook)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m scripts.evaluate_presets", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (a folder this tool wrote before is cleared)")
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                        help=f"training presets, comma separated (default: {','.join(DEFAULT_PRESETS)})")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                        help=f"training seeds, comma separated (default: {','.join(map(str, DEFAULT_SEEDS))})")
    parser.add_argument("--markdown", type=Path, help=f"write the Markdown table here (default: OUT/{TABLE_FILE})")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the training and conversion logs")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    presets = tuple(name.strip() for name in args.presets.split(",") if name.strip())
    seeds = []
    for text in (part.strip() for part in args.seeds.split(",") if part.strip()):
        try:
            seeds.append(int(text))
        except ValueError:
            raise EvaluationError(f"--seeds entry {text!r} is not an integer; give e.g. 0,1,2") from None
    markdown = args.markdown
    if markdown is not None and markdown.is_dir():
        raise EvaluationError(f"--markdown {markdown} is a folder; give a file path such as {markdown / TABLE_FILE}")
    return Settings(out=args.out, presets=presets, seeds=tuple(seeds), markdown=markdown)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if not verbose:
        for name in ("train", "convert", "device_runtime", "benchmarks"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # Keras warns at every save that the TFRS model has no get_config(); harmless here.
        for name in ("absl", "tensorflow"):
            logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        settings = _settings(args)
        evaluation = evaluate(settings)
        write_atomically(settings.out / RESULTS_FILE, json.dumps(evaluation.to_dict(), indent=2) + "\n")
        markdown = format_markdown(evaluation)
        write_atomically(settings.markdown_path, markdown)
    except (EvaluationError, train.TrainError, convert.ConvertError) as error:
        print(f"evaluate_presets: error: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("evaluate_presets: interrupted; the output folder holds a partial evaluation", file=sys.stderr)
        return 130
    logger.info("wrote %s and %s in %.1f min", settings.out / RESULTS_FILE, settings.markdown_path, evaluation.wall_seconds / 60)
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

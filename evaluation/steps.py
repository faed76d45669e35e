"""The steps of one seed: train, convert every variant, time the accepted ones with the benchmark harness.

Latency comes from `python -m benchmarks latency` in a process of its own (the
kit's one interleaved timer, in a process without TensorFlow, as on a device);
its JSON report is kept beside the models and read back into the harness's own
`Record` type.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

import convert
import train
from benchmarks import SCHEMA_VERSION, Record
from benchmarks.report import finite_or_none
from convert import ConversionConfig, Quantization
from device_runtime.errors import one_line
from evaluation.errors import StepError
from evaluation.records import Latency, SeedRun, VariantRun
from evaluation.settings import (
    LATENCY_BACKEND,
    LATENCY_RUNS,
    LATENCY_THREADS,
    LATENCY_USER,
    LATENCY_WARMUP,
    VARIANT_LABELS,
)

logger = logging.getLogger(__name__)

EXPORT_DIR = "export"
LATENCY_FILE = "latency.json"
HARNESS_TIMEOUT_SECONDS = 900

# What the harness gave one model: its latency, or why there is none.
LatencyOutcome = Union[Latency, str]
Runner = Callable[..., subprocess.CompletedProcess]


def evaluate_seed(
    preset: str, seed: int, variants: tuple[Quantization, ...], folder: Path, max_train_rows: Optional[int] = None
) -> SeedRun:
    """Trains one preset with one seed, converts every variant and times the accepted ones.

    Args:
        preset / seed: what to train.
        variants: the .tflite variants to convert.
        folder: this seed's folder (export/, model_<variant>.tflite, latency.json).
        max_train_rows: train on the first N training rows only.

    Returns:
        The seed's figures; a variant that fails the converter's checks, or
        whose latency cannot be measured, is recorded as such.

    Raises:
        train.TrainError: training failed.
        convert.ConvertError: a conversion could not even start (a bad path or model).
    """
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    export_dir = folder / EXPORT_DIR
    logger.info("%s seed %d: training", preset, seed)
    config = train.preset_config(preset, seed=seed)
    metrics = train.train_and_export(config, export_dir, max_train_rows=max_train_rows).metrics
    logger.info("%s seed %d: test RMSE %.4f after %.1f s", preset, seed, metrics["test_rmse"], metrics["wall_seconds"])

    runs, saved_model_bytes = [], None
    for quantization in variants:
        logger.info("%s seed %d: converting %s", preset, seed, VARIANT_LABELS[quantization])
        run, result = convert_variant(export_dir, folder / f"model_{quantization.value}.tflite", quantization)
        if result is not None:
            saved_model_bytes = result.saved_model_bytes
        if not run.accepted:
            logger.warning("%s seed %d: %s failed: %s", preset, seed, VARIANT_LABELS[quantization], run.error)
        runs.append(run)

    accepted = {run.variant: Path(run.tflite_path) for run in runs if run.accepted}
    latencies = measure_latency(accepted, folder / LATENCY_FILE) if accepted else {}
    return SeedRun(
        preset=preset,
        seed=seed,
        export_dir=str(export_dir),
        test_rmse=float(metrics["test_rmse"]),
        test_ndcg_at_10=finite_or_none(metrics.get("test_ndcg_at_10")),
        fit_seconds=float(metrics["fit_seconds"]),
        train_wall_seconds=float(metrics["wall_seconds"]),
        saved_model_bytes=saved_model_bytes,
        variants=tuple(with_latency(run, latencies) for run in runs),
        versions=dict(metrics.get("versions") or {}),
        seconds=time.perf_counter() - started,
    )


def convert_variant(
    export_dir: Path, output: Path, quantization: Quantization
) -> tuple[VariantRun, Optional[convert.ConversionResult]]:
    """Converts one variant; a file that fails the converter's checks is recorded, not raised.

    Returns:
        The variant's record, and the converter's result (None when it refused the mode).

    Raises:
        convert.ConvertError: the conversion could not start (a bad path or model).
    """
    try:
        result = convert.convert_saved_model(export_dir, output, ConversionConfig(quantization=quantization))
    except convert.ValidationError as error:
        # The rejected file's figures are kept for the record; the table shows it as failed.
        return _variant_run(quantization, error.result, accepted=False, error=one_line(error)), error.result
    except convert.ConversionError as error:
        # The converter itself refused this mode for this model (e.g. an op it cannot quantize).
        return VariantRun(variant=quantization.value, accepted=False, error=one_line(error)), None
    return _variant_run(quantization, result, accepted=True), result


def _variant_run(
    quantization: Quantization, result: Optional[convert.ConversionResult], accepted: bool, error: Optional[str] = None
) -> VariantRun:
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


def with_latency(run: VariantRun, latencies: Mapping[str, LatencyOutcome]) -> VariantRun:
    """The variant with its latency, or with the reason it has none (rejected variants are not timed)."""
    if not run.accepted:
        return run
    found = latencies.get(run.variant)
    if isinstance(found, Latency):
        return dataclasses.replace(run, latency=found)
    return dataclasses.replace(run, latency_error=found or "not measured")


def harness_command(models: Mapping[str, Path], report_path: Path) -> list[str]:
    """The `python -m benchmarks latency` call that times every model in one interleaved run."""
    command = [sys.executable, "-m", "benchmarks", "latency"]
    for path in models.values():
        command += ["--model", str(path)]
    return command + [
        "--candidates", "all", "--threads", str(LATENCY_THREADS), "--runs", str(LATENCY_RUNS),
        "--warmup", str(LATENCY_WARMUP), "--user", LATENCY_USER, "--backend", LATENCY_BACKEND,
        "--methods", "rank", "--no-saved-model", "--out", str(report_path), "-q",
    ]


def measure_latency(
    models: Mapping[str, Path], report_path: Path, run: Runner = subprocess.run
) -> dict[str, LatencyOutcome]:
    """Times ranking every movie with each model, one thread, interleaved across the models.

    Args:
        models: variant name -> accepted .tflite file.
        report_path: where the harness writes its JSON report.
        run: `subprocess.run` (injectable for tests).

    Returns:
        variant name -> Latency, or -> the one-line reason it could not be measured.
    """
    logger.info("timing %d model(s) with python -m benchmarks latency", len(models))
    try:
        command = harness_command(models, report_path)
        done = run(command, capture_output=True, text=True, timeout=HARNESS_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return dict.fromkeys(models, f"benchmarks latency did not finish within {HARNESS_TIMEOUT_SECONDS} s")
    except OSError as error:
        return dict.fromkeys(models, f"benchmarks latency could not start: {one_line(error)}")
    if done.returncode != 0:
        lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
        reason = one_line(lines[-1]) if lines else "no message"
        return dict.fromkeys(models, f"benchmarks latency exited with {done.returncode}: {reason}")
    try:
        return read_harness_report(report_path, models)
    except StepError as error:
        return dict.fromkeys(models, one_line(error))


def read_harness_report(report_path: Path, models: Mapping[str, Path]) -> dict[str, LatencyOutcome]:
    """Reads the harness's JSON report back: each model's rank record, as a Latency or a failure reason.

    Raises:
        StepError: the report is unreadable or of another schema version.
    """
    try:
        report = json.loads(Path(report_path).read_text(encoding="utf-8"))
        if report.get("schema_version") != SCHEMA_VERSION:
            raise StepError(f"benchmark report {report_path} has schema version {report.get('schema_version')}, "
                            f"this evaluation reads version {SCHEMA_VERSION}; update both together")
        records = [Record(**record) for record in report["records"]]
        load = (report.get("machine") or {}).get("load_average") or [None]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise StepError(f"benchmark report {report_path} is unreadable: {one_line(error)}") from None
    by_path = {Path(path).resolve(): variant for variant, path in models.items()}
    latencies: dict[str, LatencyOutcome] = {}
    for record in records:
        variant = by_path.get(Path(record.model).resolve())
        if variant is None or record.method != "rank":
            continue
        if not record.ok or record.median_us is None:
            latencies[variant] = f"benchmarks latency: {record.error or 'failed'}"
            continue
        latencies[variant] = Latency(
            median_us=record.median_us,
            runs=record.runs,
            candidates=record.candidates,
            backend=record.backend,
            backend_version=record.backend_version,
            delegate=record.delegate,
            load_average=load[0],
        )
    for variant in models:
        latencies.setdefault(variant, f"benchmark report {report_path} has no rank record for it")
    return latencies


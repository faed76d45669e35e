"""Small, hand-made evaluation records: the figures are chosen so the tests can compute the results by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from benchmarks.machine import Machine
from evaluation.records import Evaluation, Latency, SeedRun, VariantRun
from evaluation.settings import PresetSettings

STARTED_AT = "2025-01-02T03:04:05+00:00"
COMMAND = "python -m evaluation presets --out results --presets tutorial --seeds 0,1,2"


def machine(load: float = 0.1, cores: int = 4) -> Machine:
    """A machine block as `benchmarks.machine.describe_machine` gives it, with a chosen load."""
    return Machine(
        cpu_model="Test CPU 9000",
        architecture="x86_64",
        cores=cores,
        cores_usable=2,
        governor=None,
        emulated=False,
        emulation_evidence=None,
        os="Linux-test",
        python="CPython 3.11.7",
        numpy="1.26.4",
        backends={"ai_edge_litert": "2.3.0"},
        load_average=(load, load, load),
    )


def latency(median_us: float, load: Optional[float] = 0.1, delegate: str = "default") -> Latency:
    return Latency(median_us=median_us, runs=200, candidates=1664, backend="ai_edge_litert",
                   backend_version="2.3.0", delegate=delegate, load_average=load)


def accepted(variant: str, rmse: float, size: int, median_us: Optional[float], **changes) -> VariantRun:
    run = VariantRun(variant=variant, accepted=True, tflite_path=f"/x/model_{variant}.tflite", size_bytes=size,
                     rmse_tflite=rmse, rmse_saved_model=rmse, max_abs_diff=1e-6, top10_overlap=1.0,
                     latency=None if median_us is None else latency(median_us))
    return dataclasses.replace(run, **changes)


def rejected(variant: str, rmse: Optional[float], error: str) -> VariantRun:
    return VariantRun(variant=variant, accepted=False, rmse_tflite=rmse, error=error)


def seed_run(preset: str, seed: int, test_rmse: float, variants: tuple[VariantRun, ...], **changes) -> SeedRun:
    figures = dict(export_dir=f"/x/{preset}/seed-{seed}/export", test_ndcg_at_10=0.75, fit_seconds=2.0,
                   train_wall_seconds=6.0, saved_model_bytes=700_000,
                   versions={"python": "3.11.7", "tensorflow": "2.21.0"}, seconds=30.0)
    figures.update(changes)
    return SeedRun(preset=preset, seed=seed, test_rmse=test_rmse, variants=variants, **figures)


def evaluation(out: Path, runs: tuple[SeedRun, ...], variants, presets=("tutorial",), seeds=(0, 1, 2),
               load: float = 0.1, **settings) -> Evaluation:
    return Evaluation(
        settings=PresetSettings(out=out, presets=presets, seeds=seeds, variants=variants, **settings),
        machine=machine(load),
        started_at=STARTED_AT,
        runs=runs,
        wall_seconds=600.0,
    )

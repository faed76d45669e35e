"""On-device latency benchmarks for the kit's ranking models.

Needs numpy, `device_runtime` and one interpreter package; matplotlib only for
plots and TensorFlow only for the optional SavedModel reference (both imported
lazily).

    from benchmarks import LatencySettings, run_latency
    report = run_latency(LatencySettings(models=(Path("model.tflite"),), candidates=(100, "all")))
"""

from benchmarks.config import ALL_CANDIDATES, LatencySettings, Method
from benchmarks.errors import BenchmarkError, OutputError, SettingsError
from benchmarks.latency import run_latency
from benchmarks.report import SCHEMA_VERSION, LatencyReport, Record

__all__ = [
    "ALL_CANDIDATES",
    "BenchmarkError",
    "LatencyReport",
    "LatencySettings",
    "Method",
    "OutputError",
    "Record",
    "SCHEMA_VERSION",
    "SettingsError",
    "run_latency",
]

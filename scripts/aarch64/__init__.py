"""Runs the kit's device side on aarch64 under qemu user-mode emulation.

    scripts/aarch64/run.sh [MODEL.tflite ...]

builds (once, cached) an arm64 Debian bookworm root with Python 3.11 and two
wheel folders (tflite-runtime 2.14 with numpy 1.26; LiteRT with numpy 2),
then runs the device runtime's TensorFlow-free tests, `device_runtime rank`,
a small `benchmarks latency` run and a cross-architecture parity check for
both interpreters. See docs/arm.md.

The module that runs under emulation (`scores`) imports only the standard
library, numpy, an interpreter package and device_runtime.
"""

from scripts.aarch64.errors import EmulationError
from scripts.aarch64.pipeline import RunResult, Settings, Step, run

__all__ = ["EmulationError", "RunResult", "Settings", "Step", "run"]

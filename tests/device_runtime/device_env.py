"""Which environment the device runtime tests run in (no TensorFlow imports here)."""

from __future__ import annotations

import importlib.util

# A folder written by `python -m tests.device_runtime.make_fixtures DIR` in the main environment.
FIXTURES_ENV = "KIT_DEVICE_FIXTURES"
# The interpreter packages that run models without TensorFlow, in the runtime's auto order.
DEVICE_BACKENDS = ("ai_edge_litert", "tflite_runtime")


def installed_device_backend() -> str:
    """The backend `Backend.AUTO` should pick here, found independently of the Ranker."""
    for name in DEVICE_BACKENDS:
        if importlib.util.find_spec(name) is not None:
            return name
    raise AssertionError("neither ai_edge_litert nor tflite_runtime is installed in this environment")

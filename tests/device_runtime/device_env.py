"""Which environment the device runtime tests run in (no TensorFlow imports here)."""

from __future__ import annotations

import importlib.util
import os

# A folder written by `python -m tests.device_runtime.make_fixtures DIR` in the main environment.
FIXTURES_ENV = "KIT_DEVICE_FIXTURES"
# The interpreter package a device environment claims to run on; kit.sh sets it for each device leg.
INTERPRETER_ENV = "KIT_DEVICE_INTERPRETER"
# The interpreter packages that run models without TensorFlow, in the runtime's auto order.
DEVICE_BACKENDS = ("ai_edge_litert", "tflite_runtime")
# The numpy major version each of kit.sh's device legs installs: tflite-runtime 2.14 cannot load
# models under numpy 2, and the LiteRT leg exists to run the kit under numpy 2.
LEG_NUMPY_MAJOR = {"tflite_runtime": 1, "ai_edge_litert": 2}


def installed_device_backend() -> str:
    """The backend `Backend.AUTO` should pick here, found independently of the Ranker."""
    installed = installed_device_backends()
    if not installed:
        raise AssertionError("neither ai_edge_litert nor tflite_runtime is installed in this environment")
    return installed[0]


def installed_device_backends() -> tuple[str, ...]:
    """Every TensorFlow-free interpreter package importable here, in the auto order."""
    return tuple(name for name in DEVICE_BACKENDS if importlib.util.find_spec(name) is not None)


def claimed_device_interpreter() -> str | None:
    """The interpreter package this environment claims through `$KIT_DEVICE_INTERPRETER`, if set.

    Raises:
        AssertionError: the variable names no device interpreter package.
    """
    claimed = os.environ.get(INTERPRETER_ENV)
    if claimed is not None and claimed not in DEVICE_BACKENDS:
        raise AssertionError(f"{INTERPRETER_ENV}={claimed!r}; expected one of: {', '.join(DEVICE_BACKENDS)}")
    return claimed

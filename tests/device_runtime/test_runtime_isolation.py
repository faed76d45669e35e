"""The runtime works without TensorFlow; each device environment has none and runs the interpreter it claims."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.device_runtime.device_env import (
    FIXTURES_ENV,
    LEG_NUMPY_MAJOR,
    claimed_device_interpreter,
    installed_device_backends,
)

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter where any `import tensorflow` fails, as on a device.
BLOCKED_TENSORFLOW = r"""
import importlib.abc, json, sys

class BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, BlockTensorFlow())
import device_runtime
from device_runtime import BackendError, Ranker
from device_runtime.__main__ import main

ranker = Ranker(sys.argv[1])
scores = ranker.score(42, ["Speed (1994)", "M*A*S*H (1970)"]).tolist()
try:
    Ranker(sys.argv[1], backend="tensorflow")
    forced = "loaded"
except BackendError as error:
    forced = str(error)
code = main(["info", "--model", sys.argv[1], "--json"])
print(json.dumps({"scores": scores, "backend": ranker.info().backend, "forced": forced, "cli": code,
                  "tensorflow_imported": "tensorflow" in sys.modules}))
"""


def test_runtime_works_when_tensorflow_cannot_be_imported(kit_path, backend_name):
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_TENSORFLOW, str(kit_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend_name
    assert len(result["scores"]) == 2 and result["scores"][0] != result["scores"][1]
    assert result["tensorflow_imported"] is False
    assert result["cli"] == 0
    assert result["forced"].startswith("backend 'tensorflow' is not installed")


def test_importing_the_package_imports_no_interpreter_or_tensorflow():
    code = (
        "import sys, device_runtime\n"
        "print(sorted(m for m in ('tensorflow', 'ai_edge_litert', 'tflite_runtime') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.device_env
def test_device_environment_has_no_tensorflow():
    assert importlib.util.find_spec("tensorflow") is None
    with pytest.raises(ImportError):
        import tensorflow  # noqa: F401
    assert os.environ.get(FIXTURES_ENV), "the device tests must use models built by the main environment"


@pytest.mark.device_env
def test_device_environment_runs_the_interpreter_it_claims(kit_path):
    import numpy

    from device_runtime import Ranker

    claim = claimed_device_interpreter()
    installed = installed_device_backends()
    # Unclaimed (a board, a folder of the aarch64 check): one interpreter package, whichever it is.
    interpreter = claim or (installed[0] if len(installed) == 1 else None)
    assert interpreter is not None, f"a device environment holds one interpreter package; found {installed}"
    assert installed == (interpreter,), f"this environment claims {interpreter} alone; found {installed}"
    assert Ranker(kit_path).info().backend == interpreter
    # tflite-runtime 2.14 needs numpy<2 wherever it is; the LiteRT leg's numpy 2 only where claimed.
    if claim is not None or interpreter == "tflite_runtime":
        numpy_major = int(numpy.__version__.split(".")[0])
        expected = LEG_NUMPY_MAJOR[interpreter]
        assert numpy_major == expected, f"the {interpreter} leg runs numpy {expected}.x, not {numpy.__version__}"

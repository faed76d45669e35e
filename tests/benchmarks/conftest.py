"""Fixtures for the benchmark harness tests.

The models are the device runtime's fixtures (`tests/device_runtime/make_fixtures.py`):
in the device environment (no TensorFlow) they come from `KIT_DEVICE_FIXTURES=DIR`,
built beforehand by the main environment; in the main environment they are
built here once per session unless that variable points at a built folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.device_runtime import make_fixtures

FIXTURES_ENV = "KIT_DEVICE_FIXTURES"


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory) -> Path:
    folder = os.environ.get(FIXTURES_ENV)
    if folder:
        if not make_fixtures.fixtures_complete(Path(folder)):
            pytest.fail(
                f"{FIXTURES_ENV}={folder} does not hold every fixture; rebuild it with "
                f"`python -m tests.device_runtime.make_fixtures {folder}` in the main environment",
                pytrace=False,
            )
        return Path(folder)
    if importlib.util.find_spec("tensorflow") is None:
        pytest.fail(
            f"{FIXTURES_ENV} is not set and TensorFlow is not installed, so the test models cannot be built; "
            f"run `python -m tests.device_runtime.make_fixtures DIR` in the main environment and set {FIXTURES_ENV}=DIR",
            pytrace=False,
        )
    return make_fixtures.build_fixtures(tmp_path_factory.mktemp("benchmark_fixtures"))


@pytest.fixture(scope="session")
def kit_model(fixtures_dir) -> Path:
    """A tutorial-architecture model with the converter's manifest (60 titles)."""
    return fixtures_dir / make_fixtures.KIT


@pytest.fixture(scope="session")
def device_backend() -> str:
    """The interpreter package installed here that needs no TensorFlow (LiteRT first)."""
    for name in ("ai_edge_litert", "tflite_runtime"):
        if importlib.util.find_spec(name) is not None:
            return name
    raise AssertionError("neither ai_edge_litert nor tflite_runtime is installed in this environment")

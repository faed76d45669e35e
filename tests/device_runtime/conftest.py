"""Shared fixtures for the device runtime tests.

The models come from `tests/device_runtime/make_fixtures.py`, through the one
`fixtures_dir` fixture in tests/conftest.py (built in the main environment,
handed to the device environment with `KIT_DEVICE_FIXTURES=DIR`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.device_runtime import make_fixtures
from tests.device_runtime.device_env import installed_device_backend


@pytest.fixture(scope="session")
def reference(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / make_fixtures.REFERENCE).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def kit_path(fixtures_dir) -> Path:
    return fixtures_dir / make_fixtures.KIT


@pytest.fixture(scope="session")
def backend_name() -> str:
    return installed_device_backend()


@pytest.fixture(scope="session")
def expected_scores(reference, backend_name) -> dict:
    """Per model, the reference scores this backend must reproduce within `tolerance.SCORE_ATOL`.

    LiteRT's default (XNNPACK) is what the main environment ran; tflite-runtime
    2.14 does not apply XNNPACK to these models and matches LiteRT's builtin
    kernels bit for bit on x86_64 (measured). On aarch64 both differ from these
    x86_64 scores by a few float32 rounding steps (at most 1.4e-6 measured).
    """
    key = "litert_scores" if backend_name == "ai_edge_litert" else "litert_builtin_scores"
    return reference[key]


@pytest.fixture(scope="session")
def kit_ranker(kit_path):
    from device_runtime import Ranker

    return Ranker(kit_path)


@pytest.fixture(scope="session")
def serving(reference) -> dict:
    """The serving models' references (numpy, ridge solves, plain interpreter calls): see serving_fixtures.py."""
    return reference["serving"]


@pytest.fixture(scope="session")
def tower_key(backend_name) -> str:
    """Which tower reference this backend reproduces (see `expected_scores`)."""
    return "litert_scores" if backend_name == "ai_edge_litert" else "litert_builtin_scores"


@pytest.fixture(scope="session")
def factor_ranker(fixtures_dir):
    from device_runtime import Ranker

    return Ranker(fixtures_dir / make_fixtures.FACTOR)

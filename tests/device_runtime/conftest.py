"""Shared fixtures for the device runtime tests.

The models come from `tests/device_runtime/make_fixtures.py`. In the device
environment (no TensorFlow) they must have been built beforehand by the main
environment and handed over through `KIT_DEVICE_FIXTURES=DIR`; without it the
tests fail loudly instead of skipping. In the main environment they are built
here, once per session, unless `KIT_DEVICE_FIXTURES` points at a built folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from tests.device_runtime import make_fixtures
from tests.device_runtime.device_env import FIXTURES_ENV, installed_device_backend


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory) -> Path:
    folder = os.environ.get(FIXTURES_ENV)
    if folder:
        path = Path(folder)
        if not make_fixtures.fixtures_complete(path):
            pytest.fail(
                f"{FIXTURES_ENV}={folder} does not hold every fixture; rebuild it in the main environment with "
                f"`python -m tests.device_runtime.make_fixtures {folder}`",
                pytrace=False,
            )
        return path
    if importlib.util.find_spec("tensorflow") is None:
        pytest.fail(
            f"{FIXTURES_ENV} is not set and TensorFlow is not installed, so the test models cannot be built; "
            "run `python -m tests.device_runtime.make_fixtures DIR` in the main environment "
            f"and set {FIXTURES_ENV}=DIR",
            pytrace=False,
        )
    return make_fixtures.build_fixtures(tmp_path_factory.mktemp("device_runtime_fixtures"))


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

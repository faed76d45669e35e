"""Fixtures for the benchmark harness tests.

The models are the device runtime's fixtures, from the one `fixtures_dir`
fixture in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.device_runtime import make_fixtures
from tests.device_runtime.device_env import installed_device_backend


@pytest.fixture(scope="session")
def kit_model(fixtures_dir) -> Path:
    """A tutorial-architecture model with the converter's manifest (60 titles)."""
    return fixtures_dir / make_fixtures.KIT


@pytest.fixture(scope="session")
def device_backend() -> str:
    """The interpreter package installed here that needs no TensorFlow (LiteRT first)."""
    return installed_device_backend()

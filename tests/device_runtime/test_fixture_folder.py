"""The one fixture-folder implementation (tests/conftest.py) fails loudly instead of rebuilding or skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.device_runtime import make_fixtures
from tests.device_runtime.device_env import FIXTURES_ENV

REPO = Path(__file__).resolve().parents[2]
A_TEST_THAT_NEEDS_THE_FOLDER = "tests/device_runtime/test_runtime_ranker.py::test_malformed_manifest"


def run_pytest(environ: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", A_TEST_THAT_NEEDS_THE_FOLDER],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=120,
    )


def test_an_incomplete_folder_fails_naming_what_is_missing(tmp_path):
    (tmp_path / make_fixtures.KIT).write_bytes(b"not checked")
    result = run_pytest({**os.environ, FIXTURES_ENV: str(tmp_path)})
    assert result.returncode == 1, result.stdout
    assert f"{FIXTURES_ENV}={tmp_path} lacks {make_fixtures.FLOAT16}, " in result.stdout
    assert f"python -m tests.device_runtime.make_fixtures {tmp_path}" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == [make_fixtures.KIT]  # not rebuilt behind the user's back


@pytest.mark.device_env
def test_without_the_folder_the_device_environment_fails(tmp_path):
    environ = {name: value for name, value in os.environ.items() if name != FIXTURES_ENV}
    result = run_pytest(environ)
    assert result.returncode == 1, result.stdout
    assert f"{FIXTURES_ENV} is not set and TensorFlow is not installed" in result.stdout

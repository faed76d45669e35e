"""Fixtures shared by every test package.

Fixtures that train or convert need TensorFlow: use them only from tests
marked `@pytest.mark.tensorflow`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


# Fixtures that train or convert: a test using one runs TensorFlow and must say so.
TENSORFLOW_FIXTURES = frozenset({"tiny_export", "tutorial_style_export", "conversions"})


def pytest_collection_modifyitems(config, items):
    """Refuses a test that uses a TensorFlow fixture without the `tensorflow` marker (the device run would fail it)."""
    unmarked = [
        item.nodeid
        for item in items
        if TENSORFLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("tensorflow") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"mark these tests @pytest.mark.tensorflow (they use {', '.join(sorted(TENSORFLOW_FIXTURES))}): "
            + ", ".join(unmarked)
        )


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory) -> Path:
    """The device fixture folder (`tests/device_runtime/make_fixtures.py`): the one place it is found or built.

    With `KIT_DEVICE_FIXTURES=DIR` set, DIR must hold every fixture (it is never
    rebuilt there). Without it, the main environment builds the folder once per
    session; the device environment (no TensorFlow) cannot, and fails loudly.
    """
    from tests.device_runtime import make_fixtures
    from tests.device_runtime.device_env import FIXTURES_ENV

    folder = os.environ.get(FIXTURES_ENV)
    rebuild = f"`python -m tests.device_runtime.make_fixtures DIR` in the main environment"
    if folder:
        missing = make_fixtures.missing_fixtures(Path(folder))
        if missing:
            pytest.fail(
                f"{FIXTURES_ENV}={folder} lacks {', '.join(missing)}; rebuild it with {rebuild.replace('DIR', folder)}",
                pytrace=False,
            )
        return Path(folder)
    if importlib.util.find_spec("tensorflow") is None:
        pytest.fail(
            f"{FIXTURES_ENV} is not set and TensorFlow is not installed, so the test models cannot be built; "
            f"run {rebuild} and set {FIXTURES_ENV}=DIR",
            pytrace=False,
        )
    return make_fixtures.build_fixtures(tmp_path_factory.mktemp("device_fixtures"))


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A real `python -m train` export folder, trained in seconds on 2,000 rows."""
    from tests.factories import train_tiny_export

    return train_tiny_export(tmp_path_factory.mktemp("tiny") / "export")


@pytest.fixture(scope="session")
def tutorial_style_export(tmp_path_factory):
    """A SavedModel saved exactly as the tutorial does (output `output_1`, [N, 1])."""
    from tests.factories import tutorial_style_saved_model

    return tutorial_style_saved_model(tmp_path_factory.mktemp("tutorial_style") / "export")


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """A command line run in-process configures the root logger on the test's
    captured stderr; drop what it added so later tests do not log to a closed stream."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)

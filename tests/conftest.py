"""Fixtures shared by every test package.

Fixtures that train or convert need TensorFlow: use them only from tests
marked `@pytest.mark.tensorflow`.
"""

from __future__ import annotations

import pytest


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

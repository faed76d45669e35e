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

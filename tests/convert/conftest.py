"""Conversions shared by the converter's tests: each model is converted once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ranking figures on fewer users than the default 200 where a test is about something else.
FEW_RANKING_USERS = 40


class Conversions:
    """Converts on first request and remembers the result (or the error raised)."""

    def __init__(self, folder: Path, tiny_export: Path):
        self.folder = folder
        self.tiny_export = tiny_export
        self._done: dict = {}

    def get(self, name: str, saved_model: Path = None, **config):
        if name not in self._done:
            from convert import ConversionConfig, ConvertError, convert_saved_model

            out = self.folder / name / "model.tflite"
            out.parent.mkdir(parents=True)
            try:
                self._done[name] = convert_saved_model(saved_model or self.tiny_export, out, ConversionConfig(**config))
            except ConvertError as error:
                self._done[name] = error
        return self._done[name]


@pytest.fixture(scope="session")
def conversions(tmp_path_factory, tiny_export) -> Conversions:
    return Conversions(tmp_path_factory.mktemp("conversions"), tiny_export)


@pytest.fixture(scope="session")
def test_split():
    """The tutorial's 20,000 test pairs, from the training package."""
    from train import load_ratings, split_ratings

    return split_ratings(load_ratings())[1]


# The tflite-runtime 2.14 device environment beside the main one (`./kit.sh setup` makes it; KIT_VENV_SUFFIX as there).
DEVICE_PYTHON = (
    Path(__file__).resolve().parents[2] / f".venv-device{os.environ.get('KIT_VENV_SUFFIX', '')}" / "bin" / "python"
)


@pytest.fixture(scope="session")
def device_pythons() -> tuple:
    """`--runtime-python` values that add tflite-runtime 2.14 to a conversion, when the device venv exists."""
    return (str(DEVICE_PYTHON),) if DEVICE_PYTHON.is_file() else ()


@pytest.fixture(scope="session")
def factor_tables():
    """Seeded random factor tables over the offline data's vocabularies (the reference for the factor family)."""
    from tests.convert.serving_models import factor_tables

    return factor_tables(seed=7)


@pytest.fixture(scope="session")
def factor_saved_model(tmp_path_factory, factor_tables) -> Path:
    """`train.serving.FactorServing` over `factor_tables`: all seven signatures."""
    from tests.convert.serving_models import factor_saved_model

    return factor_saved_model(tmp_path_factory.mktemp("factor") / "saved_model", factor_tables)


@pytest.fixture(scope="session")
def factor_float32(conversions, factor_saved_model, device_pythons):
    """The factor family converted to float32, for LiteRT with XNNPACK and tflite-runtime 2.14."""
    result = conversions.get(
        "factor-float32",
        saved_model=factor_saved_model,
        ranking_users=FEW_RANKING_USERS,
        targets=("litert-xnnpack", "tflite-runtime-2.14"),
        runtime_pythons=device_pythons,
    )
    assert result.accepted, getattr(result, "failures", result)
    return result

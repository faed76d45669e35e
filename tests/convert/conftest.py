"""Conversions shared by the converter's tests: each model is converted once per session."""

from __future__ import annotations

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

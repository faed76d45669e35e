"""Signatures are matched by name: the tutorial's own export, and a model with other input names."""

from __future__ import annotations

import numpy as np
import pytest

from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.manifest import read_manifest
from tests.convert import models
from tests.convert.conftest import FEW_RANKING_USERS
from tests.convert.scoring import litert_scores, saved_model_scores

pytestmark = pytest.mark.tensorflow


def test_tutorial_style_export_with_explicit_mapping(conversions, tutorial_style_export, test_split):
    from train import load_ratings

    result = conversions.get(
        "tutorial-style",
        saved_model=tutorial_style_export,
        user_input="user_id",
        item_input="movie_title",
        ranking_users=FEW_RANKING_USERS,
    )
    assert result.accepted, getattr(result, "failures", result)
    assert (result.signature.output, result.signature.output_shape) == ("output_1", (-1, 1))
    # Nothing lies beside a tutorial export: the vocabularies come out of its lookup tables.
    assert result.vocabulary_source == "SavedModel lookup tables"
    manifest = read_manifest(read_flatbuffer(result.tflite_path.read_bytes()))
    ratings = load_ratings()
    assert list(manifest.users) == [str(u) for u in ratings.unique_users()]
    assert list(manifest.movies) == [str(m) for m in ratings.unique_movies()]
    users, movies = list(test_split.user_id[:500]), list(test_split.movie_title[:500])
    expected = saved_model_scores(tutorial_style_export, users, movies)
    np.testing.assert_allclose(litert_scores(result.tflite_path, users, movies), expected, rtol=0, atol=1e-4)


def test_other_input_names_are_accepted_when_mapped(conversions, tiny_export, tmp_path_factory):
    saved_model = models.renamed_inputs_saved_model(
        tiny_export / "saved_model", tmp_path_factory.mktemp("renamed") / "sm"
    )
    result = conversions.get(
        "renamed", saved_model=saved_model, user_input="uid", item_input="title", ranking_users=FEW_RANKING_USERS
    )
    assert result.accepted, getattr(result, "failures", result)
    assert (result.signature.user_input, result.signature.item_input, result.signature.output) == (
        "uid",
        "title",
        "score",
    )
    users, movies = ["1", "2", "3"], ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)"]
    expected = saved_model_scores(tiny_export / "saved_model", users, movies)
    actual = litert_scores(result.tflite_path, users, movies, user_input="uid", item_input="title")
    np.testing.assert_allclose(actual, expected, atol=1e-4)

"""The default preset's blend: signature, unknown ids, round trip, builtin ops, and its RMSE on full data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from train.config import AutoRecConfig, BlendConfig, preset_config

pytestmark = pytest.mark.tensorflow

TINY_BLEND = BlendConfig(autorec=AutoRecConfig(hidden=16, max_steps=20, steps_per_epoch=10), export_rank=4)


def _tiny_config(**changes):
    return dataclasses.replace(preset_config("default", epochs=2), embedding_dimension=8, blend=TINY_BLEND, **changes)


@pytest.fixture(scope="module")
def tiny_blend():
    from train.blend import train_blend
    from train.data import load_ratings, split_ratings
    from train.model import carve_validation

    ratings = load_ratings()
    train_rows, test_rows = split_ratings(ratings)
    config = _tiny_config()
    fit_rows, validation_rows = carve_validation(train_rows.take(np.arange(2000)), config)
    users, movies = tuple(ratings.unique_users()), tuple(ratings.unique_movies())
    return train_blend(fit_rows, validation_rows, users, movies, config), test_rows


def _serve(tables, users, movies):
    import tensorflow as tf

    from train.serving import FactorServing, FoldIn

    module = FactorServing(tables, FoldIn(4.0, 4.0))  # held: its tf.function keeps only a weak reference to it
    return module.score_strings(tf.constant(users), tf.constant(movies))["rating"].numpy()


def test_vocabularies_are_every_user_and_movie_of_the_data(tiny_blend):
    result, _ = tiny_blend
    assert len(result.tables.users) == 943 and len(result.tables.movies) == 1664
    assert list(result.tables.users) == sorted(result.tables.users)


def test_served_scores_are_the_tables_dot_products_clipped(tiny_blend):
    result, test_rows = tiny_blend
    tables = result.tables
    out = _serve(tables, test_rows.user_id[:500], test_rows.movie_title[:500])
    assert out.shape == (500,) and out.dtype == np.float32
    user_rows = np.array([tables.users.index(user) + 1 for user in test_rows.user_id[:500]])
    movie_rows = np.array([tables.movies.index(movie) + 1 for movie in test_rows.movie_title[:500]])
    by_hand = np.clip(
        tables.global_mean
        + tables.user_bias[user_rows]
        + tables.movie_bias[movie_rows]
        + np.einsum("nk,nk->n", tables.user_vectors[user_rows], tables.movie_vectors[movie_rows]),
        1.0,
        5.0,
    )
    np.testing.assert_allclose(out, by_hand, atol=1e-5)


def test_an_unknown_user_gets_the_movies_mean_over_known_users(tiny_blend):
    """The tables are double-centred: the unknown row is the average user."""
    result, _ = tiny_blend
    tables = result.tables
    movie = "Star Wars (1977)"
    row = tables.movies.index(movie) + 1  # row 0 is the unknown id
    unclipped = (
        tables.global_mean
        + tables.user_bias[1:]
        + tables.movie_bias[row]
        + tables.user_vectors[1:] @ tables.movie_vectors[row]
    )
    assert not tables.user_vectors[0].any() and not tables.movie_vectors[0].any()
    unknown = _serve(tables, ["no such user"], [movie])[0]
    assert unknown == pytest.approx(float(np.clip(unclipped.mean(), 1.0, 5.0)), abs=1e-4)
    both_unknown = _serve(tables, ["nobody"], ["No Such Movie (2031)"])[0]
    assert both_unknown == pytest.approx(float(np.clip(tables.global_mean, 1.0, 5.0)), abs=1e-5)


def test_blend_figures_are_typed_and_count_epochs_run_and_kept(tiny_blend):
    result, _ = tiny_blend
    names = [member.name for member in result.members]
    assert names == ["matrix factorisation", "item AutoRec 1", "item AutoRec 2", "user AutoRec 1"]
    for member in result.members:
        assert 1 <= member.curve.best_epoch <= member.curve.epochs_run <= 2
        assert len(member.curve.validation_rmse) == member.curve.epochs_run
    details = result.to_dict()
    assert details["members"][1]["steps_per_epoch"] == TINY_BLEND.autorec.steps_per_epoch
    assert len(details["blend_weights"]) == 4 and details["export_rank"] == TINY_BLEND.export_rank


def test_saved_and_reloaded_blend_scores_the_same(tiny_blend, tmp_path):
    import tensorflow as tf

    from train.serving import FactorServing, FoldIn, export_saved_model

    result, test_rows = tiny_blend
    module = FactorServing(result.tables, FoldIn(4.0, 4.0))
    export_saved_model(module, tmp_path / "saved_model")
    signature = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    users, movies = tf.constant(test_rows.user_id[:100]), tf.constant(test_rows.movie_title[:100])
    np.testing.assert_array_equal(
        signature(user_id=users, movie_title=movies)["rating"].numpy(), module.score_strings(users, movies)["rating"].numpy()
    )


def test_blend_converts_to_builtin_ops_only(tiny_blend, tmp_path):
    import tensorflow as tf

    from device_runtime.flatbuffer import read_flatbuffer
    from train.serving import FactorServing, FoldIn, export_saved_model

    result, _ = tiny_blend
    export_saved_model(FactorServing(result.tables, FoldIn(4.0, 4.0)), tmp_path / "saved_model")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    operators = read_flatbuffer(flatbuffer).operator_codes
    assert operators and not any(op.is_custom for op in operators)
    runner = tf.lite.Interpreter(model_content=flatbuffer).get_signature_runner("serving_default")
    assert list(runner.get_output_details()["rating"]["shape_signature"]) == [-1]


def test_blend_without_validation_rows_writes_finite_figures_and_sees_training_rows_only(tmp_path, monkeypatch):
    """Without validation rows: every epoch run, equal weights, null (never Infinity) validation figures.
    And the pipeline hands the blend its training rows only: no test row reaches the side tables."""
    import json

    from train import artifacts, blend
    from train.data import load_ratings, split_ratings
    from train.pipeline import train_and_export

    seen = []
    original = blend.side_features

    def recording(row_sets, users, movies):
        seen.extend(rows for rows in row_sets if rows is not None)
        return original(row_sets, users, movies)

    monkeypatch.setattr(blend, "side_features", recording)
    train_and_export(_tiny_config(validation_fraction=0.0), tmp_path / "model", max_train_rows=2000)

    train_rows, _ = split_ratings(load_ratings())
    columns = [np.concatenate([getattr(rows, column) for rows in seen]) for column in ("user_id", "timestamp")]
    assert sorted(zip(*columns)) == sorted(zip(train_rows.user_id[:2000], train_rows.timestamp[:2000]))

    text = (tmp_path / "model" / artifacts.METRICS_FILE).read_text()
    assert "Infinity" not in text and "NaN" not in text
    metrics = json.loads(text)
    assert metrics["validation_rmse"] is None
    assert metrics["epochs_run"] == metrics["best_epoch"] == 2  # every epoch run, the last one kept
    details = metrics["architecture_details"]
    assert details["blend_validation_rmse"] is None and details["folded_validation_rmse"] is None
    assert details["blend_weights"] == [0.25] * 4 and details["blend_intercept"] == 0.0
    for member in details["members"]:
        assert member["validation_rmse"] is None and member["epochs_run"] == member["best_epoch"] == 2


def test_default_preset_beats_the_published_baselines_on_device(tmp_path):
    """Full data, default preset: the converted float32 .tflite must score test RMSE <= 0.900
    (Surprise's SVD++ reaches 0.919, GC-MC 0.905)."""
    from convert import ConversionConfig, convert_saved_model
    from train.pipeline import train_and_export

    result = train_and_export(preset_config("default"), tmp_path / "model")
    assert result.test_rmse <= 0.900
    converted = convert_saved_model(tmp_path / "model", tmp_path / "model.tflite", ConversionConfig())
    assert converted.accepted
    assert converted.parity.rmse_tflite <= 0.900

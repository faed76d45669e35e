"""The default preset's blend: signature, unknown ids, round trip, builtin ops, and its RMSE on full data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from train.config import BlendConfig, preset_config

pytestmark = pytest.mark.tensorflow

TINY_BLEND = BlendConfig(autorec_hidden=16, autorec_steps_max=20, autorec_eval_every=10, export_rank=4)


@pytest.fixture(scope="module")
def tiny_blend():
    from train.blend import side_tables_from_rows, train_blend
    from train.data import load_ratings, split_ratings
    from train.model import carve_validation

    ratings = load_ratings()
    train_rows, test_rows = split_ratings(ratings)
    config = dataclasses.replace(preset_config("default", epochs=2), embedding_dimension=8, blend=TINY_BLEND)
    fit_rows, validation_rows = carve_validation(train_rows.take(np.arange(2000)), config)
    users, movies = side_tables_from_rows(ratings)
    return train_blend(fit_rows, validation_rows, config, users, movies), test_rows


def test_vocabularies_are_every_user_and_movie_of_the_data(tiny_blend):
    result, _ = tiny_blend
    assert len(result.users) == 943 and len(result.movies) == 1664
    assert list(result.users) == sorted(result.users)


def test_scores_are_ratings_in_the_one_to_five_range(tiny_blend):
    import tensorflow as tf

    result, test_rows = tiny_blend
    out = result.module.serve(tf.constant(test_rows.user_id[:500]), tf.constant(test_rows.movie_title[:500]))["rating"].numpy()
    assert out.shape == (500,) and out.dtype == np.float32
    assert out.min() >= 1.0 and out.max() <= 5.0


def test_an_unknown_user_gets_the_movies_mean_over_known_users(tiny_blend):
    """The tables are double-centred: the unknown row is the average user."""
    import tensorflow as tf

    result, _ = tiny_blend
    module = result.module
    movie = "Star Wars (1977)"
    row = result.movies.index(movie) + 1  # row 0 is the unknown id
    unclipped = (
        module.global_mean.numpy()
        + module.user_bias.numpy()[1:]
        + module.item_bias.numpy()[row]
        + module.user_vectors.numpy()[1:] @ module.item_vectors.numpy()[row]
    )
    unknown = module.serve(tf.constant(["no such user"]), tf.constant([movie]))["rating"].numpy()[0]
    assert unknown == pytest.approx(float(np.clip(unclipped.mean(), 1.0, 5.0)), abs=1e-4)
    both_unknown = module.serve(tf.constant(["nobody"]), tf.constant(["No Such Movie (2031)"]))["rating"].numpy()[0]
    assert both_unknown == pytest.approx(float(np.clip(module.global_mean.numpy(), 1.0, 5.0)), abs=1e-5)


def test_saved_and_reloaded_blend_scores_the_same(tiny_blend, tmp_path):
    import tensorflow as tf

    from train.model import export_saved_model

    result, test_rows = tiny_blend
    export_saved_model(result.module, tmp_path / "saved_model")
    signature = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    users, movies = tf.constant(test_rows.user_id[:100]), tf.constant(test_rows.movie_title[:100])
    np.testing.assert_array_equal(
        signature(user_id=users, movie_title=movies)["rating"].numpy(), result.module.serve(users, movies)["rating"].numpy()
    )


def test_blend_converts_to_builtin_ops_only(tiny_blend, tmp_path):
    import tensorflow as tf

    from device_runtime.flatbuffer import read_flatbuffer
    from train.model import export_saved_model

    result, _ = tiny_blend
    export_saved_model(result.module, tmp_path / "saved_model")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    operators = read_flatbuffer(flatbuffer).operator_codes
    assert operators and not any(op.is_custom for op in operators)
    runner = tf.lite.Interpreter(model_content=flatbuffer).get_signature_runner("serving_default")
    assert list(runner.get_output_details()["rating"]["shape_signature"]) == [-1]


def test_blend_refuses_streamed_data(tmp_path):
    from train.errors import ConfigError
    from train.pipeline import train_and_export

    config = preset_config("default")
    with pytest.raises(ConfigError, match=r"trains on in-memory data on one machine"):
        train_and_export(config, tmp_path / "m", data_source=str(_one_shard_folder(tmp_path)))
    assert not (tmp_path / "m").exists()


def _one_shard_folder(tmp_path):
    from train import streaming

    folder = tmp_path / "shards"
    streaming.write_shards(folder, "train", ["1"], ["A (1990)"], [4], 1)
    streaming.write_shards(folder, "test", ["1"], ["A (1990)"], [4], 1)
    return folder


def test_default_preset_beats_the_published_baselines_on_device(tmp_path):
    """Full data, default preset: the converted float32 .tflite must score test RMSE <= 0.900."""
    from convert import ConversionConfig, convert_saved_model
    from train.pipeline import train_and_export

    result = train_and_export(preset_config("default"), tmp_path / "model")
    assert result.test_rmse <= 0.900
    converted = convert_saved_model(tmp_path / "model", tmp_path / "model.tflite", ConversionConfig())
    assert converted.accepted
    assert converted.parity.rmse_tflite <= 0.900

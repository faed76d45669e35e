"""Model, export contract, SavedModel round trip and the tutorial preset's RMSE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from train import artifacts
from train.config import ConfigError, preset_config

pytestmark = pytest.mark.tensorflow

REPO = Path(__file__).resolve().parents[2]


def _serving_signature(saved_model: Path):
    import tensorflow as tf

    return tf.saved_model.load(str(saved_model)).signatures["serving_default"]


def test_export_folder_follows_the_contract(tiny_export):
    assert (tiny_export / artifacts.SAVED_MODEL_DIR / "saved_model.pb").is_file()
    users = artifacts.read_vocabulary(tiny_export / artifacts.USERS_VOCAB)
    movies = artifacts.read_vocabulary(tiny_export / artifacts.MOVIES_VOCAB)
    assert len(users) == 943 and len(movies) == 1664
    assert users == sorted(users) and "42" in users and "Speed (1994)" in movies

    metrics = json.loads((tiny_export / artifacts.METRICS_FILE).read_text())
    assert metrics["producer"] == artifacts.PRODUCER
    assert metrics["rows"] == {"total": 100_000, "train": 2000, "test": 20_000}
    assert metrics["vocabulary_sizes"] == {"users": 943, "movies": 1664}
    assert metrics["preset"] == "tutorial" and metrics["seed"] == 42
    assert metrics["data"]["source"] == "recbole==1.2.1" and len(metrics["data"]["sha256"]) == 64
    assert metrics["versions"]["tensorflow"].startswith("2.")
    assert metrics["wall_seconds"] > 0


def test_recorded_test_rmse_is_the_saved_models_and_beats_a_constant(tiny_export):
    """metrics.json's test RMSE is recomputed by hand from the SavedModel's scores on the test rows,
    and it must beat predicting every rating as the middle of the scale, which an untrained model
    (scores near 0, RMSE about 3.7) or a broken one cannot."""
    import tensorflow as tf

    from train.data import load_ratings, split_ratings

    metrics = json.loads((tiny_export / artifacts.METRICS_FILE).read_text())
    _, test_rows = split_ratings(load_ratings())
    signature = _serving_signature(tiny_export / artifacts.SAVED_MODEL_DIR)
    scores = signature(user_id=tf.constant(test_rows.user_id), movie_title=tf.constant(test_rows.movie_title))["rating"]
    errors = scores.numpy().astype(np.float64) - test_rows.user_rating.astype(np.float64)
    assert metrics["test_rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)), abs=1e-6)
    middle_of_the_scale = np.sqrt(np.mean((test_rows.user_rating.astype(np.float64) - 3.0) ** 2))
    assert metrics["test_rmse"] < middle_of_the_scale


def test_signature_has_named_string_inputs_and_rating_output(tiny_export):
    import tensorflow as tf

    signature = _serving_signature(tiny_export / artifacts.SAVED_MODEL_DIR)
    _, inputs = signature.structured_input_signature
    assert set(inputs) == {"user_id", "movie_title"}
    for spec in inputs.values():
        assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    assert list(signature.structured_outputs) == ["rating"]
    out = signature(user_id=tf.constant(["42", "1", "no such user"]), movie_title=tf.constant(["Speed (1994)"] * 3))
    assert out["rating"].shape == (3,) and out["rating"].dtype == tf.float32
    # Unknown ids go to the out-of-vocabulary row and still get a finite score.
    assert np.all(np.isfinite(out["rating"].numpy()))


def test_saved_model_in_a_fresh_process_scores_like_the_in_memory_model(tmp_path):
    import tensorflow as tf

    from train.data import load_ratings, split_ratings
    from train.model import fit_model, in_memory_training_data
    from train.serving import TowerServing, export_saved_model

    ratings = load_ratings()
    train_rows, _ = split_ratings(ratings)
    config = preset_config("tutorial", epochs=1)
    trained = fit_model(
        in_memory_training_data(train_rows.take(np.arange(3000)), config),
        list(ratings.unique_users()),
        list(ratings.unique_movies()),
        config,
    )
    in_memory = trained.model({"user_id": tf.constant(["42"]), "movie_title": tf.constant(["Speed (1994)"])}).numpy()
    export_saved_model(TowerServing.from_tower(trained.model.ranking_model), tmp_path / "saved_model")

    script = (
        "import os, sys, json; os.environ['TF_USE_LEGACY_KERAS'] = '1'\n"
        "import tensorflow as tf\n"
        "f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = f(user_id=tf.constant(['42']), movie_title=tf.constant(['Speed (1994)']))\n"
        "print(json.dumps(float(out['rating'].numpy()[0])))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "saved_model")], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == pytest.approx(float(in_memory.reshape(-1)[0]), abs=1e-6)


def test_tutorial_preset_lands_in_the_tutorials_rmse_window(tmp_path):
    """Full data, the tutorial's hyper-parameters: the tutorial reports 1.11."""
    from train.pipeline import train_and_export

    result = train_and_export(preset_config("tutorial"), tmp_path / "tutorial")
    assert 1.05 <= result.test_rmse <= 1.17
    assert result.metrics["epochs_run"] == result.metrics["best_epoch"] == 3
    assert result.metrics["validation_rmse"] is None


def test_training_is_reproducible_for_a_seed(tmp_path):
    from train.data import load_ratings, split_ratings
    from train.model import fit_model, in_memory_training_data
    from train.serving import TowerServing, strings_scorer

    ratings = load_ratings()
    train_rows, test_rows = split_ratings(ratings)
    rows = train_rows.take(np.arange(2000))
    users, movies = list(ratings.unique_users()), list(ratings.unique_movies())

    def scores(seed):
        config = preset_config("tutorial", epochs=1, seed=seed)
        trained = fit_model(in_memory_training_data(rows, config), users, movies, config)
        score = strings_scorer(TowerServing.from_tower(trained.model.ranking_model))
        return score(test_rows.user_id[:100], test_rows.movie_title[:100])

    first, second = scores(42), scores(42)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, scores(7))  # the seed matters, so equality above is not vacuous


def test_unknown_preset_and_bad_override_are_refused():
    with pytest.raises(ConfigError, match=r"unknown preset 'fast'; choose one of: "):
        preset_config("fast")
    with pytest.raises(ConfigError, match=r"epochs must be >= 1, got 0"):
        preset_config("tutorial", epochs=0)

"""Scores equal TensorFlow's own interpreter and the stored reference scores."""

from __future__ import annotations

import numpy as np
import pytest

from device_runtime import Ranker
from tests.device_runtime import make_fixtures as mf
from tests.device_runtime.tolerance import SCORE_ATOL

# tf.lite.Interpreter's own deprecation notice is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")


def grid(reference) -> tuple[list[str], list[str]]:
    """Every known user with every known movie, plus unknown ids."""
    users = [u for u in reference["users"] for _ in reference["movies"]] + ["nobody"] * len(reference["movies"])
    movies = list(reference["movies"]) * (len(reference["users"]) + 1)
    return users, movies


@pytest.mark.parametrize("model", [mf.KIT, mf.FLOAT16, mf.TUTORIAL, mf.RENAMED])
def test_installed_backend_reproduces_reference_scores(fixtures_dir, reference, backend_name, model):
    """The installed backend, on this machine, matches the x86_64 LiteRT reference scores, with and
    without XNNPACK, within SCORE_ATOL. (The int8 model: see
    test_runtime_backends.test_int8_model_on_the_installed_backend.)"""
    names = {"user_input": "uid", "item_input": "title"} if model == mf.RENAMED else {}
    ranker = Ranker(fixtures_dir / model, **names)
    assert ranker.info().backend == backend_name
    users, movies = mf.probe_pairs()
    scores = ranker.score_pairs(users, movies)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, reference["litert_scores"][model], rtol=0, atol=SCORE_ATOL)
    np.testing.assert_allclose(scores, reference["litert_builtin_scores"][model], rtol=0, atol=SCORE_ATOL)


def _tf_lite_scores(path, users, movies, output, **options) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), **options)
    runner = interpreter.get_signature_runner("serving_default")
    result = runner(user_id=np.array(users, dtype=object), movie_title=np.array(movies, dtype=object))
    return np.asarray(result[output]).reshape(-1)


@pytest.mark.tensorflow
@pytest.mark.parametrize("model", [mf.KIT, mf.FLOAT16, mf.TUTORIAL])
def test_scores_equal_tf_lite_interpreter(fixtures_dir, reference, model):
    ranker = Ranker(fixtures_dir / model)
    users, movies = grid(reference)
    expected = _tf_lite_scores(fixtures_dir / model, users, movies, ranker.signature.output)
    scores = ranker.score_pairs(users, movies)
    assert len(scores) == len(users) == 2640
    np.testing.assert_array_equal(scores, expected)


@pytest.mark.tensorflow
def test_int8_scores_match_tf_lite_builtin_kernels(fixtures_dir, reference):
    """tf.lite's default delegate cannot run the int8 model at all; without it the two runtimes'
    int8 kernels agree within SCORE_ATOL (measured max 4.8e-7)."""
    import tensorflow as tf

    ranker = Ranker(fixtures_dir / mf.INT8)
    users, movies = grid(reference)
    expected = _tf_lite_scores(
        fixtures_dir / mf.INT8,
        users,
        movies,
        "rating",
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    np.testing.assert_allclose(ranker.score_pairs(users, movies), expected, rtol=0, atol=SCORE_ATOL)


@pytest.mark.tensorflow
def test_tensorflow_backend_when_forced(fixtures_dir, reference):
    import tensorflow as tf

    ranker = Ranker(fixtures_dir / mf.KIT, backend="tensorflow")
    info = ranker.info()
    assert (info.backend, info.backend_version) == ("tensorflow", tf.__version__)
    users, movies = grid(reference)
    np.testing.assert_array_equal(
        ranker.score_pairs(users, movies), _tf_lite_scores(fixtures_dir / mf.KIT, users, movies, "rating")
    )


@pytest.mark.tensorflow
def test_the_tutorials_own_export_converted_as_the_tutorial_does(tutorial_style_export, tmp_path):
    """The tutorial's `TFLiteConverter.from_saved_model(export)` file ranks like the SavedModel."""
    import tensorflow as tf

    path = tmp_path / "converted_model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(tutorial_style_export)).convert())
    ranker = Ranker(path)
    assert (ranker.signature.output, ranker.signature.output_shape) == ("output_1", (-1, 1))
    titles = ["Speed (1994)", "M*A*S*H (1970)", "Dances with Wolves (1990)", "No Such Movie (2099)"]
    scores = ranker.score("42", titles)
    np.testing.assert_array_equal(scores, _tf_lite_scores(path, ["42"] * len(titles), titles, "output_1"))
    loaded = tf.saved_model.load(str(tutorial_style_export))
    saved = loaded({"user_id": np.array(["42"] * len(titles)), "movie_title": np.array(titles)}).numpy()
    np.testing.assert_allclose(scores, saved.reshape(-1), rtol=0, atol=SCORE_ATOL)

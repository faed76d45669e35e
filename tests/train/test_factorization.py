"""The blend's parts, each against a hand computation: side tables, rated-movie sets, SVD++, AutoRec, fold."""

from __future__ import annotations

import types

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow

USERS = ("1", "2", "3")
MOVIES = ("A (1931)", "B (1995)", "C (1977)", "D")


def _rows(**columns):
    return types.SimpleNamespace(**{name: np.asarray(values) for name, values in columns.items()})


TRAINING_ROWS = _rows(
    user_id=["1", "2", "1"],
    movie_title=["A (1931)", "B (1995)", "B (1995)"],
    user_rating=[5.0, 3.0, 4.0],
    user_age=[24, 53, 24],
    user_gender=["M", "F", "M"],
    user_occupation=["technician", "other", "technician"],
    user_zip_code=["85711", "T8H1N", "85711"],
    movie_genres=["Comedy|Drama", "Action", "Action"],
)


def test_side_tables_come_from_the_rows_given_and_leave_other_ids_unknown():
    from train.side_features import side_features

    side = side_features([TRAINING_ROWS, None], USERS, MOVIES)
    # Occupations known from these rows: other (1), technician (2).
    # Ages 24 and 53 fall in the groups [18, 25) and [50, 56): buckets 2 and 6.
    # Zip 85711 starts with 8 (bucket 9); T8H1N is not a digit (bucket 11).
    assert side.user_features.tolist() == [[0, 0, 0, 0], [2, 1, 2, 9], [6, 2, 1, 11], [0, 0, 0, 0]]
    assert side.user_feature_sizes == (8, 3, 3, 12)
    # Genres known from these rows: Action, Comedy, Drama. Movie C and D are not in the rows.
    np.testing.assert_array_equal(
        side.movie_genres, [[0, 0, 0], [0, 0.5, 0.5], [1, 0, 0], [0, 0, 0], [0, 0, 0]]
    )
    # 1931 is before 1950 (bucket 1), 1995 is 6 + 5; C (1977) was never rated in these rows.
    assert side.movie_year.tolist() == [0, 1, 11, 0, 0]


def test_rows_without_side_columns_give_unknown_users_and_years_from_titles():
    from train.side_features import side_features

    side = side_features([_rows(user_id=["3"], movie_title=["C (1977)"], user_rating=[2.0])], USERS, MOVIES)
    assert not side.user_features.any()
    assert side.movie_year.tolist() == [0, 0, 0, 2 + (1977 - 1950) // 10, 0]


def _tiny_factorization():
    from train.factorization import FactorizationConfig, FactorizationModel, LookupTables, implicit_feedback
    from train.side_features import side_features

    side = side_features([TRAINING_ROWS], USERS, MOVIES)
    rated = implicit_feedback(np.array([1, 2, 1]), np.array([1, 2, 2]), user_count=4)
    config = FactorizationConfig(dimension=3, vector_l2=0.1, bias_l2=0.01, init_stddev=0.5)
    return FactorizationModel(LookupTables(USERS, MOVIES, side, rated), config, mean_rating=3.5), side


def _by_hand(model, side, user_row: int, movie_row: int, rated: list):
    """SVD++ with side features from the model's weights, in numpy (see train/factorization.py).

    Returns the rating, the composed user and movie vectors, and the composed user and movie biases.
    """
    features = side.user_features[user_row]
    user = model.user_embedding.get_weights()[0][user_row].copy()
    user_bias = model.user_id_bias.get_weights()[0][user_row, 0]
    for k, (vectors, biases) in enumerate(zip(model.user_feature_embeddings, model.user_feature_biases)):
        user += vectors.get_weights()[0][features[k]]
        user_bias += biases.get_weights()[0][features[k], 0]
    implicit = model.implicit_vectors.numpy()
    if rated:
        user += implicit[rated].sum(axis=0) / np.sqrt(len(rated))
    genres, year = side.movie_genres[movie_row], side.movie_year[movie_row]
    movie = (
        model.movie_embedding.get_weights()[0][movie_row]
        + genres @ model.genre_embedding.get_weights()[0]
        + model.year_embedding.get_weights()[0][year]
    )
    movie_bias = (
        model.movie_id_bias.get_weights()[0][movie_row, 0]
        + genres @ model.genre_bias.get_weights()[0][:, 0]
        + model.year_bias.get_weights()[0][year, 0]
    )
    rating = float(model.global_mean.numpy()) + user_bias + movie_bias + user @ movie
    return rating, user, movie, user_bias, movie_bias


def test_factorization_model_computes_svdpp_with_side_features():
    import tensorflow as tf

    model, side = _tiny_factorization()
    model({"user_id": tf.constant(["1"]), "movie_title": tf.constant(["A (1931)"])})  # builds the layers
    # Give the zero-initialised biases values, so that every term is checked.
    rng = np.random.default_rng(0)
    biases = [model.user_id_bias, model.movie_id_bias, model.genre_bias, model.year_bias, *model.user_feature_biases]
    for layer in biases:
        layer.set_weights([rng.normal(size=layer.get_weights()[0].shape).astype(np.float32)])

    users, movies = ["1", "2", "nobody"], ["B (1995)", "A (1931)", "B (1995)"]
    scores = model({"user_id": tf.constant(users), "movie_title": tf.constant(movies)})
    expected = [
        _by_hand(model, side, 1, 2, rated=[1, 2])[0],  # user 1 rated movie rows 1 and 2
        _by_hand(model, side, 2, 1, rated=[2])[0],
        _by_hand(model, side, 0, 2, rated=[])[0],  # an unknown user: row 0, no rated movies
    ]
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-5)

    # The loss: squared error plus the per-example L2 on the composed vectors and biases, averaged.
    batch = {
        "user_id": tf.constant(["1", "2"]),
        "movie_title": tf.constant(["B (1995)", "A (1931)"]),
        "user_rating": tf.constant([4.0, 1.0]),
    }
    per_example = []
    for (user_row, movie_row, rated), target in zip([(1, 2, [1, 2]), (2, 1, [2])], [4.0, 1.0]):
        rating, user, movie, user_bias, movie_bias = _by_hand(model, side, user_row, movie_row, rated)
        per_example.append(
            (rating - target) ** 2 + 0.1 * (user @ user + movie @ movie) + 0.01 * (user_bias**2 + movie_bias**2)
        )
    assert float(model.compute_loss(batch)) == pytest.approx(np.mean(per_example), rel=1e-5)

    # The factor tables give the same ratings, and a new rated-movie set moves only the user vectors.
    from train.factorization import implicit_feedback

    tables = model.factor_tables(implicit_feedback(np.array([1]), np.array([3]), user_count=4))
    _, user, movie, user_bias, movie_bias = _by_hand(model, side, 1, 2, rated=[3])
    np.testing.assert_allclose(tables.user_vectors[1], user, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tables.movie_vectors[2], movie, rtol=1e-5, atol=1e-6)
    assert tables.user_bias[1] == pytest.approx(user_bias, abs=1e-5)
    assert tables.movie_bias[2] == pytest.approx(movie_bias, abs=1e-5)


def test_autorec_loss_counts_observed_entries_only():
    import tensorflow as tf

    from train.autorec import RATINGS, AutoRec
    from train.config import AutoRecConfig

    ratings = np.array([[5.0, 0.0, 3.0], [0.0, 4.0, 0.0]], np.float32)
    model = AutoRec(3, AutoRecConfig(hidden=2, l2=10.0, dropout=0.0))
    rebuilt = model({RATINGS: tf.constant(ratings)}).numpy()
    encoder, encoder_bias = model.encoder.get_weights()
    decoder, decoder_bias = model.decoder.get_weights()
    by_hand = (1 / (1 + np.exp(-(ratings @ encoder + encoder_bias)))) @ decoder + decoder_bias
    np.testing.assert_allclose(rebuilt, by_hand, rtol=1e-5, atol=1e-6)
    observed = ratings > 0
    squared_errors = float(np.sum((rebuilt - ratings)[observed] ** 2))
    assert float(model.compute_loss({RATINGS: tf.constant(ratings)})) == pytest.approx(squared_errors, rel=1e-5)
    # The L2 penalty, lambda / 2 * (|W_encoder|^2 + |W_decoder|^2), is Keras' regularisation loss.
    penalty = 5.0 * (np.sum(encoder**2) + np.sum(decoder**2))
    assert float(tf.add_n(model.losses)) == pytest.approx(penalty, rel=1e-5)


def test_fold_keeps_an_exact_low_rank_matrix_and_gives_unknown_ids_the_means():
    from train.factor_tables import fold

    rng = np.random.default_rng(1)
    movie_bias, user_bias = rng.normal(size=4), rng.normal(size=5)
    movie_factors, user_factors = rng.normal(size=(4, 2)), rng.normal(size=(5, 2))
    known = 3.5 + movie_bias[:, None] + user_bias[None, :] + movie_factors @ user_factors.T
    matrix = np.zeros((5, 6))
    matrix[1:, 1:] = known
    matrix[0, :] = matrix[:, 0] = 99.0  # the unknown row and column are ignored
    tables = fold(matrix, rank=2, users=tuple("uvwxy"), movies=tuple("abcd"))
    np.testing.assert_allclose(tables.rating_matrix()[1:, 1:], known, atol=1e-5)
    np.testing.assert_allclose(tables.rating_matrix()[1:, 0], known.mean(axis=1), atol=1e-5)  # unknown user
    np.testing.assert_allclose(tables.rating_matrix()[0, 1:], known.mean(axis=0), atol=1e-5)  # unknown movie
    assert tables.rating_matrix()[0, 0] == pytest.approx(known.mean())
    # Rank 1 keeps the largest singular direction only: the error is the second singular value.
    centred = known - known.mean(axis=1, keepdims=True) - known.mean(axis=0, keepdims=True) + known.mean()
    second = np.linalg.svd(centred, compute_uv=False)[1]
    cut = fold(matrix, rank=1, users=tuple("uvwxy"), movies=tuple("abcd"))
    assert np.linalg.norm(cut.rating_matrix()[1:, 1:] - known, 2) == pytest.approx(second, rel=1e-4)
    assert tables.ratings(np.array([1, 0]), np.array([1, 0])).tolist() == pytest.approx(
        np.clip([known[0, 0], known.mean()], 1, 5).tolist(), abs=1e-5
    )


def test_blend_weights_are_least_squares_pulled_towards_equal_weights():
    from train.blend import blend_weights

    rng = np.random.default_rng(2)
    predictions = rng.normal(3.5, 1.0, size=(200, 3))
    targets = predictions @ np.array([0.5, 0.3, 0.2]) + 0.1
    weights, intercept = blend_weights(predictions, targets, ridge=0.0)
    np.testing.assert_allclose(weights, [0.5, 0.3, 0.2], atol=1e-9)
    assert intercept == pytest.approx(0.1, abs=1e-9)
    weights, _ = blend_weights(predictions, targets, ridge=1e6)
    np.testing.assert_allclose(weights, [1 / 3] * 3, atol=1e-4)


def test_factorization_fits_the_same_under_a_distribution_strategy():
    """The model trains under tf.distribute (here one mirrored CPU replica) as it does without one:
    the rated-movie sets, lookups and per-example averaged loss work inside a replica."""
    import tensorflow as tf

    from train.factorization import FactorizationConfig, LookupTables, fit_factorization, implicit_feedback
    from train.model import TrainingData, rows_dataset
    from train.side_features import side_features

    rows = _rows(
        user_id=np.array(["1", "2", "1", "3", "2", "3"] * 4),
        movie_title=np.array(["A (1931)", "B (1995)", "B (1995)", "C (1977)", "C (1977)", "A (1931)"] * 4),
        user_rating=np.array([5.0, 3.0, 4.0, 2.0, 1.0, 4.0] * 4, np.float32),
    )
    rated = implicit_feedback(np.array([1, 2, 1, 3, 2, 3]), np.array([1, 2, 2, 3, 3, 1]), user_count=4)
    tables = LookupTables(USERS, MOVIES, side_features([rows], USERS, MOVIES), rated)

    def fit(strategy):
        data = TrainingData(rows_dataset(rows).batch(8), None, rows_dataset(rows).batch(8), len(rows.user_id))
        fitted = fit_factorization(
            data,
            tables,
            FactorizationConfig(dimension=4),
            mean_rating=3.2,
            learning_rate=0.05,
            epochs=3,
            patience=3,
            seed=5,
            strategy=strategy,
        )
        return fitted.curve.validation_rmse

    alone = fit(None)
    mirrored = fit(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert alone[-1] < alone[0]  # it learns
    np.testing.assert_allclose(mirrored, alone, rtol=1e-4)

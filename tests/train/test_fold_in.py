"""The fold-in's ridge choice: states checked against a direct solve and the exported graph, the grid by brute force."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from train.errors import TrainError
from train.fold_in import BIAS_RIDGES, HISTORY_LENGTHS, VECTOR_RIDGES, choose_fold_in, fold_in_state


@dataclasses.dataclass(frozen=True)
class Rows:
    user_id: np.ndarray
    movie_title: np.ndarray
    user_rating: np.ndarray


@dataclasses.dataclass(frozen=True)
class Tables:
    """Just what the fold-in reads of `train.serving.FactorTables`."""

    global_mean: float
    movie_bias: np.ndarray
    movie_vectors: np.ndarray
    users: tuple
    movies: tuple


def tables(movies=40, dimension=4, seed=0) -> Tables:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0, 0.5, (movies + 1, dimension)).astype(np.float32)
    bias = rng.normal(0, 0.3, movies + 1).astype(np.float32)
    vectors[0], bias[0] = 0, 0
    return Tables(3.5, bias, vectors, tuple(f"u{i}" for i in range(12)), tuple(f"m{i}" for i in range(movies)))


def direct_state(table, rows, ratings, vector_ridge, bias_ridge):
    """The ridge regression written out: solve (A^T A + diag) x = A^T y over the known rows."""
    keep = [i for i, row in enumerate(rows) if row > 0]
    design = np.array([[*table.movie_vectors[rows[i]], 1.0] for i in keep], np.float64).reshape(len(keep), -1)
    target = np.array([ratings[i] - table.global_mean - table.movie_bias[rows[i]] for i in keep])
    penalty = np.diag([vector_ridge] * table.movie_vectors.shape[1] + [bias_ridge])
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ target)
    return solution[:-1], solution[-1]


@pytest.mark.parametrize("vector_ridge, bias_ridge", [(3.0, 3.0), (1.0, 13.0), (8.0, 2.0)])
def test_a_state_is_the_ridge_solution(vector_ridge, bias_ridge):
    table = tables()
    rows = np.array([3, 0, 17, 17, 29, 5])  # row 0 (an unknown title) is left out; a repeat counts twice
    ratings = np.array([5.0, 1.0, 2.0, 3.0, 4.0, 4.5])
    vector, bias = fold_in_state(table, rows, ratings, vector_ridge, bias_ridge)
    expected_vector, expected_bias = direct_state(table, rows, ratings, vector_ridge, bias_ridge)
    np.testing.assert_allclose(vector, expected_vector, atol=1e-12)
    assert bias == pytest.approx(expected_bias, abs=1e-12)


def test_an_empty_history_is_the_unknown_user():
    vector, bias = fold_in_state(tables(), np.zeros(0, int), np.zeros(0), 3.0, 5.0)
    assert not vector.any() and bias == 0.0


def synthetic_rows(table, seed=1):
    """Each user rates movies as their own vector and bias predict, plus noise; a quarter of the rows are held out."""
    rng = np.random.default_rng(seed)
    users, titles, ratings = [], [], []
    for user in table.users:
        vector, bias = rng.normal(0, 0.4, table.movie_vectors.shape[1]), rng.normal(0, 0.3)
        for row in rng.choice(np.arange(1, len(table.movies) + 1), 24, replace=False):
            raw = table.global_mean + table.movie_bias[row] + bias + table.movie_vectors[row] @ vector
            users.append(user), titles.append(table.movies[row - 1])
            ratings.append(float(np.clip(raw + rng.normal(0, 0.3), 1, 5)))
    held_out = np.arange(len(users)) % 4 == 0
    as_rows = lambda keep: Rows(np.array(users)[keep], np.array(titles)[keep], np.array(ratings, np.float32)[keep])
    return as_rows(~held_out), as_rows(held_out)


def test_the_grid_is_scored_by_brute_force_and_its_best_pair_wins():
    table = tables()
    fit, validation = synthetic_rows(table)
    choice = choose_fold_in(table, fit, validation, seed=5)
    grid = {(v, b): rmse for v, b, rmse in choice.grid}
    assert set(grid) == {(v, b) for v in VECTOR_RIDGES for b in BIAS_RIDGES}
    assert grid[(choice.vector_ridge, choice.bias_ridge)] == min(grid.values()) == choice.validation_rmse

    # One pair by brute force: every user, every history length, one direct solve each.
    rng = np.random.default_rng(5)
    index = {title: row for row, title in enumerate(table.movies, start=1)}
    squared, count = 0.0, 0
    for user in sorted(set(validation.user_id)):
        mine = np.flatnonzero(fit.user_id == user)
        mine = mine[rng.permutation(len(mine))]
        held = np.flatnonzero(validation.user_id == user)
        for length in HISTORY_LENGTHS:
            history = mine[: len(mine) if length is None else length]
            rows = np.array([index[t] for t in fit.movie_title[history]])
            vector, bias = direct_state(table, rows, fit.user_rating[history], 5.0, 2.0)
            for title, truth in zip(validation.movie_title[held], validation.user_rating[held]):
                row = index[title]
                raw = table.global_mean + table.movie_bias[row] + bias + table.movie_vectors[row] @ vector
                squared += (np.clip(raw, 1, 5) - truth) ** 2
                count += 1
    assert grid[(5.0, 2.0)] == pytest.approx(np.sqrt(squared / count), rel=1e-9)


def test_figures_per_history_length_and_the_unknown_user():
    table = tables()
    fit, validation = synthetic_rows(table)
    choice = choose_fold_in(table, fit, validation, seed=5)
    lengths = [figures.length for figures in choice.by_history]
    assert lengths == [0, *HISTORY_LENGTHS]
    assert all(f.users == 12 and f.rows == len(validation.user_id) for f in choice.by_history)
    by_length = {f.length: f.rmse for f in choice.by_history}
    # The users' own ratings follow their vectors: all 18 of them predict far better than none.
    assert by_length[None] < by_length[0] - 0.05
    record = choice.to_dict()
    assert record["vector_ridge"] == choice.vector_ridge and set(record["validation_rmse_by_history"]) == {
        "0",
        "1",
        "3",
        "5",
        "10",
        "20",
        "50",
        "all",
    }


def test_no_validation_user_is_a_clear_error():
    table = tables()
    fit, validation = synthetic_rows(table)
    nobody = Rows(np.array(["stranger"]), validation.movie_title[:1], validation.user_rating[:1])
    with pytest.raises(TrainError, match="no known user has both fit and validation rows"):
        choose_fold_in(table, fit, nobody, seed=5)


@pytest.mark.tensorflow
def test_the_default_preset_exports_the_fold_in_chosen_on_validation_rows(tmp_path, monkeypatch):
    """A tiny blend through the pipeline: the penalties come from validation rows only, and the exported graph folds in
    with them exactly as numpy does."""
    import json

    import tensorflow as tf

    from device_runtime import contract
    from tests.train.test_blend import _tiny_config
    from train import fold_in
    from train.data import load_ratings, split_ratings
    from train.pipeline import train_and_export

    seen = []
    original = fold_in.choose_fold_in

    def recording(tables, fit_rows, validation_rows, seed):
        seen.append((tables, fit_rows, validation_rows))
        return original(tables, fit_rows, validation_rows, seed)

    monkeypatch.setattr(fold_in, "choose_fold_in", recording)
    train_and_export(_tiny_config(), tmp_path / "model", max_train_rows=2000)

    ((tables, fit_rows, validation_rows),) = seen
    train_rows, test_rows = split_ratings(load_ratings())
    key = lambda rows: set(zip(rows.user_id, rows.movie_title, rows.timestamp))
    assert key(validation_rows) and key(validation_rows) <= key(train_rows.take(np.arange(2000)))
    assert not key(validation_rows) & key(test_rows) and not key(validation_rows) & key(fit_rows)

    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    record = metrics["fold_in"]
    assert record["chosen_on"].startswith("validation rows")
    assert set(record["validation_rmse_by_history"]) == {"0", "1", "3", "5", "10", "20", "50", "all"}
    grid = np.array(record["grid"]["validation_rmse"])
    best = np.unravel_index(np.argmin(grid), grid.shape)
    assert (record["vector_ridge"], record["bias_ridge"]) == (VECTOR_RIDGES[best[0]], BIAS_RIDGES[best[1]])

    loaded = tf.saved_model.load(str(tmp_path / "model" / "saved_model"))
    assert set(loaded.signatures) == set(contract.FACTOR_SIGNATURES)
    titles = [tables.movies[i] for i in (4, 40, 400, 900)]
    ratings = np.array([5.0, 1.0, 4.0, 2.0], np.float32)
    state = loaded.signatures[contract.USER_STATE](
        history_titles=tf.constant(titles), history_ratings=tf.constant(ratings)
    )
    vector, bias = fold_in_state(
        tables, np.array([5, 41, 401, 901]), ratings, record["vector_ridge"], record["bias_ridge"]
    )
    np.testing.assert_allclose(state[contract.USER_VECTOR].numpy(), vector, atol=1e-4)
    np.testing.assert_allclose(state[contract.USER_BIAS].numpy(), [bias], atol=1e-4)

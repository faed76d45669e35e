"""The cross-architecture scorer: user selection, chunked scoring, and a real run on the host."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scripts.aarch64 import scores


def test_users_are_spread_over_the_vocabulary_in_order():
    users = [f"u{i}" for i in range(10)]
    chosen = scores.select_users(users, 4)
    assert chosen[0] == "u0" and chosen[-1] == "u9"
    assert chosen == sorted(set(chosen), key=users.index) and len(chosen) == 4
    assert scores.select_users(users, 50) == users
    with pytest.raises(scores.ScoringError):
        scores.select_users(users, 0)


def test_chunked_scoring_puts_every_pair_in_its_place(monkeypatch):
    monkeypatch.setattr(scores, "CHUNK_ROWS", 7)  # 2 users of 3 movies per call, so several calls

    def scorer(user_column, movie_column):
        assert len(user_column) == len(movie_column) <= 7
        return np.array([int(u[1:]) * 10 + int(m[1:]) for u, m in zip(user_column, movie_column)], np.float32)

    users, movies = ["u1", "u2", "u3", "u4", "u5"], ["m1", "m2", "m3"]
    matrix = scores.score_matrix(scorer, users, movies)
    expected = np.array([[u * 10 + m for m in (1, 2, 3)] for u in (1, 2, 3, 4, 5)], np.float32)
    np.testing.assert_array_equal(matrix, expected)


def pair_by_pair(model_path, users, movies, **options) -> np.ndarray:
    """Scores each (user, movie) pair with its own LiteRT invocation: an independent path."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(model_path), **options).get_signature_runner("serving_default")
    return np.array(
        [[runner(user_id=np.array([u.encode()]), movie_title=np.array([m.encode()]))["rating"][0] for m in movies]
         for u in users],
        np.float32,
    )


@pytest.mark.tensorflow
def test_scoring_a_real_model_matches_pair_by_pair_invocations(fixtures_dir, tmp_path):
    from tests.device_runtime import make_fixtures

    assert scores.main(["--model", str(fixtures_dir / make_fixtures.KIT), "--backend", "ai_edge_litert",
                        "--users", "4", "--out", str(tmp_path / "kit")]) == 0
    matrix = np.load(tmp_path / "kit.npy")
    meta = json.loads((tmp_path / "kit.json").read_text())
    assert meta["users"] == scores.select_users(list(make_fixtures.USERS), 4)
    assert matrix.shape == (4, len(make_fixtures.MOVIES)) and meta["delegates"] == "default"
    expected = pair_by_pair(fixtures_dir / make_fixtures.KIT, meta["users"], make_fixtures.MOVIES)
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-6)


@pytest.mark.tensorflow
def test_dynamic_int8_runs_without_the_default_delegate(fixtures_dir, tmp_path):
    from ai_edge_litert.interpreter import OpResolverType

    from tests.device_runtime import make_fixtures

    assert scores.main(["--model", str(fixtures_dir / make_fixtures.INT8), "--backend", "ai_edge_litert",
                        "--users", "2", "--out", str(tmp_path / "int8")]) == 0
    meta = json.loads((tmp_path / "int8.json").read_text())
    assert (meta["quantization"], meta["delegates"]) == ("dynamic-int8", "none")
    expected = pair_by_pair(fixtures_dir / make_fixtures.INT8, meta["users"], make_fixtures.MOVIES[:5],
                            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    np.testing.assert_allclose(np.load(tmp_path / "int8.npy")[:, :5], expected, rtol=0, atol=1e-6)


@pytest.mark.tensorflow
def test_a_model_without_vocabularies_needs_a_vocab_dir(fixtures_dir, tmp_path, capsys):
    from tests.device_runtime import make_fixtures

    model = fixtures_dir / make_fixtures.TUTORIAL
    assert scores.main(["--model", str(model), "--backend", "ai_edge_litert", "--out", str(tmp_path / "t")]) == 2
    assert "--vocab-dir" in capsys.readouterr().err
    (tmp_path / "users.txt").write_text("42\n1\n", encoding="utf-8")
    (tmp_path / "movies.txt").write_text("\n".join(make_fixtures.MOVIES[:3]) + "\n", encoding="utf-8")
    assert scores.main(["--model", str(model), "--backend", "ai_edge_litert", "--vocab-dir", str(tmp_path),
                        "--out", str(tmp_path / "t")]) == 0
    assert np.load(tmp_path / "t.npy").shape == (2, 3)


def test_a_missing_model_is_one_line_and_exit_2(tmp_path, capsys):
    code = scores.main(["--model", str(tmp_path / "nope.tflite"), "--backend", "ai_edge_litert",
                        "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "nope.tflite" in err and len(err.splitlines()) == 1


# ------------------------------------------------ the other contract signatures (index space, personalized)


def test_history_lengths_run_from_empty_to_200():
    lengths = scores.history_lengths()
    assert lengths[0] == 0 and lengths[1] == 1 and lengths[-1] == scores.HISTORY_MAX_LENGTH == 200
    assert len(lengths) == scores.HISTORY_COUNT + 1 and lengths == sorted(lengths)


def test_synthetic_histories_are_deterministic_distinct_titles_with_ratings_1_to_5():
    movies = [f"m{i}" for i in range(300)]
    histories = scores.synthetic_histories(movies)
    assert scores.histories_sha256(histories) == scores.histories_sha256(scores.synthetic_histories(movies))
    assert scores.histories_sha256(histories) != scores.histories_sha256(scores.synthetic_histories(movies, seed=1))
    assert [len(titles) for titles, _ in histories[:-1]] == scores.history_lengths()[:-1]
    for titles, ratings in histories[:-1]:
        assert len(set(titles)) == len(titles) and set(titles) <= set(movies) and len(ratings) == len(titles)
        assert ratings.dtype == np.float32 and set(ratings.tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    last_titles, last_ratings = histories[-1]
    assert last_titles[-1] == scores.UNKNOWN_TITLE and len(last_titles) == 201 and len(last_ratings) == 201
    small = scores.synthetic_histories(movies[:5], lengths=[0, 3, 200])
    assert [len(titles) for titles, _ in small] == [0, 3, 6]  # capped at the catalog, then the unknown title


class FakeFactorModel:
    """A numpy factor model answering the contract's signatures by name: score = user bias + movie bias + u.v.

    The user state of a history is (mean rating, number of titles) and bias 0, so each signature's
    answers can be checked by hand.
    """

    movies = ("a", "b", "c", "d")
    movie_bias = np.array([0.0, 0.5, 0.0, 0.25, -0.5], np.float32)  # row 0 = OOV
    movie_vectors = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0]], np.float32)
    user_vectors = np.array([[0, 0], [1, 2], [2, 1]], np.float32)
    user_bias = np.array([0.0, 1.0, 2.0], np.float32)

    def __init__(self):
        self.calls: list[str] = []

    def _scores(self, vector, bias, rows):
        rows = np.where((rows >= 0) & (rows < len(self.movie_bias)), rows, 0)
        return (np.float32(bias) + self.movie_bias[rows] + self.movie_vectors[rows] @ vector).astype(np.float32)

    def _top(self, scores, k):
        order = np.argsort(-scores[1:], kind="stable")[: int(k[0])] + 1
        return {"item_rows": order.astype(np.int32), "rating": scores[order]}

    def runners(self) -> dict:
        def score_rows(user_row, item_rows):
            self.calls.append("score_rows")
            return {"rating": self._scores(self.user_vectors[user_row[0]], self.user_bias[user_row[0]], item_rows)}

        def top_k(user_row, k):
            self.calls.append(f"top_k {k[0]}")
            all_rows = np.arange(len(self.movie_bias))
            return self._top(self._scores(self.user_vectors[user_row[0]], self.user_bias[user_row[0]], all_rows), k)

        def user_state(history_titles, history_ratings):
            self.calls.append("user_state")
            mean = float(np.mean(history_ratings)) if len(history_ratings) else 0.0
            return {"user_vector": np.array([mean, len(history_titles)], np.float32), "user_bias": np.zeros(1)}

        def score_rows_for_state(user_vector, user_bias, item_rows):
            return {"rating": self._scores(user_vector, user_bias[0], item_rows)}

        def top_k_for_state(user_vector, user_bias, k):
            return self._top(self._scores(user_vector, user_bias[0], np.arange(len(self.movie_bias))), k)

        def score_history(history_titles, history_ratings, movie_title):
            state = user_state(history_titles, history_ratings)
            rows = np.array([self.movies.index(m.decode()) + 1 for m in movie_title])
            return score_rows_for_state(state["user_vector"], state["user_bias"], rows)

        return {"score_rows": score_rows, "top_k": top_k, "user_state": user_state,
                "score_rows_for_state": score_rows_for_state, "top_k_for_state": top_k_for_state,
                "score_history": score_history}


def test_every_signature_is_called_by_name_and_its_answers_kept_in_order():
    model = FakeFactorModel()
    histories = [([], np.zeros(0, np.float32)), (["b", "d"], np.array([5.0, 3.0], np.float32))]
    answers = scores.score_signatures(model.runners(), [2, 1], list(model.movies), histories, k=2)
    # User row 2: bias 2 + movie bias + (2, 1).v over rows 1..4; user row 1: bias 1 + (1, 2).v. Then the OOV
    # row, -1, INT32_MAX and 5 (one past the catalog): each reads the OOV row, so the user's bias alone.
    expected = np.array([[4.5, 3.0, 5.25, 2.5, 2, 2, 2, 2], [2.5, 3.0, 4.25, 1.0, 1, 1, 1, 1]], np.float32)
    np.testing.assert_allclose(answers["score_rows.rating"], expected)
    np.testing.assert_array_equal(answers["top_k.item_rows"], [[3, 1], [3, 2]])
    np.testing.assert_allclose(answers["top_k.rating"], [[5.25, 4.5], [4.25, 3.0]])
    np.testing.assert_array_equal(answers["top_k.catalog.item_rows"], [[3, 1, 2, 4], [3, 2, 1, 4]])
    assert model.calls.count("top_k 2") == 2 and model.calls.count("top_k 4") == 2
    # History 1: state (4, 2), bias 0, so row r scores movie_bias + 4 v0 + 2 v1.
    np.testing.assert_allclose(answers["user_state.user_vector"], [[0.0, 0.0], [4.0, 2.0]])
    np.testing.assert_allclose(answers["score_rows_for_state.rating"][1], [4.5, 2.0, 6.25, 1.5, 0, 0, 0, 0])
    np.testing.assert_allclose(answers["score_rows_for_state.rating"][0, :4], FakeFactorModel.movie_bias[1:])
    np.testing.assert_array_equal(answers["top_k_for_state.item_rows"][1], [3, 1])
    np.testing.assert_array_equal(answers["score_history.rating"], answers["score_rows_for_state.rating"][:, :4])
    assert answers["top_k_for_state.catalog.rating"].shape == (2, 4)


def test_a_model_without_the_signatures_gives_no_answers():
    assert scores.score_signatures({}, [1, 2], ["a", "b"], []) == {}
    runners = {key: value for key, value in FakeFactorModel().runners().items() if key in ("score_rows", "top_k")}
    answers = scores.score_signatures(runners, [1], list(FakeFactorModel.movies), [])
    assert sorted(answers) == ["score_rows.rating", "top_k.catalog.item_rows", "top_k.catalog.rating",
                               "top_k.item_rows", "top_k.rating"]


@pytest.mark.tensorflow
def test_a_factor_model_answers_every_signature_as_numpy_computes_it(fixtures_dir, tmp_path):
    from tests.device_runtime import make_fixtures, serving_fixtures

    assert scores.main(["--model", str(fixtures_dir / serving_fixtures.FACTOR), "--backend", "ai_edge_litert",
                        "--users", "5", "--out", str(tmp_path / "factor")]) == 0
    meta = json.loads((tmp_path / "factor.json").read_text())
    assert meta["not_present"] == [] and meta["histories"]["lengths"][:2] == [0, 1]
    assert meta["histories"]["lengths"][-1] == len(make_fixtures.MOVIES) + 1  # capped, plus the unknown title
    with np.load(tmp_path / "factor.npz") as stored:
        answers = {name: stored[name] for name in stored.files}
    tables = serving_fixtures.factor_tables(serving_fixtures.SEED_A, make_fixtures.MOVIES)
    movie_rows = np.arange(1, len(make_fixtures.MOVIES) + 1)
    assert meta["index_users"] == meta["users"]  # 5 users: fewer than the default index users
    user_rows = [make_fixtures.USERS.index(user) + 1 for user in meta["index_users"]]
    expected = np.array([tables.ratings(np.full(len(movie_rows), row), movie_rows) for row in user_rows])
    catalog = len(movie_rows)
    np.testing.assert_allclose(answers["score_rows.rating"][:, :catalog], expected, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "factor.npy"), expected, atol=1e-5)
    # Rows 0, -1, INT32_MAX and n + 1 all read the OOV row, inside the graph.
    unknown_movie = tables.ratings(np.array(user_rows), np.zeros(len(user_rows), int))
    np.testing.assert_allclose(answers["score_rows.rating"][:, catalog:], np.repeat(unknown_movie[:, None], 4, 1),
                               atol=1e-5)
    best = np.argsort(-expected, axis=1, kind="stable")[:, : scores.TOP_K] + 1  # ties: lower row first
    np.testing.assert_array_equal(answers["top_k.item_rows"], best)
    histories = scores.synthetic_histories(make_fixtures.MOVIES)
    for index, (titles, ratings) in enumerate(histories):
        cleaned = [(t, float(r)) for t, r in zip(titles, ratings) if t != scores.UNKNOWN_TITLE]
        vector, bias = serving_fixtures.ridge_state(tables, cleaned)
        np.testing.assert_allclose(answers["user_state.user_vector"][index], vector, atol=1e-4)
        np.testing.assert_allclose(answers["user_state.user_bias"][index], [bias], atol=1e-4)
        state = serving_fixtures.state_scores(tables, vector, bias)
        np.testing.assert_allclose(answers["score_rows_for_state.rating"][index, :catalog], state, atol=1e-4)
        np.testing.assert_allclose(answers["score_history.rating"][index], state, atol=1e-4)
    # The empty history gives exactly the unknown user's scores.
    unknown = tables.ratings(np.zeros(len(movie_rows), int), movie_rows)
    np.testing.assert_allclose(answers["score_rows_for_state.rating"][0, :catalog], unknown, atol=1e-6)


@pytest.mark.tensorflow
def test_a_tower_model_has_no_personalized_answers(fixtures_dir, tmp_path):
    from tests.device_runtime import serving_fixtures

    assert scores.main(["--model", str(fixtures_dir / serving_fixtures.TOWER), "--backend", "ai_edge_litert",
                        "--users", "3", "--index-users", "2", "--out", str(tmp_path / "tower")]) == 0
    meta = json.loads((tmp_path / "tower.json").read_text())
    assert meta["signatures"] == ["serving_default", "score_rows", "top_k"] and meta["histories"] is None
    assert meta["not_present"] == ["score_history", "user_state", "score_rows_for_state", "top_k_for_state"]
    assert meta["index_users"] == [meta["users"][0], meta["users"][2]]  # spread: first and last
    with np.load(tmp_path / "tower.npz") as stored:
        strings = np.load(tmp_path / "tower.npy")[[0, 2]]
        np.testing.assert_allclose(stored["score_rows.rating"][:, : strings.shape[1]], strings, atol=1e-5)
        assert not any(name.startswith("user_state") for name in stored.files)

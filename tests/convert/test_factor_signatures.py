"""The factor family (`FactorServing`, all seven signatures): converted once, each signature checked against numpy
computed from the tables, against the SavedModel and across runtimes."""

from __future__ import annotations

import numpy as np
import pytest

from convert import ConversionConfig, ParityError, Tolerances, check_parity
from device_runtime import contract
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.manifest import read_manifest
from tests.convert.conftest import FEW_RANKING_USERS
from tests.convert.scoring import litert_signature, rows, saved_model_signature, tensorflow_lite_signature
from tests.convert.serving_models import RIDGE

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def factor(factor_float32):
    return factor_float32


def ridge_state(tables, titles, ratings):
    """The fold-in by hand: ridge regression of the ratings on [movie vector, 1], unknown titles left out."""
    index = {title: row for row, title in enumerate(tables.movies, start=1)}
    known = [(index[t], r) for t, r in zip(titles, ratings) if t in index]
    design = np.array([[*tables.movie_vectors[row], 1.0] for row, _ in known], np.float64).reshape(-1, tables.rank + 1)
    target = np.array([r - tables.global_mean - tables.movie_bias[row] for row, r in known], np.float64)
    solution = np.linalg.solve(design.T @ design + RIDGE * np.eye(tables.rank + 1), design.T @ target)
    return solution[:-1], solution[-1]


def state_scores(tables, vector, bias, movie_rows):
    raw = (
        tables.global_mean
        + bias
        + tables.movie_bias[movie_rows]
        + tables.movie_vectors[movie_rows].astype(np.float64) @ vector
    )
    return np.clip(raw, contract.MIN_RATING, contract.MAX_RATING)


class TestManifest:
    def test_lists_every_signature_and_the_state_dimension(self, factor, factor_tables):
        manifest = read_manifest(read_flatbuffer(factor.tflite_path.read_bytes()))
        assert manifest.signatures == contract.FACTOR_SIGNATURES
        assert manifest.state_dimension == factor_tables.rank == 8
        assert manifest.movies == factor_tables.movies and manifest.users == factor_tables.users
        assert factor.signature_keys == contract.FACTOR_SIGNATURES and factor.state_dimension == 8


class TestIndexSpace:
    USERS = (1, 17, 480, 943)

    def test_score_rows_is_the_tables_formula(self, factor, factor_tables):
        every_movie = np.arange(1, len(factor_tables.movies) + 1, dtype=np.int32)
        for user in self.USERS:
            found = litert_signature(
                factor.tflite_path, contract.SCORE_ROWS, user_row=rows(user), item_rows=every_movie
            )
            expected = factor_tables.ratings(np.full(len(every_movie), user), every_movie)
            np.testing.assert_allclose(found[contract.RATING], expected, rtol=0, atol=2e-6)

    def test_top_k_is_numpys_stable_ranking(self, factor, factor_tables):
        every_movie = np.arange(1, len(factor_tables.movies) + 1)
        for user in self.USERS:
            scores = factor_tables.ratings(np.full(len(every_movie), user), every_movie).astype(np.float32)
            best = np.argsort(-scores, kind="stable")[:10] + 1
            found = litert_signature(factor.tflite_path, contract.TOP_K, user_row=rows(user), k=rows(10))
            np.testing.assert_array_equal(found[contract.ITEM_ROWS], best)
            np.testing.assert_allclose(found[contract.RATING], scores[best - 1], atol=2e-6)

    def test_rows_outside_a_table_read_the_unknown_row(self, factor, factor_tables):
        catalog = len(factor_tables.movies)
        found = litert_signature(
            factor.tflite_path, contract.SCORE_ROWS, user_row=rows(-4), item_rows=rows(-1, 0, catalog + 1, 10**6, 5)
        )
        unknown = factor_tables.ratings(np.zeros(5, int), np.array([0, 0, 0, 0, 5]))
        np.testing.assert_allclose(found[contract.RATING], unknown, atol=2e-6)

    @pytest.mark.parametrize("k, count", [(0, 1), (-3, 1), (1, 1), (10**6, 1664)])
    def test_k_is_clamped_to_the_catalog(self, factor, k, count):
        found = litert_signature(factor.tflite_path, contract.TOP_K, user_row=rows(3), k=rows(k))
        assert len(found[contract.ITEM_ROWS]) == count and found[contract.ITEM_ROWS].min() >= 1


class TestPersonalized:
    TITLES = ["Toy Story (1995)", "Fargo (1996)", "Heat (1995)", "Star Wars (1977)", "Not A Film (2099)"]
    RATINGS = np.array([5.0, 4.0, 2.0, 5.0, 1.0], np.float32)

    def test_user_state_is_the_ridge_solution(self, factor, factor_tables):
        found = litert_signature(
            factor.tflite_path, contract.USER_STATE, history_titles=self.TITLES, history_ratings=self.RATINGS
        )
        vector, bias = ridge_state(factor_tables, self.TITLES, self.RATINGS)
        np.testing.assert_allclose(found[contract.USER_VECTOR], vector, atol=1e-5)
        np.testing.assert_allclose(found[contract.USER_BIAS], [bias], atol=1e-5)

    def test_score_history_scores_with_that_state(self, factor, factor_tables):
        movies = list(factor_tables.movies[:300])
        found = litert_signature(
            factor.tflite_path,
            contract.SCORE_HISTORY,
            history_titles=self.TITLES,
            history_ratings=self.RATINGS,
            movie_title=movies,
        )
        vector, bias = ridge_state(factor_tables, self.TITLES, self.RATINGS)
        expected = state_scores(factor_tables, vector, bias, np.arange(1, 301))
        np.testing.assert_allclose(found[contract.RATING], expected, atol=1e-5)

    def test_an_empty_history_is_exactly_the_unknown_user(self, factor, factor_tables):
        empty = {"history_titles": np.array([], dtype=object), "history_ratings": np.zeros(0, np.float32)}
        state = litert_signature(factor.tflite_path, contract.USER_STATE, **empty)
        assert not state[contract.USER_VECTOR].any() and not state[contract.USER_BIAS].any()
        movies = list(factor_tables.movies[:50])
        scored = litert_signature(factor.tflite_path, contract.SCORE_HISTORY, **empty, movie_title=movies)
        unknown_user = litert_signature(
            factor.tflite_path, contract.STRINGS, user_id=["nobody"] * 50, movie_title=movies
        )
        np.testing.assert_array_equal(scored[contract.RATING], unknown_user[contract.RATING])

    def test_the_state_signatures_score_a_given_state(self, factor, factor_tables):
        vector = np.linspace(-0.5, 0.5, factor_tables.rank).astype(np.float32)
        state = {"user_vector": vector, "user_bias": np.array([0.25], np.float32)}
        every_movie = np.arange(1, len(factor_tables.movies) + 1, dtype=np.int32)
        scored = litert_signature(factor.tflite_path, contract.SCORE_ROWS_FOR_STATE, **state, item_rows=every_movie)
        expected = state_scores(factor_tables, vector.astype(np.float64), 0.25, every_movie)
        np.testing.assert_allclose(scored[contract.RATING], expected, atol=2e-6)
        best = litert_signature(factor.tflite_path, contract.TOP_K_FOR_STATE, **state, k=rows(10))
        np.testing.assert_array_equal(
            best[contract.ITEM_ROWS], np.argsort(-expected.astype(np.float32), kind="stable")[:10] + 1
        )


class TestReport:
    def test_parity_covers_every_signature(self, factor):
        assert tuple(factor.signature_parity) == contract.FACTOR_SIGNATURES
        for key in (contract.TOP_K, contract.TOP_K_FOR_STATE):
            figures = factor.signature_parity[key]
            assert figures.users == FEW_RANKING_USERS and figures.top10_identical == 1.0
        for key in (contract.SCORE_HISTORY, contract.USER_STATE, contract.SCORE_ROWS_FOR_STATE):
            figures = factor.signature_parity[key]
            assert figures.ranking_users == FEW_RANKING_USERS and figures.pairs > 0 and figures.max_abs_diff <= 1e-4
        assert factor.signature_parity[contract.SCORE_ROWS].pairs == 20_000

    def test_top_10_of_the_ranked_users_is_numpys(self, factor, factor_tables, test_split):
        # The ranked users are spread evenly over the sorted known users of the test split.
        known = sorted(set(test_split.user_id) & set(factor_tables.users))
        chosen = [known[i] for i in np.unique(np.linspace(0, len(known) - 1, FEW_RANKING_USERS).round().astype(int))]
        every_movie = np.arange(1, len(factor_tables.movies) + 1)
        for user in chosen:
            row = factor_tables.users.index(user) + 1
            scores = factor_tables.ratings(np.full(len(every_movie), row), every_movie).astype(np.float32)
            found = litert_signature(factor.tflite_path, contract.TOP_K, user_row=rows(row), k=rows(10))
            np.testing.assert_array_equal(found[contract.ITEM_ROWS], np.argsort(-scores, kind="stable")[:10] + 1)

    def test_every_signature_ran_on_every_runtime(self, factor, device_pythons):
        runtimes = {check.runtime: check for check in factor.runtimes}
        expected = {"ai_edge_litert", "tensorflow"} | ({"tflite_runtime"} if device_pythons else set())
        assert expected <= set(runtimes)
        for check in runtimes.values():
            for run in (check.with_default_delegates, check.without_default_delegates):
                assert run.runs and set(run.signatures) == set(contract.FACTOR_SIGNATURES)
                assert all(call.max_abs_diff <= 1e-5 and call.latency_ms > 0 for call in run.signatures.values())

    def test_another_runtime_gives_the_same_state(self, factor):
        history = {"history_titles": TestPersonalized.TITLES, "history_ratings": TestPersonalized.RATINGS}
        litert = litert_signature(factor.tflite_path, contract.USER_STATE, **history)
        tensorflow = tensorflow_lite_signature(factor.tflite_path, contract.USER_STATE, **history)
        for name in (contract.USER_VECTOR, contract.USER_BIAS):
            np.testing.assert_allclose(litert[name], tensorflow[name], atol=1e-6)

    def test_the_saved_model_agrees_with_the_tables_too(self, factor_saved_model, factor_tables):
        found = saved_model_signature(
            factor_saved_model, contract.SCORE_ROWS, user_row=rows(5), item_rows=rows(1, 2, 3)
        )
        np.testing.assert_allclose(
            found[contract.RATING], factor_tables.ratings(np.full(3, 5), np.arange(1, 4)), atol=2e-6
        )

    def test_check_parity_rechecks_every_signature(self, factor, factor_saved_model):
        strict = ConversionConfig(tolerances=Tolerances(max_abs_diff=1e-12), ranking_users=6)
        with pytest.raises(ParityError) as raised:
            check_parity(factor_saved_model, factor.tflite_path, strict)
        # The fold-in's float32 solve differs from TensorFlow's in the last bits, so no bound of 1e-12 holds there.
        failed = {failure.check.split(".")[1] for failure in raised.value.failures}
        assert {contract.SCORE_HISTORY, contract.USER_STATE, contract.TOP_K_FOR_STATE} <= failed
        assert all(failure.check.endswith("max_abs_diff") for failure in raised.value.failures)

"""The index-space fast path: the whole catalog through `top_k`, candidate sets, rows for plain lists.

Every result is compared with the models' independent references (numpy over
the factor tables, plain interpreter calls for the tower), never with another
Ranker call.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import device_runtime.model as loaded_model
from device_runtime import CandidateSet, ManifestError, Ranker, UnknownIdError
from tests.device_runtime import make_fixtures as mf
from tests.device_runtime import serving_fixtures as sf
from tests.device_runtime.serving_reference import as_array, catalog_scores, unknown_movie_score
from tests.device_runtime.tolerance import SCORE_ATOL, assert_top_k_matches

USERS = ("42", "1", "ユーザー", "no-such-user")
SERVING = (mf.FACTOR, mf.FACTOR_B, mf.FACTOR_FLOAT16, mf.TOWER, mf.TOWER_FLOAT16)


@pytest.fixture(scope="module")
def rankers(fixtures_dir) -> dict:
    return {name: Ranker(fixtures_dir / name) for name in SERVING + (mf.KIT,)}


@pytest.fixture
def calls(monkeypatch) -> list:
    """Records which LoadedModel call each Ranker call used."""
    used = []
    for name in ("score_strings", "score_rows", "top_k", "score_rows_for_state", "top_k_for_state"):
        original = getattr(loaded_model.LoadedModel, name)

        def spy(self, *args, _original=original, _name=name):
            used.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(loaded_model.LoadedModel, name, spy)
    return used


# ----------------------------------------------------------------------------- the whole catalog


@pytest.mark.parametrize("model", SERVING)
@pytest.mark.parametrize("user", USERS)
def test_rank_without_candidates_is_the_reference_top_k(rankers, serving, tower_key, model, user):
    expected = catalog_scores(serving, model, user, tower_key)
    for k in (1, 10, None):
        ranked = rankers[model].rank(user, k=k)
        assert_top_k_matches(ranked, expected, k=len(expected) if k is None else k)
    assert sorted(title for title, _ in rankers[model].rank(user, k=None)) == sorted(expected)


def test_a_model_with_only_the_strings_signature_ranks_the_catalog_through_it(rankers, serving, tower_key, calls):
    """kit.tflite has the tower's weights (same seeds) and the strings signature only."""
    assert rankers[mf.KIT].info().signatures == ("serving_default",)
    expected = catalog_scores(serving, mf.TOWER, "42", tower_key)
    assert_top_k_matches(rankers[mf.KIT].rank("42", k=10), expected, k=10)
    assert calls == ["score_strings"]


def test_the_fast_path_is_one_top_k_call(rankers, calls):
    rankers[mf.FACTOR].rank("42")
    rankers[mf.FACTOR].rank("42", list(mf.MOVIES[:5]))
    rankers[mf.TOWER].rank("7", k=3)
    assert calls == ["top_k", "score_rows", "top_k"]


def test_k_beyond_the_catalog_returns_every_movie(rankers):
    assert len(rankers[mf.FACTOR].rank("42", k=10**12)) == len(mf.MOVIES)


def test_strings_and_index_paths_score_like_the_reference(rankers, serving):
    """score_pairs (strings signature) and score (score_rows) against the same numpy reference."""
    ranker = rankers[mf.FACTOR]
    users = [u for u in USERS for _ in mf.MOVIES]
    movies = list(mf.MOVIES) * len(USERS)
    expected = [catalog_scores(serving, mf.FACTOR, user)[movie] for user, movie in zip(users, movies)]
    np.testing.assert_allclose(ranker.score_pairs(users, movies), expected, rtol=0, atol=SCORE_ATOL)
    for user in USERS:
        scores = ranker.score(user, list(mf.MOVIES))
        expected = as_array(catalog_scores(serving, mf.FACTOR, user), mf.MOVIES)
        np.testing.assert_allclose(scores, expected, rtol=0, atol=SCORE_ATOL)


# ----------------------------------------------------------------------------- ties


@pytest.mark.parametrize("model", [mf.FACTOR, mf.FACTOR_B])
def test_equal_scores_come_in_catalog_order_for_the_whole_catalog(rankers, serving, model):
    """Scores clipped to exactly 5 or 1 tie on every runtime (the fixtures pin some movies there)."""
    catalog = serving["factor"][model]["movies"]
    for user in USERS:
        expected = catalog_scores(serving, model, user)
        top = [title for title in catalog if expected[title] == 5.0]  # catalog order
        bottom = [title for title in catalog if expected[title] == 1.0]
        assert {mf.MOVIES[i] for i in sf.TOP_TIED} <= set(top) and {mf.MOVIES[i] for i in sf.BOTTOM_TIED} <= set(bottom)
        ranked = rankers[model].rank(user, k=None)
        assert ranked[: len(top)] == [(title, 5.0) for title in top]
        assert ranked[len(ranked) - len(bottom) :] == [(title, 1.0) for title in bottom]


def test_equal_scores_keep_the_input_order_of_given_candidates(rankers):
    tied = [mf.MOVIES[i] for i in sf.TOP_TIED]
    for candidates in ([tied[1], mf.MOVIES[0], tied[0]], [tied[0], mf.MOVIES[0], tied[1]]):
        for prepared in (candidates, rankers[mf.FACTOR].candidates(candidates)):
            ranked = rankers[mf.FACTOR].rank("42", prepared, k=2)
            assert [title for title, _ in ranked] == [candidates[0], candidates[2]]


# ----------------------------------------------------------------------------- candidate sets


def test_a_candidate_set_maps_titles_to_rows_once(rankers, serving):
    ranker = rankers[mf.FACTOR]
    unknown = "No Such Movie (2099)"
    titles = [mf.MOVIES[3], unknown, mf.MOVIES[3].encode("utf-8"), mf.MOVIES[0], "", unknown]
    prepared = ranker.candidates(titles)
    as_text = (mf.MOVIES[3], "No Such Movie (2099)", mf.MOVIES[3], mf.MOVIES[0], "", "No Such Movie (2099)")
    assert prepared.titles == as_text and len(prepared) == 6
    assert prepared.unknown_titles == ("No Such Movie (2099)", "")
    assert prepared.rows.dtype == np.int32
    assert prepared.rows.tolist() == [4, 0, 4, 1, 0, 0]  # row k + 1 is MOVIES[k]; unknown -> OOV row 0
    assert prepared.movies_sha256 == ranker.manifest.movies_sha256
    expected = catalog_scores(serving, mf.FACTOR, "42")
    oov = unknown_movie_score(serving, mf.FACTOR, "42")
    wanted = [expected.get(title, oov) for title in as_text]
    for _ in range(2):  # reusable
        np.testing.assert_allclose(ranker.score("42", prepared), wanted, rtol=0, atol=SCORE_ATOL)
    ranked = ranker.rank("42", prepared, k=None)
    order = sorted(range(len(wanted)), key=lambda i: -wanted[i])  # stable: the unknown titles tie in input order
    assert [title for title, _ in ranked] == [as_text[i] for i in order]
    np.testing.assert_allclose([score for _, score in ranked], [wanted[i] for i in order], rtol=0, atol=SCORE_ATOL)


def test_a_candidate_set_is_immutable_and_hashable(rankers):
    prepared = rankers[mf.FACTOR].candidates(list(mf.MOVIES[:3]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.titles = ()
    with pytest.raises(ValueError, match="read-only"):
        prepared.rows[0] = 5
    with pytest.raises(ValueError, match="read-only"):
        prepared.encoded[0] = b"x"
    assert prepared == rankers[mf.FACTOR].candidates(tuple(mf.MOVIES[:3]))
    assert len({prepared, rankers[mf.FACTOR].candidates(np.array(mf.MOVIES[:3]))}) == 1


@pytest.mark.parametrize("model", [mf.KIT, mf.TUTORIAL])
def test_candidate_sets_work_on_models_without_index_signatures(fixtures_dir, expected_scores, model):
    ranker = Ranker(fixtures_dir / model)
    users, movies = mf.probe_pairs()
    titles = list(mf.PROBE_MOVIES)
    expected = [score for user, score in zip(users, expected_scores[model]) if user == "42"][: len(titles)]
    prepared = ranker.candidates(titles)
    assert (prepared.rows is None) == (model == mf.TUTORIAL)
    np.testing.assert_allclose(ranker.score("42", prepared), expected, rtol=0, atol=SCORE_ATOL)


def test_plain_lists_of_every_kind_take_the_index_path(rankers, serving, calls):
    expected = as_array(catalog_scores(serving, mf.FACTOR, "42"), mf.MOVIES[:6])
    for candidates in (
        list(mf.MOVIES[:6]),
        tuple(mf.MOVIES[:6]),
        np.array(mf.MOVIES[:6]),
        np.array(mf.MOVIES[:6], dtype=object),
        [title.encode("utf-8") for title in mf.MOVIES[:6]],
    ):
        np.testing.assert_allclose(rankers[mf.FACTOR].score(42, candidates), expected, rtol=0, atol=SCORE_ATOL)
    assert set(calls) == {"score_rows"}


def test_bad_candidates_name_the_position_on_the_index_path(rankers):
    with pytest.raises(TypeError, match=r"candidates\[1\] must be a str, bytes or int, got NoneType"):
        rankers[mf.FACTOR].score("42", [mf.MOVIES[0], None])
    with pytest.raises(ValueError, match=r"candidates\[2\] is not valid Unicode"):
        rankers[mf.FACTOR].candidates(["a", "b", "\ud800"])
    with pytest.raises(TypeError, match="wrap it in a list"):
        rankers[mf.FACTOR].candidates(mf.MOVIES[0])


# ----------------------------------------------------------------------------- unknown ids


def test_unknown_ids_are_scored_by_the_oov_rows(rankers, serving):
    ranker = rankers[mf.FACTOR]
    stranger = "stranger"
    scores = ranker.score(stranger, ["Unknown one", mf.MOVIES[0]])
    known_movie = catalog_scores(serving, mf.FACTOR, stranger)[mf.MOVIES[0]]
    expected = [unknown_movie_score(serving, mf.FACTOR, stranger), known_movie]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=SCORE_ATOL)


def test_strict_mode_on_the_fast_path(fixtures_dir, serving):
    ranker = Ranker(fixtures_dir / mf.FACTOR, strict=True)
    assert_top_k_matches(ranker.rank("42", k=5), catalog_scores(serving, mf.FACTOR, "42"), k=5)
    with pytest.raises(UnknownIdError, match=r"unknown user ids \(1 of 1\): 'stranger'"):
        ranker.rank("stranger")
    with pytest.raises(UnknownIdError, match=r"unknown movie titles \(2 of 3\): 'x', 'y'"):
        ranker.candidates([mf.MOVIES[0], "x", "y"])
    lenient = Ranker(fixtures_dir / mf.FACTOR).candidates([mf.MOVIES[0], "x"])
    with pytest.raises(UnknownIdError, match=r"unknown movie titles \(1 of 2\): 'x'"):
        ranker.score("42", lenient)


def test_ranking_the_catalog_needs_a_movie_vocabulary(fixtures_dir):
    with pytest.raises(ManifestError, match="carries no movie vocabulary, so it cannot rank the whole catalog"):
        Ranker(fixtures_dir / mf.TUTORIAL).rank("42")


# ----------------------------------------------------------------------------- work done once


def test_vocabularies_are_parsed_only_when_a_call_needs_them(fixtures_dir):
    ranker = Ranker(fixtures_dir / mf.FACTOR)
    users, movies = ranker.manifest.user_vocabulary, ranker.manifest.movie_vocabulary
    assert "rows" not in vars(users) and "ids" not in vars(movies)  # loading parses neither
    ranker.score_pairs(["42"], [mf.MOVIES[0]])  # the strings path needs no vocabulary
    assert "rows" not in vars(users) and "ids" not in vars(movies)
    ranker.rank("42", k=3)
    assert "rows" in vars(users) and "ids" in vars(movies)
    rows = movies.rows
    ranker.rank("1", list(mf.MOVIES[:3]))
    assert movies.rows is rows  # built once


def test_best_first_is_a_stable_sort_cut_at_k():
    from device_runtime.ranker import best_first

    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 2.0], dtype=np.float32)
    assert best_first(scores, 2).tolist() == [1, 2]  # three tie at the top: the first two in input order
    assert best_first(scores, 4).tolist() == [1, 2, 4, 3]
    assert best_first(scores, None).tolist() == [1, 2, 4, 3, 5, 0]
    assert best_first(scores[:0], 3).tolist() == []
    rng = np.random.default_rng(5)
    for count in (1, 7, 300):
        values = rng.integers(0, 5, count).astype(np.float32)  # many ties
        for k in (1, 3, count - 1 or 1, count, count + 1):
            assert best_first(values, k).tolist() == np.argsort(-values, kind="stable")[:k].tolist()

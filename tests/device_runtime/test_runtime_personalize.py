"""Personalization: a history folded into a user state on the device, checked against a numpy ridge solve.

The references fold the hand-cleaned histories of serving_fixtures.py with
numpy's exact solve (float32 models) or plain interpreter calls (float16).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from device_runtime import (
    HistoryError,
    ModelMismatchError,
    PersonalizedUser,
    Ranker,
    SignatureError,
    UnknownIdError,
    contract,
)
from tests.device_runtime import make_fixtures as mf
from tests.device_runtime import serving_fixtures as sf
from tests.device_runtime.serving_reference import as_array, catalog_scores, state_scores
from tests.device_runtime.tolerance import PERSONALIZED_ATOL, SCORE_ATOL, assert_top_k_matches

# The state against numpy's float64 solve (see PERSONALIZED_ATOL: measured at most 6.5e-6).
STATE_ATOL = 2e-5


@pytest.fixture(scope="module")
def histories(serving) -> dict:
    return {
        name: {key: [tuple(entry) if isinstance(entry, list) else entry for entry in value] for key, value in h.items()}
        for name, h in serving["histories"].items()
    }


@pytest.mark.parametrize("model", sf.FACTOR_MODELS)
@pytest.mark.parametrize("name", ["empty", "one", "mixed", "long"])
def test_the_state_and_its_scores_match_the_reference(fixtures_dir, serving, histories, model, name):
    ranker = Ranker(fixtures_dir / model)
    user = ranker.personalize(histories[name]["raw"])
    state = serving["factor"][model]["states"][name]
    np.testing.assert_allclose(user.user_vector, state["user_vector"], rtol=0, atol=STATE_ATOL)
    np.testing.assert_allclose(user.user_bias, [state["user_bias"]], rtol=0, atol=STATE_ATOL)
    expected = state_scores(serving, model, name)
    catalog = serving["factor"][model]["movies"]
    np.testing.assert_allclose(ranker.score(user, catalog), as_array(expected, catalog), rtol=0, atol=PERSONALIZED_ATOL)
    for k in (1, 10, None):
        wanted = len(expected) if k is None else k
        assert_top_k_matches(ranker.rank(user, k=k), expected, k=wanted, atol=PERSONALIZED_ATOL)
    prepared = ranker.candidates(catalog[:7])
    subset = {t: expected[t] for t in catalog[:7]}
    assert_top_k_matches(ranker.rank(user, prepared, k=3), subset, k=3, atol=PERSONALIZED_ATOL)


def test_an_empty_history_is_the_unknown_user(factor_ranker, serving):
    user = factor_ranker.personalize([])
    assert user.history == () and not user.user_vector.any() and user.user_bias.tolist() == [0.0]
    unknown = catalog_scores(serving, mf.FACTOR, "no-such-user")
    assert_top_k_matches(factor_ranker.rank(user, k=10), unknown, k=10)


def test_the_history_is_cleaned_as_documented(factor_ranker, histories, caplog):
    mixed = histories["mixed"]
    with caplog.at_level(logging.WARNING, logger="device_runtime"):
        user = factor_ranker.personalize(mixed["raw"])
    assert user.history == tuple(mixed["cleaned"])  # last rating of a repeated title, in the order of last ratings
    assert user.unknown_titles == tuple(mixed["unknown"]) and user.replaced == 1 and user.dropped == 0
    assert user.model_checksum == factor_ranker.info().checksum
    (record,) = [r for r in caplog.records if r.name.startswith("device_runtime")]
    assert "skipped 1 title(s) the model does not know: 'No Such Movie (2099)'" in record.getMessage()


def test_a_history_longer_than_the_maximum_keeps_the_most_recent(
    factor_ranker, serving, histories, monkeypatch, caplog
):
    truncated = histories["truncated"]
    monkeypatch.setattr(contract, "MAX_HISTORY", sf.TRUNCATED_MAX_HISTORY)
    with caplog.at_level(logging.WARNING, logger="device_runtime"):
        user = factor_ranker.personalize(truncated["raw"])
    assert user.history == tuple(truncated["cleaned"]) and user.dropped == 2 and user.replaced == 1
    assert user.unknown_titles == tuple(truncated["unknown"])
    assert any(f"kept the {sf.TRUNCATED_MAX_HISTORY} most recent" in r.getMessage() for r in caplog.records)
    state = serving["factor"][mf.FACTOR]["states"]["truncated"]
    np.testing.assert_allclose(user.user_vector, state["user_vector"], rtol=0, atol=STATE_ATOL)
    np.testing.assert_allclose(user.user_bias, [state["user_bias"]], rtol=0, atol=STATE_ATOL)


def test_strict_mode_refuses_unknown_history_titles(fixtures_dir, histories):
    ranker = Ranker(fixtures_dir / mf.FACTOR, strict=True)
    with pytest.raises(UnknownIdError, match=r"unknown history titles \(1 of 6\): 'No Such Movie \(2099\)'"):
        ranker.personalize(histories["mixed"]["raw"])
    assert ranker.personalize(histories["one"]["raw"]).history == tuple(histories["one"]["cleaned"])


@pytest.mark.parametrize(
    "history, message",
    [
        ([("Speed (1994)", float("nan"))], r"history\[0\]: the rating is nan"),
        ([("Speed (1994)", 4), ("Amélie (2001)", float("inf"))], r"history\[1\]: the rating is inf"),
        ([("Speed (1994)", 4), ("Speed (1994)", 0.5)], r"history\[1\]: the rating 0.5 is outside 1..5"),
        ([("Speed (1994)", 5.5)], r"history\[0\]: the rating 5.5 is outside 1..5"),
        ([("Speed (1994)", True)], r"history\[0\]: the rating must be a number from 1 to 5, got bool"),
        ([("Speed (1994)", "4")], r"history\[0\]: the rating must be a number from 1 to 5, got str '4'"),
        ([("Speed (1994)", 4), (42, 4.0)], r"history\[1\]: the title must be a str, got int 42"),
        ([(b"Speed (1994)", 4.0)], r"history\[0\]: the title must be a str, got bytes"),
        ([("\ud800", 4.0)], r"history\[0\]: the title is not valid Unicode"),
        ([("Speed (1994)", 4.0), ("Speed (1994)",)], r"history\[1\] must be a \(movie_title, rating\) pair"),
        ([("Speed (1994)", 4.0, 1)], r"history\[0\] must be a \(movie_title, rating\) pair"),
        (["Speed (1994)"], r"history\[0\] must be a \(movie_title, rating\) pair, got 'Speed \(1994\)'"),
        ("Speed (1994)", r"history must be a list of \(movie_title, rating\) pairs, got str"),
        ({"Speed (1994)": 4.0}, r"history must be a list of \(movie_title, rating\) pairs, got dict"),
        (None, r"history must be a list of \(movie_title, rating\) pairs, got NoneType"),
    ],
)
def test_bad_histories_name_the_position(factor_ranker, history, message):
    with pytest.raises(HistoryError, match=message) as caught:
        factor_ranker.personalize(history)
    assert isinstance(caught.value, ValueError)


def test_ratings_of_every_numeric_type(factor_ranker, serving):
    one = serving["factor"][mf.FACTOR]["states"]["one"]
    for rating in (5, 5.0, np.float32(5), np.int64(5), np.float64(5)):
        user = factor_ranker.personalize([(mf.MOVIES[0], rating)])
        np.testing.assert_allclose(user.user_vector, one["user_vector"], rtol=0, atol=STATE_ATOL)
    assert factor_ranker.personalize([[mf.MOVIES[0], 5.0]]).history == ((mf.MOVIES[0], 5.0),)


@pytest.mark.parametrize("model", [mf.TOWER, mf.KIT, mf.TUTORIAL])
def test_a_model_without_a_personalized_signature_says_which_presets_have_one(fixtures_dir, model):
    ranker = Ranker(fixtures_dir / model)
    assert not ranker.can_personalize
    with pytest.raises(SignatureError, match=rf"{model} .*has no personalized signature \(user_state\); models of the "
                       r"'default' and 'mf' training presets export one"):
        ranker.personalize([("Speed (1994)", 4.0)])


def test_a_personalized_user_is_immutable(factor_ranker, histories):
    user = factor_ranker.personalize(histories["mixed"]["raw"])
    assert isinstance(user, PersonalizedUser) and factor_ranker.can_personalize
    with pytest.raises(dataclasses.FrozenInstanceError):
        user.history = ()
    with pytest.raises(ValueError, match="read-only"):
        user.user_vector[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        user.user_bias[0] = 1.0


@pytest.mark.parametrize("other", [mf.FACTOR_B, mf.FACTOR_FLOAT16])
def test_a_state_from_another_model_is_refused(fixtures_dir, histories, other):
    user = Ranker(fixtures_dir / mf.FACTOR).personalize(histories["mixed"]["raw"])
    ranker = Ranker(fixtures_dir / other)
    calls = (lambda: ranker.rank(user), lambda: ranker.score(user, mf.MOVIES[:1]), lambda: ranker.rank(user, mf.MOVIES))
    for call in calls:
        with pytest.raises(ModelMismatchError, match=r"computed by another model .*personalize again from the history"):
            call()
    again = ranker.personalize(user.history)  # what the message asks for
    assert again.model_checksum == ranker.info().checksum != user.model_checksum


def test_a_user_id_and_a_personalized_user_share_the_candidates(factor_ranker, serving, histories):
    prepared = factor_ranker.candidates(list(mf.MOVIES[:10]))
    user = factor_ranker.personalize(histories["long"]["raw"])
    expected = state_scores(serving, mf.FACTOR, "long")
    scores = factor_ranker.score(user, prepared)
    np.testing.assert_allclose(scores, as_array(expected, mf.MOVIES[:10]), rtol=0, atol=PERSONALIZED_ATOL)
    known = catalog_scores(serving, mf.FACTOR, "42")
    np.testing.assert_allclose(factor_ranker.score("42", prepared), as_array(known, mf.MOVIES[:10]), atol=SCORE_ATOL)

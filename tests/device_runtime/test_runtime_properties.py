"""Property-based tests: arbitrary ids and list sizes never crash the process.

Valid input gives one finite score per candidate, in order; invalid input gives
TypeError or ValueError and nothing else.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.device_runtime import make_fixtures as mf

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
OOV_REFERENCE = "No Such Movie (2099)"  # not in the fixture vocabulary

texts = st.text(max_size=40)  # any Unicode except lone surrogates
any_id = st.one_of(
    texts,
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.binary(max_size=20),
    st.integers(),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(texts, max_size=2),
)


@SETTINGS
@given(user=texts.filter(bool), candidates=st.lists(texts, max_size=60))
def test_any_unicode_ids_get_one_finite_score_each(kit_ranker, user, candidates):
    scores = kit_ranker.score(user, candidates + [OOV_REFERENCE])
    assert scores.shape == (len(candidates) + 1,) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    oov = scores[-1]
    for title, score in zip(candidates, scores):
        if title not in mf.MOVIES:
            assert score == oov, f"unknown title {title!r} should score like every other unknown title"

    ranked = kit_ranker.rank(user, candidates, k=None)
    assert sorted(title for title, _ in ranked) == sorted(candidates)
    ranked_scores = [score for _, score in ranked]
    assert ranked_scores == sorted(ranked_scores, reverse=True)


@SETTINGS
@given(user=texts.filter(bool), candidates=st.lists(st.sampled_from(mf.MOVIES), max_size=30))
def test_scores_do_not_depend_on_the_other_candidates(kit_ranker, user, candidates):
    scores = kit_ranker.score(user, candidates + list(mf.MOVIES[:3]))
    alone = kit_ranker.score(user, list(mf.MOVIES[:3]) + candidates)
    assert scores[len(candidates) :].tolist() == alone[:3].tolist()
    assert scores[: len(candidates)].tolist() == alone[3:].tolist()


@SETTINGS
@given(user=any_id, candidates=st.lists(any_id, max_size=10))
def test_arbitrary_values_are_scored_or_rejected_cleanly(kit_ranker, user, candidates):
    try:
        scores = kit_ranker.score(user, candidates)
    except (TypeError, ValueError) as error:
        assert str(error)  # a message, never a bare exception
        return
    assert len(scores) == len(candidates)


@SETTINGS
@given(data=st.data(), size=st.integers(min_value=0, max_value=50))
def test_score_pairs_any_sizes(kit_ranker, data, size):
    users = data.draw(st.lists(texts.filter(bool), min_size=size, max_size=size))
    movies = data.draw(st.lists(texts, min_size=size, max_size=size))
    scores = kit_ranker.score_pairs(users, movies)
    assert scores.shape == (size,) and np.isfinite(scores).all()

"""Ranker behaviour: scores, ranking, ids, vocabularies, signatures, load errors, info."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from device_runtime import (
    BackendError,
    DeviceRuntimeError,
    ManifestError,
    ModelLoadError,
    Ranker,
    SignatureError,
    UnknownIdError,
)
from tests.device_runtime import make_fixtures as mf
from tests.device_runtime.tolerance import SCORE_ATOL, assert_top_k_matches

KNOWN = list(mf.MOVIES[:6])
UNKNOWN_TITLE = "No Such Movie (2099)"


def probe_scores(expected_scores, model: str, user: str) -> dict[str, float]:
    """The reference score of every probe movie for `user`, from reference.json."""
    users, movies = mf.probe_pairs()
    scores = expected_scores[model]
    return {m: scores[i] for i, (u, m) in enumerate(zip(users, movies)) if u == user}


# ----------------------------------------------------------------------------- scores and ranking


def test_score_matches_reference_in_input_order(kit_ranker, expected_scores):
    expected = probe_scores(expected_scores, mf.KIT, "42")
    titles = list(reversed(mf.PROBE_MOVIES))
    scores = kit_ranker.score("42", titles)
    assert scores.dtype == np.float32
    assert scores.shape == (len(titles),)
    np.testing.assert_allclose(scores, [expected[t] for t in titles], rtol=0, atol=SCORE_ATOL)


def test_int_bytes_and_str_user_ids_are_the_same_user(kit_ranker, expected_scores):
    expected = probe_scores(expected_scores, mf.KIT, "42")
    by_str = kit_ranker.score("42", KNOWN)
    np.testing.assert_allclose(by_str, [expected[t] for t in KNOWN], rtol=0, atol=SCORE_ATOL)
    for same in (42, b"42", np.int64(42), np.str_("42")):
        assert kit_ranker.score(same, KNOWN).tolist() == by_str.tolist()
    assert kit_ranker.score("43", KNOWN).tolist() != by_str.tolist()


def test_candidates_as_list_tuple_and_numpy_arrays(kit_ranker, expected_scores):
    reference = probe_scores(expected_scores, mf.KIT, "42")
    expected = kit_ranker.score("42", KNOWN).tolist()
    np.testing.assert_allclose(expected, [reference[t] for t in KNOWN], rtol=0, atol=SCORE_ATOL)
    variants = [
        tuple(KNOWN),
        np.array(KNOWN),  # unicode array
        np.array([t.encode("utf-8") for t in KNOWN]),  # bytes array
        np.array(KNOWN, dtype=object),
        [t.encode("utf-8") for t in KNOWN],
    ]
    for candidates in variants:
        assert kit_ranker.score("42", candidates).tolist() == expected


def test_user_ids_in_numpy_integer_arrays(kit_ranker, expected_scores):
    pairs = kit_ranker.score_pairs(np.array([1, 42, 1]), ["Speed (1994)"] * 3)
    expected = [probe_scores(expected_scores, mf.KIT, user)["Speed (1994)"] for user in ("1", "42", "1")]
    np.testing.assert_allclose(pairs, expected, rtol=0, atol=SCORE_ATOL)


def test_empty_candidates_give_empty_results(kit_ranker):
    scores = kit_ranker.score("42", [])
    assert scores.shape == (0,) and scores.dtype == np.float32
    assert kit_ranker.rank("42", []) == []
    assert kit_ranker.score_pairs([], []).shape == (0,)


def test_duplicates_are_scored_each_time(kit_ranker):
    scores = kit_ranker.score("42", ["Speed (1994)", "M*A*S*H (1970)", "Speed (1994)", "Speed (1994)"])
    assert len(scores) == 4
    assert scores[0] == scores[2] == scores[3]
    assert scores[0] != scores[1]


def test_rank_returns_best_first_top_k(kit_ranker, expected_scores):
    expected = probe_scores(expected_scores, mf.KIT, "42")
    titles = [t for t in mf.PROBE_MOVIES]
    ranked = kit_ranker.rank("42", titles, k=3)
    assert_top_k_matches(ranked, {t: expected[t] for t in titles}, k=3)
    assert all(isinstance(score, float) for _, score in ranked)


def test_rank_k_none_and_k_larger_than_candidates(kit_ranker):
    assert len(kit_ranker.rank("42", KNOWN, k=None)) == len(KNOWN)
    assert len(kit_ranker.rank("42", KNOWN, k=100)) == len(KNOWN)
    assert len(kit_ranker.rank("42", KNOWN)) == len(KNOWN)  # default k=10 > 6


def test_rank_ties_keep_input_order(kit_ranker):
    # Unknown titles all go through the same out-of-vocabulary row, so they tie.
    candidates = ["unknown b", "Speed (1994)", "unknown a", "Speed (1994)", "unknown c"]
    ranked = kit_ranker.rank("42", candidates, k=None)
    unknown_order = [title for title, _ in ranked if title.startswith("unknown")]
    assert unknown_order == ["unknown b", "unknown a", "unknown c"]
    speed = [i for i, (title, _) in enumerate(ranked) if title == "Speed (1994)"]
    assert speed[1] == speed[0] + 1  # the two equal scores stay adjacent


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3"])
def test_rank_rejects_bad_k(kit_ranker, k):
    with pytest.raises(ValueError, match="k must be a positive integer or None"):
        kit_ranker.rank("42", KNOWN, k=k)


def test_score_pairs_equals_per_user_scores(kit_ranker, expected_scores):
    users = ["1", "42", "1", "user é"]
    movies = ["Speed (1994)", "Amélie (2001)", "Amélie (2001)", "千と千尋の神隠し (2001)"]
    pairs = kit_ranker.score_pairs(users, movies)
    expected = [probe_scores(expected_scores, mf.KIT, user)[movie] for user, movie in zip(users, movies)]
    np.testing.assert_allclose(pairs, expected, rtol=0, atol=SCORE_ATOL)
    for i, (user, movie) in enumerate(zip(users, movies)):
        assert kit_ranker.score(user, [movie, "Speed (1994)", movie])[0] == pairs[i]


def test_score_pairs_rejects_different_lengths(kit_ranker):
    with pytest.raises(ValueError, match="user_ids has 2 elements but movie_titles has 3"):
        kit_ranker.score_pairs(["1", "2"], KNOWN[:3])


# ----------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    "user, candidates, error, message",
    [
        (None, KNOWN, TypeError, r"user_id must be a str, bytes or int, got NoneType"),
        (4.0, KNOWN, TypeError, r"user_id must be a str, bytes or int, got float"),
        (True, KNOWN, TypeError, r"user_id .* got bool"),
        ("", KNOWN, ValueError, r"user_id is empty"),
        (b"", KNOWN, ValueError, r"user_id is empty"),
        (["42"], KNOWN, TypeError, r"user_id .* nested list"),
        ("42", ["Speed (1994)", None], TypeError, r"candidates\[1\] must be a str, bytes or int, got NoneType"),
        ("42", ["Speed (1994)", "x", 2.5], TypeError, r"candidates\[2\] .* got float"),
        ("42", [["Speed (1994)"]], TypeError, r"candidates\[0\] .* nested list"),
        ("42", ["a", b"\xff\xfe"], ValueError, r"candidates\[1\] is bytes that are not UTF-8"),
        ("42", ["a", "b", "\ud800"], ValueError, r"candidates\[2\] is not valid Unicode"),
        ("42", "Speed (1994)", TypeError, r"candidates must be a list, tuple or 1-D numpy array .* wrap it in a list"),
        ("42", {"Speed (1994)"}, TypeError, r"candidates must be a list, tuple or 1-D numpy array of ids, got set"),
        ("42", np.array([["a", "b"]]), ValueError, r"candidates must be 1-D, got an array of shape \(1, 2\)"),
        ("42", np.array([1.5, 2.5]), TypeError, r"candidates\[0\] .* got float"),
    ],
)
def test_bad_inputs_name_the_position(kit_ranker, user, candidates, error, message):
    with pytest.raises(error, match=message):
        kit_ranker.score(user, candidates)


@pytest.mark.parametrize(
    "users, message",
    [
        (["1", ""], r"user_ids\[1\] is empty"),
        (["1", None], r"user_ids\[1\] must be a str, bytes or int"),
        ([1, 2.0], r"user_ids\[1\] .* got float"),
    ],
)
def test_score_pairs_names_the_bad_user_position(kit_ranker, users, message):
    with pytest.raises((TypeError, ValueError), match=message):
        kit_ranker.score_pairs(users, ["Speed (1994)", "Speed (1994)"])


def test_empty_movie_title_is_scored_as_unknown(kit_ranker):
    scores = kit_ranker.score("42", ["", UNKNOWN_TITLE])
    assert scores[0] == scores[1]


# ----------------------------------------------------------------------------- vocabularies


def test_known_ids_come_from_the_manifest(kit_ranker):
    assert kit_ranker.has_vocabularies
    assert kit_ranker.is_known_user("42") and kit_ranker.is_known_user(42) and kit_ranker.is_known_user("ユーザー")
    assert not kit_ranker.is_known_user("4242")
    assert kit_ranker.is_known_movie("Amélie (2001)")
    assert not kit_ranker.is_known_movie(UNKNOWN_TITLE)
    assert kit_ranker.manifest.movies == mf.MOVIES


def test_unknown_ids_are_scored_by_the_oov_row(kit_ranker):
    scores = kit_ranker.score("42", ["Unknown one", "Speed (1994)", "Unknown two"])
    assert np.isfinite(scores).all()
    assert scores[0] == scores[2]
    unknown_users = kit_ranker.score_pairs(["stranger", "another stranger"], ["Speed (1994)"] * 2)
    assert unknown_users[0] == unknown_users[1]


def test_strict_mode_raises_naming_unknown_ids(kit_path, expected_scores):
    ranker = Ranker(kit_path, strict=True)
    expected = probe_scores(expected_scores, mf.KIT, "42")
    np.testing.assert_allclose(ranker.score("42", KNOWN), [expected[t] for t in KNOWN], rtol=0, atol=SCORE_ATOL)
    with pytest.raises(UnknownIdError, match=r"unknown user ids \(1 of 1\): 'stranger'") as caught:
        ranker.score("stranger", KNOWN)
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, DeviceRuntimeError)
    unknown = [f"Unknown {n}" for n in range(7)]
    with pytest.raises(UnknownIdError, match=r"unknown movie titles \(7 of 8\): 'Unknown 0', .*'Unknown 4' and 2 more"):
        ranker.score("42", ["Speed (1994)"] + unknown)
    with pytest.raises(UnknownIdError, match=r"unknown user ids \(1 of 2\): 'nobody'"):
        ranker.score_pairs(["42", "nobody"], ["Speed (1994)"] * 2)


def test_strict_mode_needs_vocabularies(fixtures_dir):
    with pytest.raises(ManifestError, match="strict=True needs the user and movie vocabularies"):
        Ranker(fixtures_dir / mf.TUTORIAL, strict=True)


def test_known_id_checks_need_vocabularies(fixtures_dir):
    ranker = Ranker(fixtures_dir / mf.TUTORIAL)
    assert ranker.manifest is None and not ranker.has_vocabularies
    with pytest.raises(ManifestError, match="carries no user vocabulary"):
        ranker.is_known_user("42")
    with pytest.raises(ManifestError, match="carries no movie vocabulary"):
        ranker.is_known_movie("Speed (1994)")


# ----------------------------------------------------------------------------- signatures


def test_tutorial_export_with_output_1_of_shape_n_by_1(fixtures_dir, expected_scores):
    ranker = Ranker(fixtures_dir / mf.TUTORIAL)
    assert ranker.signature.output == "output_1"
    assert ranker.signature.output_shape == (-1, 1)
    users, movies = mf.probe_pairs()
    scores = ranker.score_pairs(users, movies)
    assert scores.shape == (len(users),)
    np.testing.assert_allclose(scores, expected_scores[mf.TUTORIAL], rtol=0, atol=SCORE_ATOL)


def test_other_input_names_need_to_be_given(fixtures_dir, expected_scores):
    with pytest.raises(SignatureError, match=r"found: title \(string\[-1\]\), uid \(string\[-1\]\)"):
        Ranker(fixtures_dir / mf.RENAMED)
    ranker = Ranker(fixtures_dir / mf.RENAMED, user_input="uid", item_input="title")
    assert (ranker.signature.user_input, ranker.signature.item_input, ranker.signature.output) == (
        "uid",
        "title",
        "score",
    )
    users, movies = mf.probe_pairs()
    np.testing.assert_allclose(ranker.score_pairs(users, movies), expected_scores[mf.RENAMED], rtol=0, atol=SCORE_ATOL)
    with pytest.raises(SignatureError, match="check the names given"):
        Ranker(fixtures_dir / mf.RENAMED, user_input="user", item_input="title")


def test_a_model_that_is_not_a_ranking_model(fixtures_dir):
    with pytest.raises(
        SignatureError, match=r"must have exactly the inputs \['movie_title', 'user_id'\], found: query"
    ):
        Ranker(fixtures_dir / mf.WRONG_SIGNATURE)


@pytest.mark.parametrize("name, value", [("user_input", ""), ("item_input", 3)])
def test_bad_input_names_are_rejected(kit_path, name, value):
    with pytest.raises(TypeError, match=f"{name} must be a non-empty signature input name"):
        Ranker(kit_path, **{name: value})


# ----------------------------------------------------------------------------- load errors


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"model file .*nope.tflite does not exist"):
        Ranker(tmp_path / "nope.tflite")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ModelLoadError, match="is a folder, not a model file"):
        Ranker(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a model at all", json.dumps({"a": 1}).encode()])
def test_not_a_flatbuffer(tmp_path, content):
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=r"is not a TFLite flatbuffer \(no 'TFL3' identifier\)"):
        Ranker(path)


@pytest.mark.parametrize("fraction", [0.01, 0.25, 0.5, 0.9, 0.999])
def test_truncated_file(kit_path, tmp_path, fraction):
    content = kit_path.read_bytes()
    path = tmp_path / "truncated.tflite"
    path.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(ModelLoadError, match="is truncated or corrupt .*convert the model again"):
        Ranker(path)


def test_malformed_manifest(fixtures_dir):
    with pytest.raises(ManifestError, match="the embedded manifest is malformed .*convert the model again"):
        Ranker(fixtures_dir / mf.BAD_MANIFEST)


def test_bad_arguments_fail_before_loading(kit_path):
    with pytest.raises(BackendError, match=r"unknown backend 'pytorch'; choose one of: auto, ai_edge_litert"):
        Ranker(kit_path, backend="pytorch")
    for threads in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_threads must be a positive integer or None"):
            Ranker(kit_path, num_threads=threads)
    with pytest.raises(TypeError, match="model_path must be a path"):
        Ranker(None)
    with pytest.raises(TypeError, match="strict must be True or False"):
        Ranker(kit_path, strict="yes")


# ----------------------------------------------------------------------------- info


def test_info_describes_backend_signature_and_manifest(kit_path, backend_name):
    ranker = Ranker(kit_path, num_threads=2)
    info = ranker.info()
    assert info.backend == backend_name
    assert info.backend_version == importlib.import_module(backend_name).__version__
    assert info.numpy_version == np.__version__
    assert info.num_threads == 2
    assert info.delegates == "default" and info.delegate_fallback is None
    assert (info.signature.user_input, info.signature.item_input, info.signature.output) == (
        "user_id",
        "movie_title",
        "rating",
    )
    assert info.model_size_bytes == kit_path.stat().st_size
    assert "FULLY_CONNECTED v1" in info.operators
    assert info.manifest["users"] == len(mf.USERS) and info.manifest["movies"] == len(mf.MOVIES)
    assert info.manifest["quantization"] == "none"
    assert json.loads(json.dumps(info.to_dict()))["signature"]["output"] == "rating"
    assert Ranker(kit_path).info().num_threads is None


def test_threads_do_not_change_scores(kit_path, expected_scores):
    users, movies = mf.probe_pairs()
    scores = Ranker(kit_path, num_threads=2).score_pairs(users, movies)
    np.testing.assert_allclose(scores, expected_scores[mf.KIT], rtol=0, atol=SCORE_ATOL)


def test_ids_are_passed_byte_for_byte(kit_ranker):
    # A trailing NUL or different Unicode normalisation makes a different, unknown title.
    scores = kit_ranker.score("42", ["Speed (1994)", "Speed (1994)\x00", "Ame\u0301lie (2001)", UNKNOWN_TITLE])
    assert scores[1] == scores[2] == scores[3] != scores[0]
    assert kit_ranker.is_known_movie("Amélie (2001)") and not kit_ranker.is_known_movie("Ame\u0301lie (2001)")

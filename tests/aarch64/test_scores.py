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

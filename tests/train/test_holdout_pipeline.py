"""`train_and_export(holdout_fraction=...)`: the held-out users' rows reach no training step, vocabulary or table."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from train import artifacts, holdout
from train.__main__ import main
from train.config import AutoRecConfig, BlendConfig, preset_config

pytestmark = pytest.mark.tensorflow

ROWS = 2000
FRACTION = 0.1
SEED = 3
UNKNOWN_USER = "no-such-user"


def _tiny_blend_config():
    blend = BlendConfig(autorec=AutoRecConfig(hidden=16, max_steps=20, steps_per_epoch=10), export_rank=4)
    return dataclasses.replace(preset_config("default", epochs=2, seed=SEED), embedding_dimension=8, blend=blend)


@pytest.fixture(scope="module")
def split():
    from train.data import load_ratings, split_ratings

    ratings = load_ratings()
    train_rows, test_rows = split_ratings(ratings)
    users = sorted(set(ratings.user_id.tolist()))
    digests = sorted(users, key=lambda user: hashlib.sha256(f"{SEED}:{user}".encode()).hexdigest())
    held = set(digests[: round(FRACTION * len(users))])  # the rule, computed here once more
    return ratings, train_rows, test_rows, held


def _pairs(rows_list) -> list:
    """(user, timestamp, title) of every row given, sorted: a multiset to compare row sets by."""
    return sorted(
        (str(u), int(t), str(m))
        for rows in rows_list
        if rows is not None
        for u, t, m in zip(rows.user_id, rows.timestamp, rows.movie_title)
    )


def _kept_rows(train_rows, held: set):
    kept = np.flatnonzero(~np.isin(train_rows.user_id, sorted(held)))
    return train_rows.take(kept[:ROWS])


def test_the_blend_sees_no_held_out_row_and_its_model_does_not_know_them(tmp_path, monkeypatch, split):
    from train import blend
    from train.pipeline import train_and_export

    ratings, train_rows, test_rows, held = split
    assert held & set(train_rows.user_id[:ROWS].tolist())  # without the holdout, the first rows include them
    seen = {"blend": [], "side": [], "lookup_users": []}
    original_blend, original_side, original_fit = blend.train_blend, blend.side_features, blend.fit_factorization

    def recording_blend(fit_rows, validation_rows, users, movies, config):
        seen["blend"].append((fit_rows, validation_rows, tuple(users)))
        return original_blend(fit_rows, validation_rows, users, movies, config)

    def recording_side(row_sets, users, movies):
        seen["side"].extend(rows for rows in row_sets if rows is not None)
        return original_side(row_sets, users, movies)

    def recording_fit(data, lookups, *args, **kwargs):
        seen["lookup_users"].append(lookups.users)
        return original_fit(data, lookups, *args, **kwargs)

    monkeypatch.setattr(blend, "train_blend", recording_blend)
    monkeypatch.setattr(blend, "side_features", recording_side)
    monkeypatch.setattr(blend, "fit_factorization", recording_fit)
    out = tmp_path / "model"
    result = train_and_export(_tiny_blend_config(), out, max_train_rows=ROWS, holdout_fraction=FRACTION)

    # Every training step got the first ROWS training rows of the other users, no more, no fewer.
    expected = _pairs([_kept_rows(train_rows, held)])
    [(fit_rows, validation_rows, blend_users)] = seen["blend"]
    assert _pairs([fit_rows, validation_rows]) == expected
    assert _pairs(seen["side"]) == expected
    everyone = sorted(set(ratings.user_id.tolist()))
    assert blend_users == tuple(user for user in everyone if user not in held)
    assert seen["lookup_users"] == [blend_users]

    # Absent from the vocabulary and the user table: a held-out user scores as an unknown id.
    assert artifacts.read_vocabulary(out / artifacts.USERS_VOCAB) == list(blend_users)
    scores = _saved_model_scores(out, [sorted(held)[0], UNKNOWN_USER, blend_users[0]], ratings.movie_title[:50])
    np.testing.assert_array_equal(scores[0], scores[1])
    assert not np.array_equal(scores[2], scores[1])

    # The files and the record.
    assert holdout.read_holdout_users(out / holdout.USERS_FILE) == tuple(
        sorted(held, key=lambda user: holdout.user_digest(user, SEED))
    )
    rows = holdout.read_holdout_rows(out / holdout.ROWS_FILE)
    in_train, in_test = np.isin(train_rows.user_id, sorted(held)), np.isin(test_rows.user_id, sorted(held))
    assert rows.user_id[rows.split == "train"].tolist() == train_rows.user_id[in_train].tolist()
    assert rows.movie_title[rows.split == "test"].tolist() == test_rows.movie_title[in_test].tolist()
    metrics = json.loads((out / artifacts.METRICS_FILE).read_text())
    record = metrics["holdout"]
    assert (record["fraction"], record["users"], record["of_users"], record["seed"]) == (FRACTION, 94, 943, SEED)
    assert record["train_rows_held_out"] == in_train.sum() and record["test_rows_held_out"] == in_test.sum()
    assert metrics["rows"]["test"] == len(test_rows) - in_test.sum()  # the test figures are the other users'
    assert metrics["vocabulary_sizes"]["users"] == 943 - 94 and result.metrics is not None


def test_the_tower_sees_no_held_out_row(tmp_path, monkeypatch, split):
    from train import model
    from train.pipeline import train_and_export

    ratings, train_rows, _, held = split
    seen = {}
    original_data, original_fit = model.in_memory_training_data, model.fit_model

    def recording_data(rows, config):
        seen["rows"] = rows
        return original_data(rows, config)

    def recording_fit(data, users, movies, config, strategy=None):
        seen["users"] = tuple(users)
        return original_fit(data, users, movies, config, strategy)

    monkeypatch.setattr(model, "in_memory_training_data", recording_data)
    monkeypatch.setattr(model, "fit_model", recording_fit)
    config = dataclasses.replace(preset_config("tutorial", epochs=1, seed=SEED), batch_size=256)
    train_and_export(config, tmp_path / "model", max_train_rows=ROWS, holdout_fraction=FRACTION)

    assert _pairs([seen["rows"]]) == _pairs([_kept_rows(train_rows, held)])
    assert seen["users"] == tuple(user for user in sorted(set(ratings.user_id.tolist())) if user not in held)
    scores = _saved_model_scores(tmp_path / "model", [sorted(held)[-1], UNKNOWN_USER], ratings.movie_title[:20])
    np.testing.assert_array_equal(scores[0], scores[1])


def _saved_model_scores(folder, users, movies) -> list:
    import tensorflow as tf

    signature = tf.saved_model.load(str(folder / artifacts.SAVED_MODEL_DIR)).signatures["serving_default"]
    titles = tf.constant(np.asarray(movies, dtype=str))
    return [
        signature(user_id=tf.constant([user] * len(movies)), movie_title=titles)["rating"].numpy().reshape(-1)
        for user in users
    ]


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "--holdout-users must be a fraction strictly between 0 and 1 such as 0.1, got 0"),
        ("1", "--holdout-users must be a fraction strictly between 0 and 1 such as 0.1, got 1"),
        ("tenth", "--holdout-users must be a fraction strictly between 0 and 1 such as 0.1, got 'tenth'"),
    ],
)
def test_bad_fractions_exit_2_with_one_line(tmp_path, capsys, value, message):
    assert main(["--out", str(tmp_path / "m"), "--holdout-users", value, "--quiet"]) == 2
    assert capsys.readouterr().err == f"train: error: {message}\n"
    assert not (tmp_path / "m").exists()


def test_sharded_data_is_refused_with_one_line(tmp_path, capsys):
    from train import streaming

    folder = tmp_path / "shards"
    streaming.write_shards(folder, "train", ["1"], ["A (1990)"], [4], 1)
    assert main(["--out", str(tmp_path / "m"), "--data", str(folder), "--holdout-users", "0.1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train: error: --holdout-users needs the rows in memory") and err.count("\n") == 1
    assert "sharded TSV folders are not supported" in err

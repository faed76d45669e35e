"""Which users `--holdout-users` holds out, the files it writes and reads, and its bad values (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from train import holdout
from train.data import Ratings
from train.errors import ConfigError, DataError, OutputError

# Hand computation with the shell, not Python: for u in 1..10, `printf '7:%s' $u | sha256sum`, sorted:
# 02cc1007... 4, 08c843c9... 7, 111c309f... 3, 1393ac80... 8, ...
SMALLEST_OF_TEN_SEED_7 = ("4", "7", "3", "8")
DIGEST_OF_ACCENTED_SEED_7 = "22584c1fc9f68305a6bd9a41e360a3b479982fccc694c0e2a747f42af8c0e2ec"  # printf '7:é'
# MovieLens 100K's users are 1..943; with 0.1, round(94.3) = 94 users (the shell, as above): first five, last two.
HELD_OUT_BY_SEED = {
    42: (("415", "266", "191", "88", "653"), ("592", "54")),
    0: (("392", "942", "404", "87", "923"), ("115", "36")),
}


def test_the_users_with_the_smallest_digests_are_held_out():
    users = [str(u) for u in range(1, 11)]
    assert holdout.select_holdout_users(users, 0.3, seed=7) == SMALLEST_OF_TEN_SEED_7[:3]
    assert holdout.select_holdout_users(users, 0.4, seed=7) == SMALLEST_OF_TEN_SEED_7
    assert holdout.user_digest("é", 7) == DIGEST_OF_ACCENTED_SEED_7


@pytest.mark.parametrize("seed", sorted(HELD_OUT_BY_SEED))
def test_the_movielens_selection_matches_the_shell(seed):
    held = holdout.select_holdout_users([str(u) for u in range(1, 944)], 0.1, seed=seed)
    assert len(held) == 94
    assert (held[:5], held[-2:]) == HELD_OUT_BY_SEED[seed]


def test_repeated_rows_count_once_and_order_of_rows_does_not_matter():
    rows = ["3", "1", "2", "3", "3", "4", "5", "6", "7", "8", "9", "10", "1"]
    assert holdout.select_holdout_users(rows, 0.3, seed=7) == SMALLEST_OF_TEN_SEED_7[:3]
    assert holdout.select_holdout_users(np.array(rows[::-1]), 0.3, seed=7) == SMALLEST_OF_TEN_SEED_7[:3]


def test_other_seeds_choose_other_users():
    users = [str(u) for u in range(1, 944)]
    chosen = [set(holdout.select_holdout_users(users, 0.1, seed)) for seed in (0, 1, 42)]
    assert all(len(a & b) < 30 for i, a in enumerate(chosen) for b in chosen[i + 1 :])


@pytest.mark.parametrize("fraction", [1e-4, 0.9999])
def test_a_fraction_that_rounds_to_no_user_or_every_user_is_refused(fraction):
    with pytest.raises(ConfigError, match=r"of 10 users holds out (0|10); choose a fraction that leaves"):
        holdout.select_holdout_users([str(u) for u in range(10)], fraction, seed=0)


@pytest.mark.parametrize("text", ["0", "1", "1.0", "-0.1", "1.5", "abc", "", "nan", "inf", "0x1"])
def test_bad_fractions_are_refused_with_one_line(text):
    with pytest.raises(ConfigError, match=r"^--holdout-users must be a fraction strictly between 0 and 1") as error:
        holdout.parse_fraction(text)
    assert "\n" not in str(error.value)


def test_good_fractions_parse():
    assert holdout.parse_fraction("0.1") == 0.1
    assert holdout.parse_fraction(" 0.25 ") == 0.25


def test_sharded_data_is_refused_and_no_holdout_changes_nothing():
    with pytest.raises(ConfigError, match="sharded TSV folders are not supported"):
        holdout.check_holdout_options(0.1, sharded=True)
    holdout.check_holdout_options(None, sharded=True)
    rows = _ratings(["1", "2"], ["A (1990)", "B (1991)"], [4.0, 2.0])
    assert holdout.hold_out(rows, rows, rows, None, seed=0) == (None, rows, rows)
    assert holdout.without_held_out(("1", "2"), None) == ("1", "2")


def _ratings(users, titles, ratings) -> Ratings:
    count = len(users)
    return Ratings(
        user_id=np.array(users, dtype=str),
        movie_title=np.array(titles, dtype=str),
        user_rating=np.array(ratings, dtype=np.float32),
        timestamp=np.arange(count, dtype=np.int64),
        user_age=np.full(count, 30, np.int32),
        user_gender=np.full(count, "F"),
        user_occupation=np.full(count, "other"),
        user_zip_code=np.full(count, "00000"),
        movie_genres=np.full(count, "Drama"),
    )


def test_hold_out_splits_the_rows_and_the_files_round_trip(tmp_path):
    users = [str(u) for u in range(1, 11)]
    everything = _ratings(users, [f"M{u} (1990)" for u in users], [1.0 + (u % 5) for u in range(1, 11)])
    train = _ratings(["4", "1", "7", "3", "2"], ["A (1990)", "B (1991)", "C, The (1992)", "D (1993)", "E (1994)"],
                     [5.0, 4.0, 3.0, 2.0, 1.0])
    test = _ratings(["2", "4", "9"], ["F (1995)", "G (1996)", "H (1997)"], [3.0, 4.0, 5.0])

    held, kept_train, kept_test = holdout.hold_out(everything, train, test, 0.3, seed=7)

    assert held.users == ("4", "7", "3") and held.total_users == 10
    assert kept_train.user_id.tolist() == ["1", "2"] and kept_train.user_rating.tolist() == [4.0, 1.0]
    assert kept_test.user_id.tolist() == ["2", "9"]
    assert held.train_rows.user_id.tolist() == ["4", "7", "3"] and held.test_rows.user_id.tolist() == ["4"]
    assert holdout.without_held_out(tuple(users), held) == ("1", "2", "5", "6", "8", "9", "10")
    record = held.to_dict()
    assert (record["fraction"], record["users"], record["of_users"], record["seed"]) == (0.3, 3, 10, 7)
    assert record["train_rows_held_out"] == 3 and record["test_rows_held_out"] == 1
    assert "smallest sha256" in record["rule"]

    holdout.write_holdout_files(tmp_path, held)
    assert (tmp_path / holdout.USERS_FILE).read_text(encoding="utf-8") == "4\n7\n3\n"
    assert (tmp_path / holdout.ROWS_FILE).read_text(encoding="utf-8") == (
        "split\tuser_id\tmovie_title\tuser_rating\n"
        "train\t4\tA (1990)\t5.0\ntrain\t7\tC, The (1992)\t3.0\ntrain\t3\tD (1993)\t2.0\n"
        "test\t4\tG (1996)\t4.0\n"
    )
    assert holdout.read_holdout_users(tmp_path / holdout.USERS_FILE) == ("4", "7", "3")
    rows = holdout.read_holdout_rows(tmp_path / holdout.ROWS_FILE)
    assert rows.split.tolist() == ["train", "train", "train", "test"]
    assert rows.movie_title.tolist() == ["A (1990)", "C, The (1992)", "D (1993)", "G (1996)"]
    assert rows.user_rating.tolist() == [5.0, 3.0, 2.0, 4.0]


def test_a_title_with_a_tab_cannot_be_written(tmp_path):
    rows = _ratings(["4"], ["Bad\tTitle"], [3.0])
    held, _, _ = holdout.hold_out(_ratings(["4", "5"], ["x", "y"], [1.0, 1.0]), rows, rows, 0.5, seed=7)
    with pytest.raises(OutputError, match="holds a tab or a line break"):
        holdout.write_holdout_files(tmp_path, held)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "does not start with the header split user_id movie_title user_rating"),
        ("user_id\tmovie_title\n", "does not start with the header"),
        ("split\tuser_id\tmovie_title\tuser_rating\ntrain\t1\tA\n", "line 2: expected 4 tab-separated fields, found 3"),
        ("split\tuser_id\tmovie_title\tuser_rating\nvalid\t1\tA\t3\n", "line 2: split 'valid' is neither"),
        ("split\tuser_id\tmovie_title\tuser_rating\ntest\t1\tA\t6\n", "line 2: rating '6' is not a number from 1 to 5"),
        ("split\tuser_id\tmovie_title\tuser_rating\ntest\t1\tA\tnan\n", "line 2: rating 'nan' is not a number"),
    ],
)
def test_malformed_rows_files_are_named_by_line(tmp_path, content, message):
    path = tmp_path / "rows.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        holdout.read_holdout_rows(path)


@pytest.mark.parametrize(
    "content, message",
    [("", "lists no user"), ("1\n\n2\n", "line 2 is blank"), ("1\n2\n1\n", "lists user '1' twice")],
)
def test_malformed_user_files_are_refused(tmp_path, content, message):
    path = tmp_path / "users.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        holdout.read_holdout_users(path)


def test_missing_and_binary_files_say_what_to_give(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; give the file written by `python -m train --holdout-users"):
        holdout.read_holdout_users(tmp_path / "missing.txt")
    (tmp_path / "binary.tsv").write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        holdout.read_holdout_rows(tmp_path / "binary.tsv")

"""Data sources, malformed input and the tutorial split."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from train import data
from train.data import DataError, load_ratings

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def ratings():
    return load_ratings()


# --- the offline default ------------------------------------------------------


def test_offline_copy_has_movielens_100k(ratings):
    assert len(ratings) == 100_000
    assert len(ratings.unique_users()) == 943
    assert len(ratings.unique_movies()) == 1664  # 1,682 movie ids, 18 titles appear twice
    # u.data's first row: user 196 rated movie 242 (Kolya, 1996) with 3 stars.
    assert (ratings.user_id[0], ratings.movie_title[0], ratings.user_rating[0]) == ("196", "Kolya (1996)", 3.0)
    assert ratings.timestamp[0] == 881250949
    assert "One Flew Over the Cuckoo's Nest (1975)" in set(ratings.movie_title)
    assert "unknown" in set(ratings.movie_title)  # movie 267 has neither title nor year
    assert ratings.user_rating.dtype == np.float32
    assert set(np.unique(ratings.user_rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_offline_copy_keeps_side_features(ratings):
    # User 196 is a 49-year-old male writer from 55105; Kolya is a comedy.
    assert (ratings.user_age[0], ratings.user_gender[0], ratings.user_occupation[0], ratings.user_zip_code[0]) == (
        49,
        "M",
        "writer",
        "55105",
    )
    assert ratings.movie_genres[0] == "Comedy"


def _copy_recbole(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name in data.RECBOLE_SHA256:
        shutil.copy(data.recbole_folder() / name, folder / name)
    return folder


def test_changed_offline_file_is_refused(tmp_path, monkeypatch):
    folder = _copy_recbole(tmp_path)
    with open(folder / "ml-100k.inter", "a", encoding="utf-8") as handle:
        handle.write("1\t1\t5\t874965758\n")
    monkeypatch.setattr(data, "recbole_folder", lambda: folder)
    with pytest.raises(DataError, match=r"ml-100k.inter has sha256 .* reinstall the data with: pip install --no-deps"):
        load_ratings()


def test_missing_offline_file_is_refused(tmp_path, monkeypatch):
    folder = _copy_recbole(tmp_path)
    (folder / "ml-100k.user").unlink()
    monkeypatch.setattr(data, "recbole_folder", lambda: folder)
    with pytest.raises(DataError, match=r"ml-100k.user is missing; reinstall"):
        load_ratings()


def test_missing_recbole_wheel_says_how_to_install(monkeypatch):
    def not_installed(name):
        raise data.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(data.importlib.metadata, "distribution", not_installed)
    with pytest.raises(DataError, match=r'pip install --no-deps "recbole==1.2.1"'):
        load_ratings()


# --- a GroupLens folder --------------------------------------------------------

GENRES = "unknown|0\nAction|1\nComedy|2\n\n"
ITEMS = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
    "2|Cité des enfants perdus, La (1995)|01-Jan-1995||http://x|0|1|0\n"
)
USERS = "1|24|M|technician|85711\n2|53|F|other|94043\n"
RATINGS = "1\t1\t5\t874965758\n2\t2\t3\t876893171\n1\t2\t4\t878542960\n"


def _grouplens(tmp_path: Path, **overrides: str) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir(exist_ok=True)
    files = {"u.genre": GENRES, "u.item": ITEMS, "u.user": USERS, "u.data": RATINGS, **overrides}
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("latin-1"))
    return folder


def test_grouplens_folder(tmp_path):
    ratings = load_ratings(str(_grouplens(tmp_path)))
    assert list(ratings.user_id) == ["1", "2", "1"]
    assert list(ratings.movie_title) == ["Toy Story (1995)", "Cité des enfants perdus, La (1995)"] + [
        "Cité des enfants perdus, La (1995)"
    ]
    assert list(ratings.user_rating) == [5.0, 3.0, 4.0]
    assert list(ratings.movie_genres) == ["Comedy", "Action", "Action"]
    assert list(ratings.user_occupation) == ["technician", "other", "technician"]


@pytest.mark.parametrize(
    "file_name, text, message",
    [
        ("u.data", "1\t1\t5\t874965758\n1\t2\t6\t874965758\n", r"u.data line 2: rating 6 is outside 1..5"),
        ("u.data", "1\t1\t5\t874965758\n1\t2\n", r"u.data line 2: expected at least 4 tab-separated columns, found 2"),
        (
            "u.data",
            "1\t1\t5\t874965758\n1\t99\t4\t874965758\n",
            r"u.data line 2: movie id '99' is not in the movie file",
        ),
        ("u.data", "1\t1\tfive\t874965758\n", r"u.data line 1: rating 'five' is not a number"),
        ("u.data", "", r"u.data is empty"),
        ("u.item", "1|Toy Story (1995)\n", r"u.item line 1: expected at least 5 '\|'-separated columns, found 2"),
        ("u.user", "1|old|M|technician|85711\n", r"u.user line 1: age 'old' is not a whole number"),
    ],
)
def test_malformed_grouplens_input_names_file_and_line(tmp_path, file_name, text, message):
    folder = _grouplens(tmp_path, **{file_name: text})
    with pytest.raises(DataError, match=message):
        load_ratings(str(folder))


def test_missing_grouplens_file(tmp_path):
    folder = _grouplens(tmp_path)
    (folder / "u.user").unlink()
    with pytest.raises(DataError, match=r"u.user is missing"):
        load_ratings(str(folder))


def test_data_path_that_is_not_a_folder(tmp_path):
    with pytest.raises(DataError, match=r"is not a folder; pass 'recbole', 'tfds' or a folder"):
        load_ratings(str(tmp_path / "nowhere"))


# --- TFDS --------------------------------------------------------------------


def test_tfds_rows_are_mapped_like_the_tutorial(monkeypatch):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    rows = {
        "user_id": [b"42", b"7"],
        "movie_title": [b"Speed (1994)", b"M*A*S*H (1970)"],
        "user_rating": np.array([4.0, 2.0], np.float32),
        "timestamp": np.array([881250949, 881250950], np.int64),
        "raw_user_age": np.array([30.0, 41.0], np.float32),
        "user_gender": [True, False],
        "user_occupation_text": [b"writer", b"artist"],
        "user_zip_code": [b"55105", b"94043"],
        "movie_genres": np.array([[1, 16], [4, 5]], np.int64),
    }

    class Info:
        version = "0.1.1"

    monkeypatch.setattr(tfds, "load", lambda *a, **k: (tf.data.Dataset.from_tensor_slices(rows), Info()))
    ratings = load_ratings("tfds")
    assert list(ratings.user_id) == ["42", "7"]
    assert list(ratings.movie_title) == ["Speed (1994)", "M*A*S*H (1970)"]
    assert list(ratings.user_gender) == ["M", "F"]
    assert list(ratings.user_age) == [30, 41]
    assert list(ratings.movie_genres) == ["1|16", "4|5"]


def test_tfds_without_network_is_one_clear_error(monkeypatch):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve host\nmore detail")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(DataError) as raised:
        load_ratings("tfds")
    assert str(raised.value) == (
        "tfds could not load movielens/100k-ratings (ConnectionError: Failed to resolve host more detail); "
        "this source needs network access; use the default offline data instead (omit --data)"
    )


def test_tfds_error_without_a_message_is_named_by_its_type(monkeypatch):
    import tensorflow_datasets as tfds

    def silent(*args, **kwargs):
        raise ConnectionError()

    monkeypatch.setattr(tfds, "load", silent)
    with pytest.raises(DataError, match=r"^tfds could not load movielens/100k-ratings \(ConnectionError\); this"):
        load_ratings("tfds")


# --- the split ---------------------------------------------------------------


def test_split_is_reproducible_and_disjoint(ratings):
    first_train, first_test = data.split_ratings(ratings)
    second_train, second_test = data.split_ratings(ratings)
    assert len(first_train) == 80_000 and len(first_test) == 20_000
    for column in data.COLUMNS:
        np.testing.assert_array_equal(getattr(first_train, column), getattr(second_train, column))
        np.testing.assert_array_equal(getattr(first_test, column), getattr(second_test, column))
    order = data.shuffled_order(len(ratings))
    assert sorted(order.tolist()) == list(range(100_000))


def test_split_matches_the_tutorial_recipe_on_the_rows_themselves(ratings):
    """The tutorial shuffles the rows, not indices: both must give the same order."""
    import tensorflow as tf

    tf.random.set_seed(42)
    rows = tf.data.Dataset.from_tensor_slices({"user_id": ratings.user_id, "movie_title": ratings.movie_title})
    shuffled = rows.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
    test_head = next(iter(shuffled.skip(80_000).take(20_000).batch(500)))
    train_rows, test_rows = data.split_ratings(ratings)
    assert [t.decode() for t in test_head["movie_title"].numpy()] == list(test_rows.movie_title[:500])
    assert [u.decode() for u in test_head["user_id"].numpy()] == list(test_rows.user_id[:500])

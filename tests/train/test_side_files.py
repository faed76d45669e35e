"""users.tsv and movies.tsv beside the shards: written from training rows, read back as side tables, checked."""

from __future__ import annotations

import types

import numpy as np
import pytest

from train.errors import DataError
from train.side_files import MOVIES_FILE, USERS_FILE, read_side_files, write_side_files

USERS = ("1", "2", "3")
MOVIES = ("A (1931)", "B (1995)", "C (1977)", "D")
ROWS = types.SimpleNamespace(
    user_id=np.array(["1", "2", "1"]),
    movie_title=np.array(["A (1931)", "B (1995)", "B (1995)"]),
    user_age=np.array([24, 53, 24]),
    user_gender=np.array(["M", "F", "M"]),
    user_occupation=np.array(["technician", "other", "technician"]),
    user_zip_code=np.array(["85711", "T8H1N", "85711"]),
    movie_genres=np.array(["Comedy|Drama", "Action", "Action"]),
)
EVERY_ID = np.ones(len(USERS) + 1, bool), np.ones(len(MOVIES) + 1, bool)


def test_written_files_hold_one_line_per_id_of_the_rows(tmp_path):
    write_side_files(tmp_path, [ROWS, None])
    assert (tmp_path / USERS_FILE).read_text(encoding="utf-8").splitlines() == [
        "user_id\tage\tgender\toccupation\tzip_code",
        "1\t24\tM\ttechnician\t85711",
        "2\t53\tF\tother\tT8H1N",
    ]
    assert (tmp_path / MOVIES_FILE).read_text(encoding="utf-8").splitlines() == [
        "movie_title\tgenres",
        "A (1931)\tComedy|Drama",
        "B (1995)\tAction",
    ]


def test_read_back_they_give_the_tables_of_the_rows_themselves(tmp_path):
    write_side_files(tmp_path, [ROWS])
    side = read_side_files(tmp_path, USERS, MOVIES, *EVERY_ID)
    # By hand (as in test_factorization): occupations other (1), technician (2); ages 24 and 53 are
    # buckets 2 and 6; zip 85711 starts with 8 (bucket 9), T8H1N is not a digit (11); user 3 is unknown.
    assert side.user_features.tolist() == [[0, 0, 0, 0], [2, 1, 2, 9], [6, 2, 1, 11], [0, 0, 0, 0]]
    np.testing.assert_array_equal(side.movie_genres, [[0, 0, 0], [0, 0.5, 0.5], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert side.movie_year.tolist() == [0, 1, 11, 0, 0]  # 1931: before 1950; 1995: 6 + 5; C and D not listed


def test_ids_outside_the_training_rows_stay_unknown(tmp_path):
    write_side_files(tmp_path, [ROWS])
    trained_users = np.array([False, True, False, False])  # user 2 appears only in test rows
    trained_movies = np.array([False, False, True, False, False])  # movie A appears only in test rows
    side = read_side_files(tmp_path, USERS, MOVIES, trained_users, trained_movies)
    assert side.user_features.tolist() == [[0, 0, 0, 0], [2, 1, 1, 9], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert side.movie_year.tolist() == [0, 0, 11, 0, 0]
    np.testing.assert_array_equal(side.movie_genres[:, 0], [0, 0, 1, 0, 0])  # Action only


def test_a_folder_without_side_files_has_no_tables(tmp_path):
    assert read_side_files(tmp_path, USERS, MOVIES, *EVERY_ID) is None


def test_one_file_alone_and_unknown_values_are_allowed(tmp_path):
    (tmp_path / USERS_FILE).write_text(
        "user_id\tage\tgender\toccupation\tzip_code\n3\t\tX\t\t\nnobody\t30\tM\twriter\t10001\n", encoding="utf-8"
    )
    side = read_side_files(tmp_path, USERS, MOVIES, *EVERY_ID)
    assert side.user_features.tolist() == [[0, 0, 0, 0]] * 4  # every value of user 3 unknown; 'nobody' ignored
    assert not side.movie_year.any() and not side.movie_genres.any()


@pytest.mark.parametrize(
    "name, text, message",
    [
        (USERS_FILE, "user\tage\n", r"users.tsv line 1: expected the header 'user_id\\tage"),
        (USERS_FILE, "user_id\tage\tgender\toccupation\tzip_code\n1\t24\tM\n", r"users.tsv line 2: expected 5 "
         r"tab-separated columns, found 3"),
        (USERS_FILE, "user_id\tage\tgender\toccupation\tzip_code\n1\told\tM\tx\t1\n", r"users.tsv line 2: age 'old' "
         r"is not a whole number"),
        (USERS_FILE, "user_id\tage\tgender\toccupation\tzip_code\n1\t-4\tM\tx\t1\n", r"line 2: age -4 is outside"),
        (USERS_FILE, "user_id\tage\tgender\toccupation\tzip_code\n1\t3\tM\tx\t1\n\t3\tM\tx\t1\n",
         r"users.tsv line 3: the id in the first column is empty"),
        (MOVIES_FILE, "movie_title\tgenres\nD\tDrama\nE\t\nD\tComedy\n", r"movies.tsv line 4: 'D' is already listed "
         r"on line 2"),
        (MOVIES_FILE, "movie_title\tgenres\nD\tDrama\t1999\n", r"movies.tsv line 2: expected 2 tab-separated"),
    ],
)
def test_a_bad_side_file_names_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_side_files(tmp_path, USERS, MOVIES, *EVERY_ID)


def test_a_side_file_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / MOVIES_FILE).write_bytes(b"movie_title\tgenres\nCaf\xe9 (1990)\tDrama\n")
    with pytest.raises(DataError, match=r"movies.tsv is not UTF-8 text"):
        read_side_files(tmp_path, USERS, MOVIES, *EVERY_ID)

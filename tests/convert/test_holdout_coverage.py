"""The parity data's coverage check leaves out the users a `--holdout-users` export left out on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from convert.parity_data import ParityData, Vocabularies, check_coverage, held_out_users
from convert.errors import InputError, ParityDataError
from train import holdout

MOVIES = ["Heat (1995)", "Babe (1995)"]


def _data(pairs: list[tuple[str, str]]) -> ParityData:
    users, movies = (np.asarray(column, dtype=object) for column in zip(*pairs))
    empty = np.asarray([], dtype=object)
    return ParityData(users, movies, np.full(len(pairs), 4.0, np.float32), "hand-made", (empty, empty, empty))


# 20 pairs of the known users 1..4 (one with an unknown movie) and 20 of the held-out user 9.
PAIRS = [(str(user), MOVIES[i % 2]) for i, user in enumerate([1, 2, 3, 4] * 5)]
PAIRS[7] = ("4", "Unknown Movie (2001)")
PAIRS += [("9", MOVIES[0])] * 20
VOCABULARIES = Vocabularies(["1", "2", "3", "4"], MOVIES, "hand-made")


def test_theheld_out_users_pairs_are_not_counted():
    # 19 of the 20 pairs of known users are known: 0.95, the minimum.
    assert check_coverage(_data(PAIRS), VOCABULARIES, ("9",)) == pytest.approx(0.95)


def test_without_the_list_they_count_as_unknown():
    with pytest.raises(ParityDataError, match=r"only 47\.5% of its 40 test pairs"):
        check_coverage(_data(PAIRS), VOCABULARIES)


def test_when_every_user_is_held_out_nothing_is_covered():
    with pytest.raises(ParityDataError, match=r"only 0\.0% of its 0 test pairs"):
        check_coverage(_data(PAIRS[:20]), VOCABULARIES, ("1", "2", "3", "4"))


def test_theexport_folder_gives_the_list(tmp_path):
    assert held_out_users(None) == ()
    assert held_out_users(tmp_path) == ()
    (tmp_path / holdout.USERS_FILE).write_text("9\n12\n", encoding="utf-8")
    assert held_out_users(tmp_path) == ("9", "12")


def test_a_malformed_list_is_an_input_error(tmp_path):
    (tmp_path / holdout.USERS_FILE).write_text("9\n9\n", encoding="utf-8")
    with pytest.raises(InputError, match="held-out users: .* lists user '9' twice"):
        held_out_users(tmp_path)

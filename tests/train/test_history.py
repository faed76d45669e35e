"""Each user's most recent ratings, kept in one pass with bounded memory: against hand-picked answers."""

from __future__ import annotations

import numpy as np
import pytest

from train.history import HistoryCollector, implicit_feedback


def _history(chunks, max_per_user, compact_rows=1, user_count=4):
    collector = HistoryCollector(max_per_user, compact_rows=compact_rows)
    for chunk in chunks:
        collector.add(*chunk)
    return collector.finish(np.arange(user_count), np.arange(10), user_count)


def _sets(rated):
    return [rated.movie_rows[rated.row_splits[r] : rated.row_splits[r + 1]].tolist() for r in range(rated.user_rows)]


# users, movies, ratings, timestamps, held out
FIRST = ([1, 1, 2, 1, 3], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [30, 10, 50, 20, 40], [False, False, False, True, False])
SECOND = ([1, 2, 1, 2], [6, 7, 8, 9], [1, 2, 3, 4], [25, 10, 30, 60], [False, False, False, False])


@pytest.mark.parametrize("compact_rows", [1, 3, 1000])  # compacting after every chunk, sometimes, or only at the end
def test_the_n_most_recent_ratings_by_timestamp_ties_in_data_order(compact_rows):
    history = _history([FIRST, SECOND], max_per_user=2, compact_rows=compact_rows)
    # User 1's fit ratings: movie 2 at t=10, 6 at 25, 1 at 30, 8 at 30 (after 1 in the data): keep 1 and 8.
    # User 2's: 7 at 10, 3 at 50, 9 at 60: keep 3 and 9. User 3: 5. Held out: user 1's movie 4.
    assert _sets(history.rated(include_held_out=False)) == [[], [1, 8], [3, 9], [5]]
    # With the held-out ratings, user 1's two most recent of all are still 1 and 8 (4 was at t=20).
    assert _sets(history.rated(include_held_out=True)) == [[], [1, 8], [3, 9], [5]]
    assert history.ratings[history.held_out].tolist() == [2.0]
    assert history.capped_users() == 2


def test_held_out_ratings_are_capped_apart_and_join_the_sets_by_time():
    chunk = ([1, 1, 1, 1], [1, 2, 3, 4], [3, 3, 3, 3], [10, 40, 20, 30], [False, True, False, True])
    history = _history([chunk], max_per_user=2)
    assert _sets(history.rated(include_held_out=False)) == [[], [1, 3], [], []]
    assert _sets(history.rated(include_held_out=True)) == [[], [4, 2], [], []]  # t=30 then t=40, oldest first


def test_without_timestamps_the_last_rows_in_data_order_are_kept():
    collector = HistoryCollector(2, compact_rows=2)
    collector.add(np.array([1, 1, 1]), np.array([1, 2, 3]), np.ones(3), keys=np.arange(3))
    collector.add(np.array([1, 2]), np.array([4, 5]), np.ones(2), keys=np.arange(3, 5))
    history = collector.finish(np.arange(3), np.arange(6), 3)
    assert _sets(history.rated(False)) == [[], [3, 4], [5]]


def test_memory_stays_bounded_by_users_times_n():
    rng = np.random.default_rng(0)
    collector = HistoryCollector(5, compact_rows=1000)
    for start in range(0, 50_000, 1000):  # 50,000 ratings of 20 users
        collector.add(rng.integers(0, 20, 1000), rng.integers(0, 100, 1000), np.ones(1000),
                      np.arange(start, start + 1000))
        assert collector.kept_rows <= 20 * 5 + 1000
    history = collector.finish(np.arange(20), np.arange(100), 20)
    assert len(history) == 100


def test_ids_are_mapped_to_vocabulary_rows_at_the_end():
    collector = HistoryCollector(3)
    collector.add(np.array([0, 1, 0]), np.array([0, 1, 1]), np.array([4.0, 2.0, 5.0]), np.array([1, 2, 3]))
    # id 0 is vocabulary row 2, id 1 is unknown to the vocabulary (row 0); movie ids 0, 1 are rows 7, 9.
    history = collector.finish(np.array([2, 0]), np.array([7, 9]), user_count=3)
    assert history.user_rows.tolist() == [0, 2, 2]
    assert history.movie_rows.tolist() == [9, 7, 9]
    assert history.ratings.tolist() == [2.0, 4.0, 5.0]


def test_rated_movie_sets_count_each_movie_once_and_can_keep_the_last_n():
    users = np.array([2, 1, 2, 2, 1, 2])
    movies = np.array([5, 3, 5, 1, 4, 2])
    sets = implicit_feedback(users, movies, user_count=4)
    assert sets.row_splits.tolist() == [0, 0, 2, 5, 5]
    assert sets.movie_rows.tolist() == [3, 4, 5, 1, 2]
    capped = implicit_feedback(users, movies, user_count=4, max_per_user=2)
    assert capped.row_splits.tolist() == [0, 0, 2, 4, 4]
    assert capped.movie_rows.tolist() == [3, 4, 1, 2]

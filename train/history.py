"""Each user's most recent ratings, collected in one pass with memory bounded by users x N.

SVD++ represents a user partly by the set of movies they rated (N(u), their
implicit feedback). On logs larger than memory that set is capped: only each
user's N most recent ratings are kept, "recent" meaning the largest order key.
The key is the rating's timestamp when the data has one, else its position in
the data (files in name order, lines in file order); ratings with the same
timestamp are ordered by position. A movie rated twice in the kept ratings
counts once.

`HistoryCollector` receives rows in chunks, in data order, and compacts its
buffer whenever it has grown by `compact_rows` rows: after a compaction it
holds at most N ratings per user, so its memory is bounded by
users x N + `compact_rows`, never by the number of rows. Ratings of held-out
(validation) rows are capped separately, so that N(u) can be formed both
without them (while the validation rows are scored) and with them (for the
refit on every training row).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

DEFAULT_MAX_PER_USER = 256
DEFAULT_COMPACT_ROWS = 2_000_000


@dataclasses.dataclass(frozen=True)
class ImplicitFeedback:
    """Each user row's rated movie rows (SVD++'s N(u)), stored row after row.

    Attributes:
        movie_rows: int32, the movie rows of user row 0, then of user row 1, ...
        row_splits: int64 [user rows + 1]; user row r rated
            `movie_rows[row_splits[r]:row_splits[r + 1]]`.
    """

    movie_rows: np.ndarray
    row_splits: np.ndarray

    @property
    def user_rows(self) -> int:
        return len(self.row_splits) - 1


def implicit_feedback(
    user_rows: np.ndarray, movie_rows: np.ndarray, user_count: int, max_per_user: Optional[int] = None
) -> ImplicitFeedback:
    """Collects each user's distinct rated movies from parallel row arrays.

    Args:
        user_rows, movie_rows: the rows of the ratings' user ids and movie titles.
        user_count: the number of user rows (vocabulary size + 1).
        max_per_user: keep only each user's last N distinct movies in row order
            (bounds memory by users x N); None keeps all.

    Returns:
        The sets, movies in row order within each user.
    """
    user_rows = np.asarray(user_rows, np.int64)
    movie_rows = np.asarray(movie_rows, np.int64)
    _, first = np.unique(user_rows * (int(movie_rows.max(initial=0)) + 1) + movie_rows, return_index=True)
    first.sort()  # distinct (user, movie) pairs in row order
    order = first[np.argsort(user_rows[first], kind="stable")]
    if max_per_user is not None:
        users = user_rows[order]
        ends = np.cumsum(np.bincount(users, minlength=user_count))[users]
        order = order[ends - np.arange(len(users)) <= max_per_user]
    splits = np.concatenate([[0], np.cumsum(np.bincount(user_rows[order], minlength=user_count))])
    return ImplicitFeedback(movie_rows[order].astype(np.int32), splits.astype(np.int64))


@dataclasses.dataclass(frozen=True)
class RatingHistory:
    """The kept ratings, grouped by user and oldest first within a user.

    Attributes:
        user_rows, movie_rows: int32 rows of the vocabularies (row 0: an id the vocabulary lacks).
        ratings: float32.
        held_out: bool, True for ratings of held-out (validation) rows.
        max_per_user: N, the cap each user's ratings were kept to (per held-out flag).
        user_count: user rows (vocabulary size + 1).
    """

    user_rows: np.ndarray
    movie_rows: np.ndarray
    ratings: np.ndarray
    held_out: np.ndarray
    max_per_user: int
    user_count: int

    def __len__(self) -> int:
        return len(self.user_rows)

    def rated(self, include_held_out: bool) -> ImplicitFeedback:
        """N(u) for every user row: the movies of each user's N most recent kept ratings.

        Args:
            include_held_out: also count the held-out ratings (False while
                validation rows are scored, True for a model fitted on all of them).
        """
        keep = slice(None) if include_held_out else ~self.held_out
        return implicit_feedback(self.user_rows[keep], self.movie_rows[keep], self.user_count, self.max_per_user)

    def capped_users(self) -> int:
        """How many users have N kept ratings (and may have rated more)."""
        counts = np.bincount(self.user_rows[~self.held_out], minlength=self.user_count)
        return int(np.count_nonzero(counts >= self.max_per_user))


class HistoryCollector:
    """Collects each user's N most recent ratings from chunks of rows given in data order.

    Users and movies are integers here (any numbering, e.g. the order of first
    appearance); `finish` maps them to vocabulary rows.
    """

    def __init__(self, max_per_user: int = DEFAULT_MAX_PER_USER, compact_rows: int = DEFAULT_COMPACT_ROWS):
        if max_per_user < 1:
            raise ValueError(f"max_per_user must be >= 1, got {max_per_user}")
        self.max_per_user = max_per_user
        self.compact_rows = compact_rows
        self._kept = _empty()
        self._pending: list[dict] = []
        self._pending_rows = 0

    def add(
        self,
        users: np.ndarray,
        movies: np.ndarray,
        ratings: np.ndarray,
        keys: Optional[np.ndarray] = None,
        held_out: Optional[np.ndarray] = None,
    ) -> None:
        """Adds a chunk of rows, later in the data than every earlier chunk.

        Args:
            users, movies: integer ids of the rows.
            ratings: their ratings.
            keys: their timestamps, or None to order by position alone.
            held_out: True for held-out rows; None means none are.
        """
        count = len(users)
        if count == 0:
            return
        self._pending.append(
            {
                "users": np.asarray(users, np.int32),
                "movies": np.asarray(movies, np.int32),
                "ratings": np.asarray(ratings, np.float32),
                "keys": np.zeros(count, np.int64) if keys is None else np.asarray(keys, np.int64),
                "held_out": np.zeros(count, bool) if held_out is None else np.asarray(held_out, bool),
            }
        )
        self._pending_rows += count
        if self._pending_rows >= self.compact_rows:
            self._compact()

    @property
    def kept_rows(self) -> int:
        """Ratings held right now (at most users x N x 2 after a compaction, plus the pending chunk)."""
        return len(self._kept["users"]) + self._pending_rows

    def finish(self, user_rows: np.ndarray, movie_rows: np.ndarray, user_count: int) -> RatingHistory:
        """The kept ratings in vocabulary rows.

        Args:
            user_rows, movie_rows: the vocabulary row of each integer user and movie id.
            user_count: user rows (vocabulary size + 1).
        """
        self._compact()
        kept = self._kept
        users = np.asarray(user_rows, np.int32)[kept["users"]]
        order = np.lexsort((kept["keys"], users))  # by user, oldest first within a user (stable: ties by position)
        return RatingHistory(
            user_rows=users[order],
            movie_rows=np.asarray(movie_rows, np.int32)[kept["movies"]][order],
            ratings=kept["ratings"][order],
            held_out=kept["held_out"][order],
            max_per_user=self.max_per_user,
            user_count=user_count,
        )

    def _compact(self) -> None:
        """Keeps, per user and held-out flag, the N ratings with the largest (key, position)."""
        if not self._pending:
            return
        merged = {name: np.concatenate([self._kept[name]] + [c[name] for c in self._pending]) for name in self._kept}
        self._pending, self._pending_rows = [], 0
        group_sizes = np.bincount(merged["users"].astype(np.int64) * 2 + merged["held_out"])
        if group_sizes.max(initial=0) <= self.max_per_user:  # nobody over the cap: nothing to drop, no sort
            self._kept = merged
            return
        # Stable sort: within a user, flag and key, rows keep their data order.
        order = np.lexsort((merged["keys"], merged["held_out"], merged["users"]))
        group = merged["users"][order].astype(np.int64) * 2 + merged["held_out"][order]
        starts = np.r_[True, group[1:] != group[:-1]]
        group_ends = np.flatnonzero(np.r_[starts[1:], True])  # the last position of each group
        from_the_end = group_ends[np.cumsum(starts) - 1] - np.arange(len(group))
        keep = from_the_end < self.max_per_user
        chosen = order[keep]
        chosen.sort()  # back to data order, so later chunks stay after earlier ones
        self._kept = {name: values[chosen] for name, values in merged.items()}


def _empty() -> dict:
    return {
        "users": np.zeros(0, np.int32),
        "movies": np.zeros(0, np.int32),
        "ratings": np.zeros(0, np.float32),
        "keys": np.zeros(0, np.int64),
        "held_out": np.zeros(0, bool),
    }

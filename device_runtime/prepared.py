"""Objects a `Ranker` prepares once and an app reuses: candidate sets and personalized users.

Both are frozen: their arrays are read-only, so one object can be shared by
threads and reused for as many calls as the app likes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np


def read_only(array: np.ndarray) -> np.ndarray:
    """The array, flagged read-only (a frozen object must not be changed through its arrays)."""
    array.setflags(write=False)
    return array


@dataclasses.dataclass(frozen=True)
class CandidateSet:
    """Candidate movies mapped once to the rows of a model's movie vocabulary (`Ranker.candidates`).

    `Ranker.score` and `Ranker.rank` accept it wherever they accept a list of
    titles; it then skips the per-call mapping. After a `Ranker.reload` onto a
    model with another movie vocabulary, it still works (its titles are mapped
    again at each call); prepare it again for full speed.

    Attributes:
        titles: the candidates as text, in input order (duplicates kept).
        unknown_titles: the titles the model does not know, each once, in
            input order; they are scored with the out-of-vocabulary row.
        movies_sha256: the movie vocabulary `rows` index, or None when the model
            has no vocabulary (then the strings signature scores the titles).
        rows: int32 table rows of `titles` (read-only), or None with `movies_sha256`.
    """

    titles: tuple[str, ...]
    unknown_titles: tuple[str, ...]
    movies_sha256: Optional[str]
    rows: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.titles)

    @functools.cached_property
    def encoded(self) -> np.ndarray:
        """The titles as a read-only object array of UTF-8 bytes, for the strings signature."""
        array = np.empty(len(self.titles), dtype=object)
        array[:] = [title.encode("utf-8") for title in self.titles]
        return read_only(array)


@dataclasses.dataclass(frozen=True)
class PersonalizedUser:
    """A user described by their own ratings, folded into a state by one model (`Ranker.personalize`).

    `Ranker.score` and `Ranker.rank` accept it wherever they accept a user id.
    The state belongs to the model it was computed with (`model_checksum`);
    another model refuses it with `ModelMismatchError`: personalize again from
    `history` (or from the app's own, complete history).

    Attributes:
        history: the (title, rating) pairs the state was computed from: known
            titles only, each once with its last rating, the most recent
            `contract.MAX_HISTORY` at most, oldest first.
        user_vector: the state's float32 vector [D] (read-only).
        user_bias: the state's float32 bias [1] (read-only).
        model_checksum: the file checksum of the model that computed the state.
        unknown_titles: titles of the given history the model does not know (skipped).
        dropped: how many of the oldest entries were left out (history longer than
            `contract.MAX_HISTORY`).
        replaced: how many ratings were superseded by a later rating of the same title.
    """

    history: tuple[tuple[str, float], ...]
    user_vector: np.ndarray = dataclasses.field(repr=False, compare=False)
    user_bias: np.ndarray = dataclasses.field(repr=False, compare=False)
    model_checksum: str
    unknown_titles: tuple[str, ...] = ()
    dropped: int = 0
    replaced: int = 0

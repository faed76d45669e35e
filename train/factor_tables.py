"""Factor tables, the form a table model ships in.

    rating(user, movie) = clip(global_mean + user_bias[u] + movie_bias[m] + <user_vectors[u], movie_vectors[m]>, 1, 5)

with u, m the rows of the user id and the movie title: row k+1 is vocabulary
entry k, row 0 every unknown id. `fold` turns any movies x users prediction
matrix into such tables of a chosen rank; `train.serving.FactorServing`
exports them with every signature of the device contract.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from train.data import MAX_RATING, MIN_RATING


@dataclasses.dataclass(frozen=True)
class FactorTables:
    """A biased factor model in index space (row 0 = unknown id, row k+1 = vocabulary entry k).

    Attributes:
        global_mean: the rating's constant term.
        user_bias: float32 [len(users) + 1].
        movie_bias: float32 [len(movies) + 1].
        user_vectors: float32 [len(users) + 1, rank].
        movie_vectors: float32 [len(movies) + 1, rank].
        users, movies: the vocabularies.
    """

    global_mean: float
    user_bias: np.ndarray
    movie_bias: np.ndarray
    user_vectors: np.ndarray
    movie_vectors: np.ndarray
    users: tuple[str, ...]
    movies: tuple[str, ...]

    def __post_init__(self):
        rank = self.user_vectors.shape[1] if self.user_vectors.ndim == 2 else -1
        expected = {
            "user_bias": (len(self.users) + 1,),
            "movie_bias": (len(self.movies) + 1,),
            "user_vectors": (len(self.users) + 1, rank),
            "movie_vectors": (len(self.movies) + 1, rank),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")

    @property
    def rank(self) -> int:
        return int(self.user_vectors.shape[1])

    def ratings(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """What the device graph computes, in numpy: clipped ratings of (user row, movie row) pairs."""
        scores = (
            self.global_mean
            + self.user_bias[user_rows]
            + self.movie_bias[movie_rows]
            + np.sum(self.user_vectors[user_rows] * self.movie_vectors[movie_rows], axis=1)
        )
        return np.clip(scores, MIN_RATING, MAX_RATING)

    def rating_matrix(self) -> np.ndarray:
        """Unclipped ratings of every movie row (axis 0) for every user row (axis 1), float64."""
        vectors = self.movie_vectors.astype(np.float64) @ self.user_vectors.astype(np.float64).T
        return self.global_mean + self.movie_bias[:, None] + self.user_bias[None, :] + vectors


def fold(ratings: np.ndarray, rank: int, users: Sequence[str], movies: Sequence[str]) -> FactorTables:
    """Double-centres a movies x users rating matrix and cuts the rest to `rank` by SVD.

    Args:
        ratings: [len(movies) + 1, len(users) + 1]; row and column 0 (the
            unknown ids) are ignored.
        rank: the width of the user and movie vectors.
        users, movies: the vocabularies.

    Returns:
        Tables whose known rows reproduce `ratings` up to the rank cut: the
        global mean, each movie's and user's mean offset, and the best rank-k
        fit of the remainder. Row 0 is zeros, so an unknown user gets the
        movie's mean rating over all users and an unknown movie the user's
        mean over all movies.
    """
    known = np.asarray(ratings, np.float64)[1:, 1:]
    global_mean = known.mean()
    movie_bias = known.mean(axis=1) - global_mean
    user_bias = known.mean(axis=0) - global_mean
    remainder = known - global_mean - movie_bias[:, None] - user_bias[None, :]
    # TensorFlow's SVD, not numpy's: on a busy 2-core machine numpy's OpenBLAS threads spin
    # (10-14 s for 1664 x 943, measured) where TensorFlow's takes 1.7 s.
    singular, left, right = (part.numpy() for part in tf.linalg.svd(tf.constant(remainder)))
    root = np.sqrt(singular[:rank])
    movie_vectors = np.zeros((known.shape[0] + 1, rank), np.float32)
    user_vectors = np.zeros((known.shape[1] + 1, rank), np.float32)
    movie_vectors[1:, : len(root)] = left[:, :rank] * root
    user_vectors[1:, : len(root)] = right[:, :rank] * root
    return FactorTables(
        global_mean=float(global_mean),
        user_bias=np.concatenate([[0.0], user_bias]).astype(np.float32),
        movie_bias=np.concatenate([[0.0], movie_bias]).astype(np.float32),
        user_vectors=user_vectors,
        movie_vectors=movie_vectors,
        users=tuple(users),
        movies=tuple(movies),
    )

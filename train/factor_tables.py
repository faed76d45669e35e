"""Factor tables, the form a table model ships in, and the device graph built from them.

    rating(user, movie) = clip(global_mean + user_bias[u] + movie_bias[m] + <user_vectors[u], movie_vectors[m]>, 1, 5)

with u, m the rows of the user id and the movie title: row k+1 is vocabulary
entry k, row 0 every unknown id. `fold` turns any movies x users prediction
matrix into such tables of a chosen rank; `serving_module` builds the exported
`tf.Module` from them: two string-to-row hash tables, gathers, one dot
product and a clip, all builtin TFLite ops.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from device_runtime.signature import ITEM_INPUT, OUTPUT, USER_INPUT
from train.data import MAX_RATING, MIN_RATING

UNKNOWN_ROW = 0


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


class FactorTablesModule(tf.Module):
    """The exported model: hash-table lookups, gathers, one dot product, clip."""

    def __init__(self, tables: FactorTables):
        super().__init__()
        self.global_mean = tf.constant(tables.global_mean, tf.float32)
        self.user_bias = tf.constant(tables.user_bias, tf.float32)
        self.movie_bias = tf.constant(tables.movie_bias, tf.float32)
        self.user_vectors = tf.constant(tables.user_vectors, tf.float32)
        self.movie_vectors = tf.constant(tables.movie_vectors, tf.float32)
        self.user_rows = _row_table(tables.users)
        self.movie_rows = _row_table(tables.movies)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=USER_INPUT),
            tf.TensorSpec([None], tf.string, name=ITEM_INPUT),
        ]
    )
    def serve(self, user_id, movie_title):
        user = self.user_rows.lookup(user_id)
        movie = self.movie_rows.lookup(movie_title)
        vectors = tf.gather(self.user_vectors, user) * tf.gather(self.movie_vectors, movie)
        score = self.global_mean + tf.gather(self.user_bias, user) + tf.gather(self.movie_bias, movie)
        score += tf.reduce_sum(vectors, axis=1)
        # The reshape gives the output a static rank, so the .tflite signature says [-1].
        return {OUTPUT: tf.reshape(tf.clip_by_value(score, MIN_RATING, MAX_RATING), [-1])}


def serving_module(tables: FactorTables) -> tf.Module:
    """The exportable module: `serve(user_id, movie_title) -> {"rating": [N]}` over `tables`."""
    return FactorTablesModule(tables)


def _row_table(ids: Sequence[str]) -> tf.lookup.StaticHashTable:
    rows = tf.range(1, len(ids) + 1, dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tf.constant(list(ids)), rows), UNKNOWN_ROW)

"""The exported model: one `tf.Module` per model family, answering every signature of the contract.

`device_runtime.contract` says what each signature takes and returns; this
module builds them in TensorFlow so that the converter turns them into one
`.tflite` with several signatures over the same constant tables.

- `FactorServing` serves a factor model (the `default` blend and the `mf`
  preset, folded into tables): global mean + user bias + movie bias + the dot
  product of a user and a movie vector, clipped to 1..5. It answers all seven
  signatures, including the personalized ones: a history is folded into a user
  state by ridge regression against the frozen movie vectors (solved in the
  graph with conjugate gradients, because `tf.linalg.solve` has no TFLite
  builtin), so an app in any language can personalize with the same file.
- `TowerServing` serves the tutorial's tower (embeddings and dense layers):
  the strings signature and the two index-space signatures.

Methods are named `score_*`, never `serve`: TFLite's converter takes a
SavedModel whose root has a `serve` attribute for a Keras `model.export`
artifact and converts its `serving_default` alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from device_runtime import contract
from train.factor_tables import FactorTables

_MIN = contract.MIN_RATING
_MAX = contract.MAX_RATING


@dataclasses.dataclass(frozen=True)
class FoldIn:
    """How a history becomes a user state: ridge regression against the frozen movie vectors.

    The state (vector v, bias b) minimises
        sum_h (rating_h - global_mean - movie_bias_h - b - v . movie_vector_h)^2
        + vector_ridge * |v|^2 + bias_ridge * b^2,
    so an empty history gives v = 0, b = 0: exactly the unknown user.

    Attributes:
        vector_ridge, bias_ridge: the penalties, chosen on validation rows in training.
    """

    vector_ridge: float
    bias_ridge: float

    def __post_init__(self):
        if not (self.vector_ridge > 0 and self.bias_ridge > 0):
            raise ValueError(f"ridge penalties must be > 0, got {self.vector_ridge}, {self.bias_ridge}")


def _string_lookup(keys: Sequence[str]) -> tf.lookup.StaticHashTable:
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(keys), tf.string), tf.range(1, len(keys) + 1, dtype=tf.int64)
    )
    return tf.lookup.StaticHashTable(initializer, contract.OOV_ROW)


def _in_table(rows: tf.Tensor, table_rows: int) -> tf.Tensor:
    """Rows outside 0..table_rows-1 become the OOV row."""
    rows = tf.cast(rows, tf.int32)
    return tf.where((rows >= 0) & (rows < table_rows), rows, tf.zeros_like(rows))


def _clamped_k(k: tf.Tensor, catalog: int) -> tf.Tensor:
    return tf.clip_by_value(tf.reshape(k, []), 1, catalog)


def _spec(name: str, dtype, shape) -> tf.TensorSpec:
    return tf.TensorSpec(shape, dtype, name=name)


_USER_ID = _spec(contract.USER_ID, tf.string, [None])
_MOVIE_TITLE = _spec(contract.MOVIE_TITLE, tf.string, [None])
_USER_ROW = _spec(contract.USER_ROW, tf.int32, [1])
_ITEM_ROWS = _spec(contract.ITEM_ROWS, tf.int32, [None])
_K = _spec(contract.K, tf.int32, [1])
_HISTORY_TITLES = _spec(contract.HISTORY_TITLES, tf.string, [None])
_HISTORY_RATINGS = _spec(contract.HISTORY_RATINGS, tf.float32, [None])
_USER_BIAS = _spec(contract.USER_BIAS, tf.float32, [1])


class FactorServing(tf.Module):
    """A factor model's every signature, over one set of constant tables."""

    def __init__(self, tables: FactorTables, fold_in: FoldIn):
        super().__init__()
        self.dimension = tables.rank
        self.catalog = len(tables.movies)
        self.user_table_rows = len(tables.users) + 1
        # A float16 file rounds every constant: a global mean near 3.5 by up to 1e-3, the same shift for every score.
        # The mean is served as its nearest float16 value and the rest moved into the movie biases, which float16
        # rounds far more finely; every score adds exactly one movie bias (row 0, the unknown movie, included), so
        # the scores are the tables' own.
        mean = float(np.float16(tables.global_mean))
        self.global_mean = tf.constant(mean, tf.float32)
        self.user_bias = tf.constant(tables.user_bias, tf.float32)
        self.movie_bias = tf.constant(tables.movie_bias + np.float32(tables.global_mean - mean), tf.float32)
        self.user_vectors = tf.constant(tables.user_vectors, tf.float32)
        self.movie_vectors = tf.constant(tables.movie_vectors, tf.float32)
        self.ridge = tf.constant([fold_in.vector_ridge] * self.dimension + [fold_in.bias_ridge], tf.float32)
        self.user_lookup = _string_lookup(tables.users)
        self.movie_lookup = _string_lookup(tables.movies)
        user_vector = _spec(contract.USER_VECTOR, tf.float32, [self.dimension])
        # Bind the signatures now that the state dimension is known.
        self.score_rows_for_state = tf.function(
            self._score_rows_for_state, input_signature=[user_vector, _USER_BIAS, _ITEM_ROWS]
        )
        self.top_k_for_state = tf.function(self._top_k_for_state, input_signature=[user_vector, _USER_BIAS, _K])

    def signatures(self) -> dict:
        """Signature key -> concrete function, for `tf.saved_model.save`."""
        return {
            contract.STRINGS: self.score_strings,
            contract.SCORE_ROWS: self.score_rows,
            contract.TOP_K: self.top_k,
            contract.SCORE_HISTORY: self.score_history,
            contract.USER_STATE: self.user_state,
            contract.SCORE_ROWS_FOR_STATE: self.score_rows_for_state,
            contract.TOP_K_FOR_STATE: self.top_k_for_state,
        }

    # --- the score, one formula for every signature

    def _scores(self, user_vector, user_bias, movie_rows):
        """[N] scores for one user (vector [D], bias [1]) and movie rows [N]."""
        raw = (
            self.global_mean
            + user_bias
            + tf.gather(self.movie_bias, movie_rows)
            + tf.reduce_sum(tf.gather(self.movie_vectors, movie_rows) * user_vector, axis=1)
        )
        return tf.reshape(tf.clip_by_value(raw, _MIN, _MAX), [-1])

    def _best(self, user_vector, user_bias, k):
        """The k best catalog rows (1..n) for one user, best first, ties in row order."""
        # The constants are added to computed tensors one at a time: the converter would fold
        # global_mean + movie_bias into one constant of values near 3.5, which float16 rounds by up to 2e-3.
        raw = (tf.linalg.matvec(self.movie_vectors, user_vector) + self.movie_bias) + (self.global_mean + user_bias)
        catalog_scores = tf.clip_by_value(raw, _MIN, _MAX)[1:]  # never the OOV row
        scores, positions = tf.math.top_k(catalog_scores, k=_clamped_k(k, self.catalog))
        return {contract.ITEM_ROWS: positions + 1, contract.RATING: scores}

    def _known_user(self, user_row):
        row = _in_table(tf.reshape(user_row, []), self.user_table_rows)
        return tf.gather(self.user_vectors, row), tf.reshape(tf.gather(self.user_bias, row), [1])

    @tf.function(input_signature=[_USER_ID, _MOVIE_TITLE])
    def score_strings(self, user_id, movie_title):
        users = self.user_lookup.lookup(user_id)
        movies = self.movie_lookup.lookup(movie_title)
        raw = (
            self.global_mean
            + tf.gather(self.user_bias, users)
            + tf.gather(self.movie_bias, movies)
            + tf.reduce_sum(tf.gather(self.user_vectors, users) * tf.gather(self.movie_vectors, movies), axis=1)
        )
        return {contract.RATING: tf.reshape(tf.clip_by_value(raw, _MIN, _MAX), [-1])}

    @tf.function(input_signature=[_USER_ROW, _ITEM_ROWS])
    def score_rows(self, user_row, item_rows):
        user_vector, user_bias = self._known_user(user_row)
        return {contract.RATING: self._scores(user_vector, user_bias, _in_table(item_rows, self.catalog + 1))}

    @tf.function(input_signature=[_USER_ROW, _K])
    def top_k(self, user_row, k):
        user_vector, user_bias = self._known_user(user_row)
        return self._best(user_vector, user_bias, k)

    # --- personalization

    def _fold_in(self, history_titles, history_ratings):
        """Ridge regression of a history on the movie vectors, solved by conjugate gradients.

        The system (A^T A + diag(ridge)) x = A^T y has A = [movie vectors | 1] of
        the known history titles and y their ratings minus the global mean and
        the movie biases; x = [user vector, user bias]. It is symmetric positive
        definite and of size D + 1, so D + 1 steps of conjugate gradients solve
        it (to float32 rounding). An empty history gives A = 0, y = 0 and x = 0.
        """
        rows = self.movie_lookup.lookup(history_titles)
        known = tf.cast(rows > contract.OOV_ROW, tf.float32)
        design = tf.concat([tf.gather(self.movie_vectors, rows), tf.ones_like(known)[:, None]], axis=1)
        design = design * known[:, None]
        residual = (history_ratings - self.global_mean - tf.gather(self.movie_bias, rows)) * known
        gram = tf.matmul(design, design, transpose_a=True)
        target = tf.linalg.matvec(design, residual, transpose_a=True)

        def step(i, x, r, p, rr):
            # (A^T A + diag(ridge)) p, without a (D + 1)^2 diagonal matrix (a MATRIX_DIAG op or constant).
            gram_p = tf.linalg.matvec(gram, p) + self.ridge * p
            alpha = tf.math.divide_no_nan(rr, tf.reduce_sum(p * gram_p))
            x = x + alpha * p
            r = r - alpha * gram_p
            rr_next = tf.reduce_sum(r * r)
            p = r + tf.math.divide_no_nan(rr_next, rr) * p
            return i + 1, x, r, p, rr_next

        start = (tf.constant(0), tf.zeros_like(target), target, target, tf.reduce_sum(target * target))
        _, solution, _, _, _ = tf.while_loop(lambda i, *_: i < self.dimension + 1, step, start)
        return solution[: self.dimension], solution[self.dimension :]

    @tf.function(input_signature=[_HISTORY_TITLES, _HISTORY_RATINGS, _MOVIE_TITLE])
    def score_history(self, history_titles, history_ratings, movie_title):
        user_vector, user_bias = self._fold_in(history_titles, history_ratings)
        return {contract.RATING: self._scores(user_vector, user_bias, self.movie_lookup.lookup(movie_title))}

    @tf.function(input_signature=[_HISTORY_TITLES, _HISTORY_RATINGS])
    def user_state(self, history_titles, history_ratings):
        user_vector, user_bias = self._fold_in(history_titles, history_ratings)
        return {contract.USER_VECTOR: user_vector, contract.USER_BIAS: user_bias}

    def _score_rows_for_state(self, user_vector, user_bias, item_rows):
        return {contract.RATING: self._scores(user_vector, user_bias, _in_table(item_rows, self.catalog + 1))}

    def _top_k_for_state(self, user_vector, user_bias, k):
        return self._best(user_vector, user_bias, k)


class TowerServing(tf.Module):
    """The tutorial's tower (user and movie embeddings, dense layers): strings and index space.

    Args:
        user_embedding, movie_embedding: the Keras `Embedding` layers, row 0 = OOV.
        score_layers: the dense layers from the concatenated embeddings to one score.
        user_lookup, movie_lookup: the string lookups feeding the embeddings
            (Keras `StringLookup`, OOV index 0).
    """

    def __init__(self, user_lookup, user_embedding, movie_lookup, movie_embedding, score_layers):
        super().__init__()
        self.user_lookup, self.user_embedding = user_lookup, user_embedding
        self.movie_lookup, self.movie_embedding = movie_lookup, movie_embedding
        self.score_layers = score_layers
        self.user_table_rows = int(user_embedding.input_dim)
        self.movie_table_rows = int(movie_embedding.input_dim)

    @classmethod
    def from_tower(cls, tower) -> "TowerServing":
        """Serves a fitted `train.model.RankingModel` (each embedding a Keras Sequential of lookup and Embedding)."""
        user_lookup, user_embedding = tower.user_embeddings.layers
        movie_lookup, movie_embedding = tower.movie_embeddings.layers
        return cls(user_lookup, user_embedding, movie_lookup, movie_embedding, tower.ratings)

    def signatures(self) -> dict:
        """Signature key -> concrete function, for `tf.saved_model.save`."""
        return {contract.STRINGS: self.score_strings, contract.SCORE_ROWS: self.score_rows, contract.TOP_K: self.top_k}

    def _scores(self, user_embeddings, movie_embeddings):
        scores = self.score_layers(tf.concat([user_embeddings, movie_embeddings], axis=1))
        return tf.reshape(scores, [-1])

    @tf.function(input_signature=[_USER_ID, _MOVIE_TITLE])
    def score_strings(self, user_id, movie_title):
        users = self.user_embedding(self.user_lookup(user_id))
        movies = self.movie_embedding(self.movie_lookup(movie_title))
        return {contract.RATING: self._scores(users, movies)}

    @tf.function(input_signature=[_USER_ROW, _ITEM_ROWS])
    def score_rows(self, user_row, item_rows):
        movies = self.movie_embedding(_in_table(item_rows, self.movie_table_rows))
        user = self.user_embedding(_in_table(user_row, self.user_table_rows))
        users = tf.repeat(user, tf.shape(movies)[0], axis=0)
        return {contract.RATING: self._scores(users, movies)}

    @tf.function(input_signature=[_USER_ROW, _K])
    def top_k(self, user_row, k):
        # The whole table, OOV row included, so the converter keeps one copy of it (a gather of
        # rows 1..n would be folded into a second constant); the OOV row's score is dropped after.
        movies = self.movie_embedding.embeddings
        user = self.user_embedding(_in_table(user_row, self.user_table_rows))
        scores = self._scores(tf.repeat(user, self.movie_table_rows, axis=0), movies)[1:]
        best, positions = tf.math.top_k(scores, k=_clamped_k(k, self.movie_table_rows - 1))
        return {contract.ITEM_ROWS: positions + 1, contract.RATING: best}


def export_saved_model(module, path: Path) -> None:
    """Saves a `FactorServing` or `TowerServing` with every signature it answers."""
    tf.saved_model.save(module, str(path), signatures=module.signatures())


def strings_scorer(module) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """`score(user_ids, movie_titles) -> numpy [N]` through a module's strings signature (for training's figures)."""
    return lambda users, movies: module.score_strings(tf.constant(users), tf.constant(movies))[contract.RATING].numpy()

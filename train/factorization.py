"""SVD++ with side features: a TFRS ranking model over string ids, trained with Keras' `fit`.

    rating(u, m) = global_mean + b_u + b_m + <p_u, q_m>
    p_u = P[u] + sum_k E_k[feature k of u] + |N(u)|^-1/2 sum_{j in N(u)} Y[j]
    q_m = Q[m] + sum_g w_mg G[g] + R[release-year bucket of m]
    b_u, b_m: an id bias plus the same side features' biases

N(u) is the set of movies u rated in the training rows (SVD++'s implicit
feedback); the user features are age group, gender, occupation and zip
prefix, the movie features its genres (weights w_mg sum to 1) and release year
(`train.side_features`). The loss of each example is its squared error plus
L2 on its own composed p_u, q_m (so frequent ids are regularised more) and
b_u, b_m; per-example losses are averaged over the global batch with
`tf.nn.compute_average_loss`, as `train.model` does, so the same model trains
under a multi-worker strategy.

Everything the model looks up besides its weights (the vocabularies, the side
tables, N(u)) is built before `fit` and held as constants; a batch is a dict
of `user_id`, `movie_title` and `user_rating` tensors, the format of every
training path of the kit (in-memory rows and streamed shards alike).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Optional

import numpy as np

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from device_runtime.signature import ITEM_INPUT, USER_INPUT
from train.data import MAX_RATING, MIN_RATING
from train.early_stopping import TrainingCurve, fit_with_early_stopping
from train.errors import ConfigError
from train.factor_tables import FactorTables
from train.history import ImplicitFeedback, implicit_feedback  # noqa: F401  (implicit_feedback: the blend's)
from train.model import TrainingData, dataset_rmse
from train.side_features import YEAR_BUCKETS, SideFeatures


USER_BLOCK = 16_384  # users whose factor-table rows are computed at once
DENSE_GRADIENT_BATCHES = 4  # under a strategy, tables of at most this many global batches of rows get dense gradients


@dataclasses.dataclass(frozen=True)
class FactorizationConfig:
    """Settings of the factorisation model.

    Attributes:
        dimension: width of every user and movie vector.
        vector_l2: L2 weight on each example's composed user and movie vectors.
        bias_l2: L2 weight on each example's composed user and movie biases.
        init_stddev: standard deviation of the initial vectors (biases start at 0).
    """

    dimension: int = 64
    vector_l2: float = 0.1
    bias_l2: float = 0.001
    init_stddev: float = 0.01

    def __post_init__(self):
        if self.dimension < 1:
            raise ConfigError(f"dimension must be >= 1, got {self.dimension}")
        if self.vector_l2 < 0 or self.bias_l2 < 0:
            raise ConfigError(f"L2 weights must be >= 0, got {self.vector_l2} and {self.bias_l2}")


@dataclasses.dataclass(frozen=True)
class LookupTables:
    """What the model looks up besides its weights, all built before `fit` from training rows.

    Attributes:
        users, movies: the vocabularies (row k+1 is entry k; row 0 every unknown id).
        side: the side-feature tables over them.
        rated: each user row's rated movie rows, N(u).
    """

    users: tuple[str, ...]
    movies: tuple[str, ...]
    side: SideFeatures
    rated: ImplicitFeedback

    def __post_init__(self):
        if len(self.side.user_features) != len(self.users) + 1 or len(self.side.movie_year) != len(self.movies) + 1:
            raise ValueError("the side tables do not match the vocabularies")
        if self.rated.user_rows != len(self.users) + 1:
            raise ValueError(f"the rated-movie sets have {self.rated.user_rows} user rows, expected one per user + 1")


class FactorizationModel(tfrs.models.Model):
    """SVD++ with side features over the vocabularies of `tables` (see the module)."""

    def __init__(self, tables: LookupTables, config: FactorizationConfig, mean_rating: float):
        super().__init__()
        self.tables = tables
        self.config = config
        self.user_count, self.movie_count = len(tables.users) + 1, len(tables.movies) + 1
        self.user_lookup = tf_keras.layers.StringLookup(vocabulary=list(tables.users), mask_token=None)
        self.movie_lookup = tf_keras.layers.StringLookup(vocabulary=list(tables.movies), mask_token=None)
        side = tables.side
        self.user_features = tf.constant(side.user_features)
        self.movie_genres = tf.constant(side.movie_genres)
        self.movie_year = tf.constant(side.movie_year)
        self.rated_movies = _ragged(tables.rated)

        dimension = config.dimension
        self.user_embedding = self._vectors(self.user_count)
        self.movie_embedding = self._vectors(self.movie_count)
        self.implicit_vectors = self.add_weight(
            name="implicit_vectors",
            shape=(self.movie_count, dimension),
            initializer=tf_keras.initializers.RandomNormal(stddev=config.init_stddev),
        )
        self.user_id_bias = _biases(self.user_count)
        self.movie_id_bias = _biases(self.movie_count)
        self.user_feature_embeddings = [self._vectors(size) for size in side.user_feature_sizes]
        self.user_feature_biases = [_biases(size) for size in side.user_feature_sizes]
        initializer = tf_keras.initializers.RandomNormal(stddev=config.init_stddev)
        self.genre_embedding = tf_keras.layers.Dense(dimension, use_bias=False, kernel_initializer=initializer)
        self.genre_bias = tf_keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")
        self.year_embedding = self._vectors(YEAR_BUCKETS)
        self.year_bias = _biases(YEAR_BUCKETS)
        self.global_mean = self.add_weight(
            name="global_mean", shape=(), initializer=tf_keras.initializers.Constant(mean_rating)
        )
        # Per-example losses, averaged over the global batch in compute_loss (see train.model).
        self.task = tfrs.tasks.Ranking(
            loss=tf_keras.losses.MeanSquaredError(reduction=tf_keras.losses.Reduction.NONE),
            metrics=[tf_keras.metrics.RootMeanSquaredError()],
        )
        # Create every weight now rather than while `fit` traces its first step, so that a
        # seed gives the same initial weights with or without a distribution strategy.
        self({USER_INPUT: tf.constant([""]), ITEM_INPUT: tf.constant([""])})

    def _vectors(self, rows: int) -> tf_keras.layers.Embedding:
        initializer = tf_keras.initializers.RandomNormal(stddev=self.config.init_stddev)
        return tf_keras.layers.Embedding(rows, self.config.dimension, embeddings_initializer=initializer)

    def call(self, inputs):
        """Unclipped predicted ratings [B] for a dict of `user_id` and `movie_title` strings."""
        return self._terms(inputs)[0]

    def train_step(self, inputs):
        """TFRS's train step, with small tables' gradients made dense under a distribution strategy.

        A sparse (embedding) gradient holds one row per example and is
        all-gathered with collectives of its own, table after table; dense
        gradients are all-reduced together, packed into one collective. A table
        of at most `DENSE_GRADIENT_BATCHES` global batches of rows is sent dense:
        on two workers (MovieLens 100K, batch 1024) that made epochs 2.5 times
        faster (measured); a table much larger than a batch (millions of users,
        small batches) stays sparse, so a step never sends the whole table. Adam's
        update is the same either way (it decays every row's moments at each
        step); only the sums' rounding differs. Without a strategy (the blend's
        member) nothing changes.
        """
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
        gradients = tape.gradient(loss, self.trainable_variables)
        if tf.distribute.has_strategy():
            replica_batch = inputs["user_rating"].shape[0]
            rows_limit = None
            if replica_batch is not None:
                rows_limit = DENSE_GRADIENT_BATCHES * replica_batch * tf.distribute.get_strategy().num_replicas_in_sync
            gradients = [
                tf.convert_to_tensor(gradient)
                if isinstance(gradient, tf.IndexedSlices) and (rows_limit is None or variable.shape[0] <= rows_limit)
                else gradient
                for gradient, variable in zip(gradients, self.trainable_variables)
            ]
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        metrics = {metric.name: metric.result() for metric in self.metrics}
        metrics["loss"] = loss
        return metrics

    def compute_loss(self, features, training=False):
        predictions, user_vectors, movie_vectors, user_bias, movie_bias = self._terms(features)
        labels = tf.reshape(features["user_rating"], [-1, 1])
        squared_errors = self.task(labels=labels, predictions=tf.reshape(predictions, [-1, 1]))
        vector_norms = tf.reduce_sum(tf.square(user_vectors) + tf.square(movie_vectors), axis=1)
        bias_norms = tf.square(user_bias) + tf.square(movie_bias)
        per_example = squared_errors + self.config.vector_l2 * vector_norms + self.config.bias_l2 * bias_norms
        return tf.nn.compute_average_loss(per_example)

    def _terms(self, features):
        """Predictions [B] and the composed user/movie vectors [B, d] and biases [B] of a batch."""
        user_vectors, user_bias = self._user_terms(self.user_lookup(features[USER_INPUT]), self.rated_movies)
        movie_vectors, movie_bias = self._movie_terms(self.movie_lookup(features[ITEM_INPUT]))
        predictions = self.global_mean + user_bias + movie_bias + tf.reduce_sum(user_vectors * movie_vectors, axis=1)
        return predictions, user_vectors, movie_vectors, user_bias, movie_bias

    def _user_terms(self, user_rows: tf.Tensor, rated: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Composed user vectors [B, d] and biases [B] of user rows [B]."""
        features = tf.gather(self.user_features, user_rows)
        vectors = self.user_embedding(user_rows) + self._implicit_vectors(user_rows, rated)
        bias = self.user_id_bias(user_rows)
        for k, (embedding, feature_bias) in enumerate(zip(self.user_feature_embeddings, self.user_feature_biases)):
            vectors += embedding(features[:, k])
            bias += feature_bias(features[:, k])
        return vectors, tf.squeeze(bias, axis=1)

    def _implicit_vectors(self, user_rows: tf.Tensor, rated: tf.RaggedTensor) -> tf.Tensor:
        """|N(u)|^-1/2 sum_{j in N(u)} Y[j] for user rows [B], computed once per distinct user.

        The batch's distinct users and their rated movies form a sparse [users, movies]
        matrix of weights |N(u)|^-1/2; one sparse-dense product with Y gives every sum.
        Its cost grows with the batch's ratings, not the data's, and Y's gradient
        comes out dense (no per-step de-duplication of sparse rows).
        """
        distinct, position = tf.unique(user_rows)
        movies = tf.gather(rated, distinct)
        rows = movies.value_rowids()
        weights = tf.gather(tf.math.rsqrt(tf.maximum(tf.cast(movies.row_lengths(), tf.float32), 1.0)), rows)
        shape = tf.cast(tf.stack([tf.size(distinct), self.movie_count]), tf.int64)
        sets = tf.SparseTensor(tf.stack([rows, tf.cast(movies.flat_values, tf.int64)], axis=1), weights, shape)
        return tf.gather(tf.sparse.sparse_dense_matmul(sets, self.implicit_vectors), position)

    def _movie_terms(self, movie_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Composed movie vectors [B, d] and biases [B] of movie rows [B]."""
        genres = tf.gather(self.movie_genres, movie_rows)
        year = tf.gather(self.movie_year, movie_rows)
        vectors = self.movie_embedding(movie_rows) + self.genre_embedding(genres) + self.year_embedding(year)
        bias = self.movie_id_bias(movie_rows) + self.genre_bias(genres) + self.year_bias(year)
        return vectors, tf.squeeze(bias, axis=1)

    def factor_tables(self, rated: Optional[ImplicitFeedback] = None) -> FactorTables:
        """The model as factor tables over every user and movie row (row 0: the unknown ids' terms).

        Args:
            rated: N(u) for the user vectors; None uses the training one. Later
                ratings can move a user's vector this way without refitting.
        """
        ragged = self.rated_movies if rated is None else _ragged(rated)
        # Users a block at a time: every term is a [users, d] tensor, and there are millions of users at scale.
        vector_blocks, bias_blocks = [], []
        for start in range(0, self.user_count, USER_BLOCK):
            vectors, bias = self._user_terms(tf.range(start, min(start + USER_BLOCK, self.user_count)), ragged)
            vector_blocks.append(vectors.numpy())
            bias_blocks.append(bias.numpy())
        user_vectors, user_bias = np.concatenate(vector_blocks), np.concatenate(bias_blocks)
        movie_vectors, movie_bias = self._movie_terms(tf.range(self.movie_count))
        return FactorTables(
            global_mean=float(self.global_mean.numpy()),
            user_bias=user_bias,
            movie_bias=movie_bias.numpy(),
            user_vectors=user_vectors,
            movie_vectors=movie_vectors.numpy(),
            users=self.tables.users,
            movies=self.tables.movies,
        )


def _biases(rows: int) -> tf_keras.layers.Embedding:
    return tf_keras.layers.Embedding(rows, 1, embeddings_initializer="zeros")


def _ragged(rated: ImplicitFeedback) -> tf.RaggedTensor:
    return tf.RaggedTensor.from_row_splits(tf.constant(rated.movie_rows), tf.constant(rated.row_splits), validate=False)


@dataclasses.dataclass(frozen=True)
class FittedFactorization:
    """A fitted factorisation model and how its training went."""

    model: FactorizationModel
    curve: TrainingCurve
    fit_seconds: float


def fit_factorization(
    data: TrainingData,
    tables: LookupTables,
    config: FactorizationConfig,
    *,
    mean_rating: float,
    learning_rate,
    epochs: int,
    patience: int,
    seed: int,
    strategy: Optional[tf.distribute.Strategy] = None,
) -> FittedFactorization:
    """Builds the model and fits it with Adam and the kit's early stopping.

    Args:
        data: training batches (dicts of user_id, movie_title, user_rating) and
            the validation batches for early stopping (None: every epoch, last weights).
        tables: the vocabularies, side tables and N(u), from the training rows
            the model is fitted on only.
        config: the model's settings.
        mean_rating: the training rows' mean rating (the global mean's start).
        learning_rate, epochs, patience, seed: Adam's rate (a number or a Keras
            schedule), the maximum epochs, the early-stopping patience and the
            seed of the initial weights.
        strategy: a tf.distribute strategy (batches are then global batches), or None.

    Returns:
        The model with the kept epoch's weights, its curve and fit time.
    """
    tf_keras.utils.set_random_seed(seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = FactorizationModel(tables, config, mean_rating)
        model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate))
    if strategy is not None:
        model.distribute_reduction_method = "first"  # as in train.model.fit_model
    score = None
    if data.validation is not None:

        @tf.function
        def predict(users, movies):
            return tf.clip_by_value(model({USER_INPUT: users, ITEM_INPUT: movies}), MIN_RATING, MAX_RATING)

        def score() -> float:
            return dataset_rmse(predict, data.validation)

    started = time.perf_counter()
    curve = fit_with_early_stopping(
        model,
        data.batches,
        epochs=epochs,
        steps_per_epoch=data.steps_per_epoch,
        score=score,
        patience=patience,
        name="matrix factorisation",
    )
    return FittedFactorization(model, curve, time.perf_counter() - started)

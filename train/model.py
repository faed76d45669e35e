"""Presets, the TFRS ranking model and its training (`train.serving` exports it)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Optional, Sequence

import numpy as np

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from device_runtime.signature import ITEM_INPUT, USER_INPUT
from train.config import Optimizer, TrainConfig
from train.data import Ratings
from train.early_stopping import TrainingCurve, fit_with_early_stopping
from train.metrics import rmse


class RankingModel(tf_keras.Model):
    """The tutorial's ranking tower: lookups, embeddings, dense layers, one score."""

    def __init__(self, users: Sequence[str], movies: Sequence[str], config: TrainConfig):
        super().__init__()
        dimension = config.embedding_dimension
        # One extra embedding row holds every out-of-vocabulary id.
        self.user_embeddings = tf_keras.Sequential(
            [
                tf_keras.layers.StringLookup(vocabulary=list(users), mask_token=None),
                tf_keras.layers.Embedding(len(users) + 1, dimension),
            ]
        )
        self.movie_embeddings = tf_keras.Sequential(
            [
                tf_keras.layers.StringLookup(vocabulary=list(movies), mask_token=None),
                tf_keras.layers.Embedding(len(movies) + 1, dimension),
            ]
        )
        layers = [tf_keras.layers.Dense(width, activation="relu") for width in config.hidden_layers]
        self.ratings = tf_keras.Sequential(layers + [tf_keras.layers.Dense(1)])

    def call(self, inputs):
        user_id, movie_title = inputs
        user_embedding = self.user_embeddings(user_id)
        movie_embedding = self.movie_embeddings(movie_title)
        return self.ratings(tf.concat([user_embedding, movie_embedding], axis=1))


class MovielensModel(tfrs.models.Model):
    """The tutorial's TFRS model: the ranking tower plus a Ranking task (MSE, RMSE)."""

    def __init__(self, users: Sequence[str], movies: Sequence[str], config: TrainConfig):
        super().__init__()
        self.ranking_model = RankingModel(users, movies, config)
        # Per-example losses, averaged below over the *global* batch: under a
        # multi-worker strategy each replica sees a slice of the batch and the
        # gradients are summed across replicas (TensorFlow's documented recipe).
        # On one worker this is the tutorial's mean squared error.
        self.task = tfrs.tasks.Ranking(
            loss=tf_keras.losses.MeanSquaredError(reduction=tf_keras.losses.Reduction.NONE),
            metrics=[tf_keras.metrics.RootMeanSquaredError()],
        )

    # tf_keras traces `call` by keyword when saving, so the argument must be named `inputs`.
    def call(self, inputs):
        return self.ranking_model((inputs[USER_INPUT], inputs[ITEM_INPUT]))

    def compute_loss(self, features, training=False):
        labels = tf.reshape(features["user_rating"], [-1, 1])  # [B, 1] like the predictions
        predictions = self({USER_INPUT: features[USER_INPUT], ITEM_INPUT: features[ITEM_INPUT]})
        per_example = self.task(labels=labels, predictions=predictions)
        return tf.nn.compute_average_loss(per_example)


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The batches a model is fitted on, however they are stored.

    Attributes:
        batches: training batches of `config.batch_size` rows (the *global*
            batch under a multi-worker strategy), dicts of user_id,
            movie_title and user_rating.
        steps_per_epoch: batches per epoch when `batches` repeats forever
            (streamed data), None to run through `batches` once per epoch.
        validation: validation batches for early stopping, or None. They are
            scored locally on each worker, so every worker stops at the same epoch.
        train_rows: how many training rows one epoch covers.
    """

    batches: tf.data.Dataset
    steps_per_epoch: Optional[int]
    validation: Optional[tf.data.Dataset]
    train_rows: int


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A fitted model and the figures of its training."""

    model: MovielensModel
    config: TrainConfig
    curve: TrainingCurve
    fit_seconds: float


VALIDATION_BATCH = 4096


def rows_dataset(rows: Ratings) -> tf.data.Dataset:
    """The rows as a dataset of dicts, the format every training path uses."""
    return tf.data.Dataset.from_tensor_slices(
        {USER_INPUT: rows.user_id, ITEM_INPUT: rows.movie_title, "user_rating": rows.user_rating}
    )


def in_memory_training_data(train_rows: Ratings, config: TrainConfig) -> TrainingData:
    """Training batches from rows held in memory, exactly as the tutorial makes them.

    With `config.validation_fraction > 0`, that share of the rows (chosen with
    `config.seed`) is held out for early stopping.
    """
    fit_rows, validation_rows = carve_validation(train_rows, config)
    validation = None
    if validation_rows is not None:
        validation = rows_dataset(validation_rows).batch(VALIDATION_BATCH).cache()
    # The tutorial's pipeline: shuffle, batch, cache (so the order is drawn once).
    batches = rows_dataset(fit_rows).shuffle(len(fit_rows), seed=config.seed).batch(config.batch_size).cache()
    return TrainingData(batches, None, validation, len(fit_rows))


def carve_validation(train_rows: Ratings, config: TrainConfig) -> tuple[Ratings, Optional[Ratings]]:
    """Holds out `config.validation_fraction` of the training rows, chosen with `config.seed`."""
    if config.validation_fraction <= 0:
        return train_rows, None
    order = np.random.default_rng(config.seed).permutation(len(train_rows))
    held_out = int(round(len(train_rows) * config.validation_fraction))
    return train_rows.take(order[held_out:]), train_rows.take(order[:held_out])


def dataset_rmse(score: Callable, batches: tf.data.Dataset) -> float:
    """RMSE of `score(user_ids, movie_titles)` over batches of rows (`train.metrics.rmse`; nan for no rows)."""
    scores, targets = [], []
    for batch in batches:
        scores.append(np.asarray(score(batch[USER_INPUT], batch[ITEM_INPUT])).reshape(-1))
        targets.append(batch["user_rating"].numpy().reshape(-1))
    if not scores:
        return float("nan")
    return rmse(np.concatenate(scores), np.concatenate(targets))


def fit_model(
    data: TrainingData,
    users: Sequence[str],
    movies: Sequence[str],
    config: TrainConfig,
    strategy: Optional[tf.distribute.Strategy] = None,
) -> TrainedModel:
    """Builds and trains the ranking model.

    Args:
        data: the training batches and optional validation rows (never the test rows).
        users, movies: the vocabularies; unknown ids share one extra embedding row.
        config: the preset.
        strategy: a tf.distribute strategy (multi-worker training), or None.

    Returns:
        The fitted model; with validation data, the weights of the best epoch.
    """
    tf_keras.utils.set_random_seed(config.seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = MovielensModel(users, movies, config)
        if config.optimizer is Optimizer.ADAGRAD:
            optimizer = tf_keras.optimizers.Adagrad(learning_rate=config.learning_rate)
        else:
            optimizer = tf_keras.optimizers.Adam(learning_rate=config.learning_rate)
        model.compile(optimizer=optimizer)
    if strategy is not None:
        # Metrics are already synchronised across replicas; Keras' default would add them up.
        model.distribute_reduction_method = "first"

    score = None
    if data.validation is not None:

        def score() -> float:
            return dataset_rmse(lambda users, movies: model({USER_INPUT: users, ITEM_INPUT: movies}), data.validation)

    started = time.perf_counter()
    curve = fit_with_early_stopping(
        model,
        data.batches,
        epochs=config.epochs,
        steps_per_epoch=data.steps_per_epoch,
        score=score,
        patience=config.early_stopping_patience,
    )
    return TrainedModel(model, config, curve, time.perf_counter() - started)

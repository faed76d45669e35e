"""Presets, the TFRS ranking model, training, and export with a named signature."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from device_runtime.signature import ITEM_INPUT, OUTPUT, SIGNATURE_KEY, USER_INPUT
from train.data import Ratings
from train.config import Optimizer, TrainConfig

logger = logging.getLogger(__name__)


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
        self.task = tfrs.tasks.Ranking(
            loss=tf_keras.losses.MeanSquaredError(),
            metrics=[tf_keras.metrics.RootMeanSquaredError()],
        )

    # tf_keras traces `call` by keyword when saving, so the argument must be named `inputs`.
    def call(self, inputs):
        return self.ranking_model((inputs[USER_INPUT], inputs[ITEM_INPUT]))

    def compute_loss(self, features, training=False):
        labels = features["user_rating"]
        predictions = self({USER_INPUT: features[USER_INPUT], ITEM_INPUT: features[ITEM_INPUT]})
        return self.task(labels=labels, predictions=predictions)


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A fitted model and the figures of its training."""

    model: MovielensModel
    config: TrainConfig
    epochs_run: int
    best_epoch: int
    validation_rmse: Optional[float]
    fit_seconds: float


def _dataset(rows: Ratings) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {USER_INPUT: rows.user_id, ITEM_INPUT: rows.movie_title, "user_rating": rows.user_rating}
    )


class _EpochLog(tf_keras.callbacks.Callback):
    """One log line per epoch (Keras' progress bar goes to stdout and is noisy)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        figures = f"train RMSE {logs.get('root_mean_squared_error', float('nan')):.4f}"
        if "val_root_mean_squared_error" in logs:
            figures += f", validation RMSE {logs['val_root_mean_squared_error']:.4f}"
        logger.info("epoch %d/%d: %s (%.1f s)", epoch + 1, self.epochs, figures, time.perf_counter() - self.started)


def fit_model(train_rows: Ratings, users: Sequence[str], movies: Sequence[str], config: TrainConfig) -> TrainedModel:
    """Builds and trains the ranking model on `train_rows`.

    With `config.validation_fraction > 0`, that share of the training rows
    (chosen with `config.seed`) is held out and training stops once validation
    RMSE has not improved for `early_stopping_patience` epochs, restoring the
    best weights. The test rows are never seen here.
    """
    tf_keras.utils.set_random_seed(config.seed)
    model = MovielensModel(users, movies, config)
    if config.optimizer is Optimizer.ADAGRAD:
        optimizer = tf_keras.optimizers.Adagrad(learning_rate=config.learning_rate)
    else:
        optimizer = tf_keras.optimizers.Adam(learning_rate=config.learning_rate)
    model.compile(optimizer=optimizer)

    callbacks = [_EpochLog(config.epochs)]
    validation = None
    fit_rows = train_rows
    if config.validation_fraction > 0:
        order = np.random.default_rng(config.seed).permutation(len(train_rows))
        held_out = int(round(len(train_rows) * config.validation_fraction))
        validation = _dataset(train_rows.take(order[:held_out])).batch(4096).cache()
        fit_rows = train_rows.take(order[held_out:])
        stopper = tf_keras.callbacks.EarlyStopping(
            monitor="val_root_mean_squared_error",
            patience=config.early_stopping_patience,
            restore_best_weights=True,
            mode="min",
        )
        callbacks.append(stopper)

    # As the tutorial: shuffle the training rows each epoch, batch, cache.
    training = _dataset(fit_rows).shuffle(len(fit_rows), seed=config.seed).batch(config.batch_size).cache()
    started = time.perf_counter()
    history = model.fit(training, epochs=config.epochs, validation_data=validation, callbacks=callbacks, verbose=0)
    fit_seconds = time.perf_counter() - started

    epochs_run = len(history.history["loss"])
    validation_rmse, best_epoch = None, epochs_run
    if validation is not None:
        curve = history.history["val_root_mean_squared_error"]
        best_epoch = int(np.argmin(curve)) + 1
        validation_rmse = float(np.min(curve))
    return TrainedModel(model, config, epochs_run, best_epoch, validation_rmse, fit_seconds)


def predict(model: MovielensModel, rows: Ratings, batch_size: int = 8192) -> np.ndarray:
    """Scores every (user, movie) row with the in-memory model, as float32 [N]."""
    scores = [
        model({USER_INPUT: tf.constant(rows.user_id[i : i + batch_size]), ITEM_INPUT: tf.constant(rows.movie_title[i : i + batch_size])})
        for i in range(0, len(rows), batch_size)
    ]
    return tf.reshape(tf.concat(scores, axis=0), [-1]).numpy().astype(np.float32)


def rmse(predictions: np.ndarray, ratings: np.ndarray) -> float:
    """Root mean squared error, in float64."""
    return float(np.sqrt(np.mean((predictions.astype(np.float64) - ratings.astype(np.float64)) ** 2)))


class _ServingModule(tf.Module):
    """Wraps the ranking tower with the kit's signature: named string inputs, `rating` [N]."""

    def __init__(self, ranking_model: RankingModel):
        super().__init__()
        self.ranking_model = ranking_model

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=USER_INPUT),
            tf.TensorSpec([None], tf.string, name=ITEM_INPUT),
        ]
    )
    def serve(self, user_id, movie_title):
        scores = self.ranking_model((user_id, movie_title))
        return {OUTPUT: tf.reshape(scores, [-1])}


def export_saved_model(model: MovielensModel, path: Path) -> None:
    """Saves the model with signature `serving_default`: (user_id, movie_title) -> rating."""
    module = _ServingModule(model.ranking_model)
    tf.saved_model.save(module, str(path), signatures={SIGNATURE_KEY: module.serve})

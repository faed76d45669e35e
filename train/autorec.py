"""AutoRec (Sedhain et al., 2015): a TFRS ranking model that rebuilds rating rows through a sigmoid code.

An item-based AutoRec reads each movie's ratings over all users (0 where
unrated), encodes them into `hidden` sigmoid units and decodes a rating for
every user; a user-based one does the same with users and movies swapped. The
loss is the squared error on the observed entries only, summed as in the
paper, plus L2 on both weight matrices (lambda / 2 * |W|^2, as Keras kernel
regularisers). Training is full batch: the whole rating matrix is the one
batch, and an "epoch" is `steps_per_epoch` steps between two validations.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from train.config import AutoRecConfig
from train.data import MAX_RATING, MIN_RATING
from train.early_stopping import TrainingCurve, fit_with_early_stopping
from train.metrics import rmse

logger = logging.getLogger(__name__)

RATINGS = "ratings"  # the feature: a [rows, columns] rating matrix, 0 where unrated


class AutoRec(tfrs.models.Model):
    """One AutoRec over rows of `columns` ratings (see the module)."""

    def __init__(self, columns: int, config: AutoRecConfig):
        super().__init__()
        penalty = tf_keras.regularizers.L2(config.l2 / 2)
        self.input_dropout = tf_keras.layers.Dropout(config.dropout)
        self.encoder = tf_keras.layers.Dense(
            config.hidden,
            activation="sigmoid",
            kernel_initializer=tf_keras.initializers.RandomNormal(stddev=config.init_stddev),
            kernel_regularizer=penalty,
        )
        # Output biases start at 0, not at the mean rating: measured on validation, the mean
        # start reaches its best after ~50 steps at 0.905, the zero start after ~200 at 0.899.
        self.decoder = tf_keras.layers.Dense(
            columns,
            kernel_initializer=tf_keras.initializers.RandomNormal(stddev=config.init_stddev),
            kernel_regularizer=penalty,
        )
        self.task = tfrs.tasks.Ranking(
            loss=tf_keras.losses.MeanSquaredError(reduction=tf_keras.losses.Reduction.NONE),
            metrics=[tf_keras.metrics.RootMeanSquaredError()],
        )

    def call(self, inputs, training=False):
        """The rebuilt rating matrix [rows, columns] of a dict holding `ratings`."""
        return self.decoder(self.encoder(self.input_dropout(inputs[RATINGS], training=training)))

    def compute_loss(self, features, training=False):
        ratings = features[RATINGS]
        rebuilt = self(features, training=training)
        observed = tf.reshape(tf.cast(ratings > 0, tf.float32), [-1])
        squared_errors = self.task(
            labels=tf.reshape(ratings, [-1, 1]), predictions=tf.reshape(rebuilt, [-1, 1]), sample_weight=observed
        )
        return tf.reduce_sum(squared_errors)


@dataclasses.dataclass(frozen=True)
class FittedAutoRec:
    """A fitted AutoRec and how its training went."""

    model: AutoRec
    curve: TrainingCurve
    fit_seconds: float

    def rebuild(self, ratings: np.ndarray) -> np.ndarray:
        """The model's ratings [rows, columns] for every entry, coded from `ratings`."""
        return self.model({RATINGS: tf.constant(ratings, tf.float32)}).numpy()


def fit_autorec(
    ratings: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    config: AutoRecConfig,
    seed: int,
    name: str,
) -> FittedAutoRec:
    """Fits one AutoRec on a rating matrix with the kit's early stopping.

    Args:
        ratings: float32 [rows, columns], 0 where unrated (the rows fitted on only).
        validation: (row, column, rating) arrays of held-out ratings, or None
            to train `max_steps` and keep the last weights.
        config: the model's settings.
        seed: seeds the initial weights and the dropout.
        name: prefixes the log lines.

    Returns:
        The model with the kept epoch's weights.
    """
    tf_keras.utils.set_random_seed(seed)
    model = AutoRec(ratings.shape[1], config)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=config.learning_rate))
    matrix = tf.constant(ratings, tf.float32)
    batches = tf.data.Dataset.from_tensors({RATINGS: matrix}).repeat()
    score = None
    if validation is not None:
        rows, columns, targets = validation

        def score() -> float:
            rebuilt = model({RATINGS: matrix}).numpy()
            return rmse(np.clip(rebuilt[rows, columns], MIN_RATING, MAX_RATING), targets)

    started = time.perf_counter()
    curve = fit_with_early_stopping(
        model,
        batches,
        epochs=-(-config.max_steps // config.steps_per_epoch),
        steps_per_epoch=config.steps_per_epoch,
        score=score,
        patience=config.patience,
        name=name,
        log_level=logging.DEBUG,
    )
    fitted = FittedAutoRec(model, curve, time.perf_counter() - started)
    logger.info(
        "%s: validation RMSE %s after %d steps (%d run, %.0f s)",
        name,
        "n/a" if curve.best_validation_rmse is None else f"{curve.best_validation_rmse:.4f}",
        curve.best_epoch * config.steps_per_epoch,
        curve.epochs_run * config.steps_per_epoch,
        fitted.fit_seconds,
    )
    return fitted

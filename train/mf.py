"""The `mf` preset: SVD++ with side features alone, on rows in memory or streamed, on one worker or many.

Training runs in two phases, both with Keras' `fit` under the same
distribution strategy (or none):

1. fit on the fit rows with the kit's early stopping on the validation rows,
   which chooses the epoch count; N(u) holds the fit rows' movies only, so
   the validation rows are scored as the test rows will be;
2. refit (`FactorizationSettings.refit`): a new model, initialised with the
   same seed, trained for that many epochs on every training row, with N(u)
   from every training row. It is the exported model.

Each user's N(u) is their `max_rated_per_user` most recent ratings
(`train.history`); the side tables come from the training rows only. Rows in
memory (MovieLens on one worker) and sharded folders (`train.streaming`,
which also serves MovieLens on several workers) give the same `MfInputs`.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import time
from typing import Callable, Sequence

import numpy as np

from train.config import TrainConfig
from train.data import Ratings
from train.early_stopping import TrainingCurve
from train.factor_tables import FactorTables
from train.history import HistoryCollector, RatingHistory
from train.side_features import SideFeatures, side_features

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MfInputs:
    """Everything the two phases read, however the rows are stored.

    Attributes:
        users, movies: the vocabularies.
        side: the side-feature tables (all unknown without side features).
        history: each user's most recent training ratings, held-out ones flagged.
        fit_data: phase 1's batches and validation batches (`train.model.TrainingData`).
        refit_data: builds the refit's batches (every training row, no validation).
        fit_mean, training_mean: the mean rating of the fit rows and of every training row.
    """

    users: tuple[str, ...]
    movies: tuple[str, ...]
    side: SideFeatures
    history: RatingHistory
    fit_data: object
    refit_data: Callable[[], object]
    fit_mean: float
    training_mean: float


@dataclasses.dataclass(frozen=True)
class MfResult:
    """The exported tables and how training went.

    Attributes:
        tables: the exported model (the refit's, or phase 1's without a refit).
        chosen_tables: phase 1's tables (fitted without the validation rows: the fold-in is chosen on them).
        curve: phase 1's epochs and validation RMSEs.
        refit_epochs: the refit's epochs (0: no refit).
        examples: training examples processed by both phases.
        fit_seconds: both phases' training time.
    """

    tables: FactorTables
    chosen_tables: FactorTables
    curve: TrainingCurve
    refit_epochs: int
    refit_rows: int
    examples: int
    fit_seconds: float

    def details(self, inputs: MfInputs) -> dict:
        """The figures for metrics.json's architecture_details."""
        history = inputs.history
        return {
            "refit": {"epochs": self.refit_epochs, "rows": self.refit_rows} if self.refit_epochs else None,
            "implicit_feedback": {
                "max_rated_per_user": history.max_per_user,
                "ratings_kept": len(history),
                "users_at_the_cap": history.capped_users(),
            },
            "side_features": bool(inputs.side.user_features.any() or inputs.side.movie_year.any()),
        }


def inputs_from_rows(train_rows: Ratings, users: Sequence[str], movies: Sequence[str], config: TrainConfig) -> MfInputs:
    """The inputs from training rows held in memory (MovieLens on one worker).

    The validation rows are carved out of `train_rows` as for every preset
    (`train.model.carve_validation`); the side tables come from `train_rows`
    only; a rating's order key is its timestamp.
    """
    from train.model import VALIDATION_BATCH, TrainingData, carve_validation, rows_dataset

    fit_rows, validation_rows = carve_validation(train_rows, config)

    user_row = {user: row for row, user in enumerate(users, start=1)}
    movie_row = {movie: row for row, movie in enumerate(movies, start=1)}
    collector = HistoryCollector(config.factorization.max_rated_per_user)
    for rows, held_out in ((fit_rows, False), (validation_rows, True)):
        if rows is not None and len(rows):
            collector.add(
                np.array([user_row.get(str(user), 0) for user in rows.user_id]),
                np.array([movie_row.get(str(movie), 0) for movie in rows.movie_title]),
                rows.user_rating,
                rows.timestamp,
                np.full(len(rows), held_out),
            )
    history = collector.finish(np.arange(len(users) + 1), np.arange(len(movies) + 1), len(users) + 1)
    validation = None
    if validation_rows is not None and len(validation_rows):
        validation = rows_dataset(validation_rows).batch(VALIDATION_BATCH)

    def batches(rows: Ratings):
        return rows_dataset(rows).shuffle(len(rows), seed=config.seed).batch(config.batch_size)

    return MfInputs(
        users=tuple(users),
        movies=tuple(movies),
        side=side_features([fit_rows, validation_rows], users, movies),
        history=history,
        fit_data=TrainingData(batches(fit_rows), None, validation, len(fit_rows)),
        refit_data=lambda: TrainingData(batches(train_rows), None, None, len(train_rows)),
        fit_mean=float(np.mean(fit_rows.user_rating)),
        training_mean=float(np.mean(train_rows.user_rating)),
    )


def inputs_from_shards(shards, config: TrainConfig) -> MfInputs:
    """The inputs from a scanned sharded folder (`train.streaming.scan_shards` with a HistoryRequest)."""
    from train import streaming
    from train.side_features import USER_FEATURES

    training = shards.training
    side = training.side
    if side is None:  # no side files: ids and implicit feedback only
        side = SideFeatures(
            np.zeros((len(shards.users) + 1, len(USER_FEATURES)), np.int32),
            (1,) * len(USER_FEATURES),
            np.zeros((len(shards.movies) + 1, 1), np.float32),
            np.zeros(len(shards.movies) + 1, np.int32),
        )
    return MfInputs(
        users=shards.users,
        movies=shards.movies,
        side=side,
        history=training.history,
        fit_data=streaming.streaming_training_data(shards, config),
        refit_data=lambda: streaming.streaming_training_data(shards, config, include_validation=True),
        fit_mean=training.fit_mean,
        training_mean=training.training_mean,
    )


def train_mf(inputs: MfInputs, config: TrainConfig, strategy=None) -> MfResult:
    """Runs phase 1 and, when configured and there are validation rows, the refit (see the module).

    Args:
        inputs: the rows, vocabularies, side tables and history.
        config: the `mf` preset (or overrides of it).
        strategy: a tf.distribute strategy, or None for one process.
    """
    from train.factorization import FactorizationConfig, LookupTables, fit_factorization

    settings = config.factorization
    model_config = FactorizationConfig(config.embedding_dimension, settings.vector_l2, settings.bias_l2)

    def fit(data, include_held_out: bool, mean: float, epochs: int, patience: int):
        rated = inputs.history.rated(include_held_out)
        tables = LookupTables(inputs.users, inputs.movies, inputs.side, rated)
        fitted = fit_factorization(
            data, tables, model_config, mean_rating=mean, learning_rate=_learning_rate(config, data), epochs=epochs,
            patience=patience, seed=config.seed, strategy=strategy,
        )
        return fitted, fitted.model.factor_tables(rated)

    started = time.perf_counter()
    first, chosen_tables = fit(inputs.fit_data, False, inputs.fit_mean, config.epochs, config.early_stopping_patience)
    curve = first.curve
    del first  # its weights and optimizer slots are not needed during the refit (Keras models hold cycles)
    gc.collect()
    examples = curve.epochs_run * inputs.fit_data.train_rows
    tables, refit_epochs, refit_rows = chosen_tables, 0, 0
    if settings.refit and inputs.fit_data.validation is not None:
        refit_epochs = curve.best_epoch
        data = inputs.refit_data()
        logger.info("refit on all %s training rows for the chosen %d epochs", f"{data.train_rows:,}", refit_epochs)
        _, tables = fit(data, True, inputs.training_mean, refit_epochs, 0)
        refit_rows = data.train_rows
        examples += refit_epochs * refit_rows
    return MfResult(tables, chosen_tables, curve, refit_epochs, refit_rows, examples, time.perf_counter() - started)


def _learning_rate(config: TrainConfig, data):
    """Adam's rate: constant, or multiplied by `learning_rate_decay` after every epoch of `data`."""
    decay = config.factorization.learning_rate_decay
    if decay == 1:
        return config.learning_rate
    import tf_keras

    steps = data.steps_per_epoch or math.ceil(data.train_rows / config.batch_size)
    return tf_keras.optimizers.schedules.ExponentialDecay(config.learning_rate, steps, decay, staircase=True)


@dataclasses.dataclass(frozen=True)
class RatingRows:
    """Rating rows as parallel arrays: the columns the fold-in's choice reads."""

    user_id: np.ndarray
    movie_title: np.ndarray
    user_rating: np.ndarray


def fold_in_rows(inputs: MfInputs, max_users: int, seed: int) -> tuple[RatingRows, RatingRows]:
    """Fit and validation rows of at most `max_users` users with both, from the kept history.

    They are what the fold-in's penalties are chosen on: each user's kept fit
    ratings as their history, their held-out ratings as the targets.
    """
    history = inputs.history
    fit_counts = np.bincount(history.user_rows[~history.held_out], minlength=history.user_count)
    held_out_counts = np.bincount(history.user_rows[history.held_out], minlength=history.user_count)
    candidates = np.flatnonzero((fit_counts > 0) & (held_out_counts > 0))
    candidates = candidates[candidates > 0]
    if len(candidates) > max_users:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, max_users, replace=False))
    chosen = np.isin(history.user_rows, candidates)
    users = np.array(("",) + inputs.users, dtype=object)
    movies = np.array(("",) + inputs.movies, dtype=object)

    def rows(mask) -> RatingRows:
        return RatingRows(
            users[history.user_rows[mask]].astype(str),
            movies[history.movie_rows[mask]].astype(str),
            history.ratings[mask],
        )

    return rows(chosen & ~history.held_out), rows(chosen & history.held_out)

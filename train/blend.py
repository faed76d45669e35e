"""The default preset's model: four members, blended, folded into one low-rank table model.

1. Members, each a TFRS ranking model fitted with Keras' `fit` and the kit's
   early stopping (`train.early_stopping`) on the validation rows:
   - SVD++ with side features (`train.factorization`): 64-d, Adam, batch 1024,
     per-example L2 on the composed vectors and biases;
   - two item-based AutoRecs and one user-based AutoRec (`train.autorec`):
     500 sigmoid units, L2 100, input dropout 0.2, full batch.
2. Blend: member weights and an intercept by least squares on the validation
   predictions, shrunk towards equal weights (`blend_weights`).
3. Fold: the blended prediction matrix (movies x users; AutoRec codes and
   SVD++ rated-movie sets recomputed from all training rows) is
   double-centred and cut to rank `export_rank` by SVD (`train.factor_tables.fold`).
   The device graph is hash tables -> gathers -> global mean + user bias +
   movie bias + one dot product, clipped to 1..5; unknown ids get row 0 (zeros).

Side features come from the training rows only (`train.side_features`); the
test rows never inform any choice. The measured figures and what helped are
in docs/default-model.md.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Optional, Sequence

import numpy as np

from train.autorec import fit_autorec
from train.config import AutoRecConfig, TrainConfig
from train.data import MAX_RATING, MIN_RATING, Ratings
from train.early_stopping import TrainingCurve
from train.factor_tables import FactorTables, fold
from train.factorization import FactorizationConfig, LookupTables, fit_factorization, implicit_feedback
from train.metrics import rmse
from train.model import VALIDATION_BATCH, TrainingData, rows_dataset
from train.side_features import side_features

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MemberFit:
    """How one member of the blend was trained.

    Attributes:
        name: e.g. "matrix factorisation", "item AutoRec 1".
        curve: epochs run, the kept epoch and the validation RMSE per epoch.
        steps_per_epoch: full-batch steps per epoch (AutoRec), or None (one
            pass over the training rows per epoch).
        fit_seconds: the member's training time.
    """

    name: str
    curve: TrainingCurve
    steps_per_epoch: Optional[int]
    fit_seconds: float

    def to_dict(self) -> dict:
        figures = {
            "name": self.name,
            "validation_rmse": _rounded(self.curve.best_validation_rmse),
            "epochs_run": self.curve.epochs_run,
            "best_epoch": self.curve.best_epoch,
            "fit_seconds": round(self.fit_seconds, 1),
        }
        if self.steps_per_epoch is not None:
            figures["steps_per_epoch"] = self.steps_per_epoch
        return figures


@dataclasses.dataclass(frozen=True)
class BlendResult:
    """The folded model and the figures of its training.

    Attributes:
        tables: the folded model (export it with `train.serving.FactorServing`).
        members: how each member was trained.
        weights: each member's blend weight, in `members` order.
        intercept: the blend's constant term.
        validation_rmse: the blend's validation RMSE before folding; None without validation rows.
        folded_validation_rmse: the same for the folded, exported form.
        fit_seconds: the whole blend's training time.
    """

    tables: FactorTables
    members: tuple[MemberFit, ...]
    weights: tuple[float, ...]
    intercept: float
    validation_rmse: Optional[float]
    folded_validation_rmse: Optional[float]
    fit_seconds: float

    def to_dict(self) -> dict:
        """The figures for metrics.json (finite numbers or null only)."""
        return {
            "members": [member.to_dict() for member in self.members],
            "blend_weights": [round(weight, 4) for weight in self.weights],
            "blend_intercept": round(self.intercept, 4),
            "blend_validation_rmse": _rounded(self.validation_rmse),
            "folded_validation_rmse": _rounded(self.folded_validation_rmse),
            "export_rank": self.tables.rank,
            "blend_fit_seconds": round(self.fit_seconds, 1),
        }


# A member's prediction matrix (movies x users, row and column 0 = unknown ids)
# coded from the given (user rows, movie rows, ratings).
_MatrixOf = Callable[[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]


def train_blend(
    fit_rows: Ratings,
    validation_rows: Optional[Ratings],
    users: Sequence[str],
    movies: Sequence[str],
    config: TrainConfig,
) -> BlendResult:
    """Trains the members, blends them and folds the blend into factor tables.

    Args:
        fit_rows: the rating rows to fit on.
        validation_rows: held-out training rows for early stopping and the
            blend weights; None (or empty) trains every member for its maximum
            epochs and weighs them equally.
        users, movies: the vocabularies (unknown ids share row 0).
        config: the preset; `config.blend` holds the blend's own settings, and
            embedding_dimension, learning_rate, batch_size, epochs and
            early_stopping_patience apply to its matrix-factorisation member.

    Returns:
        The folded tables and the training figures.
    """
    started = time.perf_counter()
    if validation_rows is not None and len(validation_rows) == 0:
        validation_rows = None
    user_row = {user: row for row, user in enumerate(users, start=1)}
    movie_row = {movie: row for row, movie in enumerate(movies, start=1)}
    fit = _index_rows(fit_rows, user_row, movie_row)
    held_out = None if validation_rows is None else _index_rows(validation_rows, user_row, movie_row)
    training = fit if held_out is None else tuple(np.concatenate(pair) for pair in zip(fit, held_out))
    shape = (len(users) + 1, len(movies) + 1)

    lookups = LookupTables(
        tuple(users),
        tuple(movies),
        side_features([fit_rows, validation_rows], users, movies),  # training rows only
        implicit_feedback(fit[0], fit[1], shape[0]),
    )
    fitted = [_fit_factorization_member(fit_rows, validation_rows, lookups, float(np.mean(fit[2])), config)]
    # AutoRecs: item-based ones read movies' rating rows, user-based ones users'.
    for by_user, count in ((False, config.blend.item_autorecs), (True, config.blend.user_autorecs)):
        for k in range(count):
            name = f"{'user' if by_user else 'item'} AutoRec {k + 1}"
            seed = config.seed * 100 + (50 + k if by_user else k + 1)
            fitted.append(_fit_autorec_member(fit, held_out, shape, by_user, config.blend.autorec, seed, name))
    members = tuple(member for member, _ in fitted)
    matrices = [matrix_of for _, matrix_of in fitted]

    validation_rmse = folded_validation_rmse = None
    if held_out is None:
        weights, intercept = np.full(len(matrices), 1.0 / len(matrices)), 0.0
    else:
        user_rows, movie_rows, targets = held_out
        seen = [matrix_of(fit) for matrix_of in matrices]  # what each member knew while validating
        predictions = np.stack([matrix[movie_rows, user_rows] for matrix in seen], axis=1)
        weights, intercept = blend_weights(predictions, targets, config.blend.blend_ridge)
        validation_rmse = rmse(np.clip(predictions @ weights + intercept, MIN_RATING, MAX_RATING), targets)
        folded = fold(_blended(seen, weights, intercept), config.blend.export_rank, users, movies)
        folded_validation_rmse = rmse(folded.ratings(user_rows, movie_rows), targets)

    # The exported form: every member recoded from all training rows, blended, folded.
    everything = [matrix_of(training) for matrix_of in matrices]
    result = BlendResult(
        tables=fold(_blended(everything, weights, intercept), config.blend.export_rank, users, movies),
        members=members,
        weights=tuple(float(weight) for weight in weights),
        intercept=float(intercept),
        validation_rmse=validation_rmse,
        folded_validation_rmse=folded_validation_rmse,
        fit_seconds=time.perf_counter() - started,
    )
    logger.info(
        "blend: validation RMSE %s (folded to rank %d: %s), weights %s + %.3f, %.0f s",
        _shown(validation_rmse),
        config.blend.export_rank,
        _shown(folded_validation_rmse),
        [round(weight, 3) for weight in result.weights],
        result.intercept,
        result.fit_seconds,
    )
    return result


def blend_weights(predictions: np.ndarray, targets: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Member weights and an intercept by least squares, shrunk towards equal weights.

    Minimises |P w + c - y|^2 + ridge * n * |w - 1/K|^2 over the weights w and
    the intercept c, so that a small validation set cannot produce wild,
    extrapolating weights.

    Args:
        predictions: [n, K], each member's validation predictions.
        targets: [n], the validation ratings.
        ridge: the pull towards equal weights, per validation row.

    Returns:
        The K weights and the intercept.
    """
    rows, members = predictions.shape
    design = np.concatenate([predictions, np.ones((rows, 1))], axis=1)
    penalty = np.diag([ridge * rows] * members + [0.0])
    prior = np.array([1.0 / members] * members + [0.0])
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ targets + penalty @ prior)
    return solution[:members], float(solution[members])


def _fit_factorization_member(
    fit_rows: Ratings,
    validation_rows: Optional[Ratings],
    lookups: LookupTables,
    mean_rating: float,
    config: TrainConfig,
) -> tuple[MemberFit, _MatrixOf]:
    """Fits SVD++ with side features; returns its MemberFit and its prediction-matrix function."""
    data = TrainingData(
        batches=rows_dataset(fit_rows).shuffle(len(fit_rows), seed=config.seed).batch(config.batch_size),
        steps_per_epoch=None,
        validation=None if validation_rows is None else rows_dataset(validation_rows).batch(VALIDATION_BATCH),
        train_rows=len(fit_rows),
    )
    fitted = fit_factorization(
        data,
        lookups,
        FactorizationConfig(config.embedding_dimension, config.blend.mf_l2, config.blend.mf_bias_l2),
        mean_rating=mean_rating,
        learning_rate=config.learning_rate,
        epochs=config.epochs,
        patience=config.early_stopping_patience,
        seed=config.seed,
    )

    def matrix_of(rows) -> np.ndarray:  # movies x users, rated-movie sets from `rows`
        rated = implicit_feedback(rows[0], rows[1], len(lookups.users) + 1)
        return fitted.model.factor_tables(rated).rating_matrix()

    return MemberFit("matrix factorisation", fitted.curve, None, fitted.fit_seconds), matrix_of


def _fit_autorec_member(
    fit, held_out, shape, by_user: bool, config: AutoRecConfig, seed: int, name: str
) -> tuple[MemberFit, _MatrixOf]:
    """Fits one AutoRec; returns its MemberFit and its prediction-matrix function."""

    def rating_matrix(rows) -> np.ndarray:  # [rows of the AutoRec, its columns]
        users, movies, ratings = rows
        matrix = np.zeros(shape if by_user else shape[::-1], np.float32)
        matrix[(users, movies) if by_user else (movies, users)] = ratings
        return matrix

    validation = None
    if held_out is not None:
        users, movies, ratings = held_out
        validation = (users, movies, ratings) if by_user else (movies, users, ratings)
    model = fit_autorec(rating_matrix(fit), validation, config, seed, name)

    def matrix_of(rows) -> np.ndarray:  # movies x users, codes from `rows`
        rebuilt = model.rebuild(rating_matrix(rows))
        return rebuilt.T if by_user else rebuilt

    return MemberFit(name, model.curve, config.steps_per_epoch, model.fit_seconds), matrix_of


def _index_rows(rows: Ratings, user_row: dict, movie_row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user rows, movie rows, ratings) of rating rows; unknown ids map to row 0."""
    users = np.array([user_row.get(str(user), 0) for user in rows.user_id], np.int64)
    movies = np.array([movie_row.get(str(movie), 0) for movie in rows.movie_title], np.int64)
    return users, movies, np.asarray(rows.user_rating, np.float64)


def _blended(matrices: Sequence[np.ndarray], weights: np.ndarray, intercept: float) -> np.ndarray:
    return sum(weight * matrix for weight, matrix in zip(weights, matrices)) + intercept


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 5)


def _shown(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"

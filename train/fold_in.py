"""The fold-in's ridge penalties, chosen on validation rows (never the test rows).

A device personalizes a user the model never saw by folding their own ratings
into a user state (`train.serving.FoldIn`): ridge regression of the ratings on
the frozen movie vectors. How hard to pull that state towards the unknown user
(vector 0, bias 0) is chosen here, the way a device will use it: for every known
user with validation rows, their fit rows, in a seeded order and cut to each of
`HISTORY_LENGTHS`, are folded in with numpy, the state scores that user's
validation rows, and the pair of penalties with the lowest validation RMSE over
all those histories wins. The test rows are never read.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Sequence

import numpy as np

from train.data import MAX_RATING, MIN_RATING
from train.errors import TrainError

logger = logging.getLogger(__name__)

# The penalties exported when there are no validation rows to choose on (validation_fraction 0):
# about 3 to 5 for both did well in a holdout experiment on MovieLens 100K.
DEFAULT_RIDGE = 4.0
# History lengths tried for every validation user (None: all of their fit rows).
HISTORY_LENGTHS = (1, 3, 5, 10, 20, 50, None)
# The grid of (vector ridge, bias ridge) pairs.
VECTOR_RIDGES = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0)
BIAS_RIDGES = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0)


@dataclasses.dataclass(frozen=True)
class HistoryFigures:
    """Validation figures of one history length at the chosen penalties.

    Attributes:
        length: ratings in each user's history (None: all of their fit rows; 0: no history, the unknown user).
        users: validation users scored.
        rows: validation rows scored.
        rmse: their RMSE.
    """

    length: Optional[int]
    users: int
    rows: int
    rmse: float


@dataclasses.dataclass(frozen=True)
class FoldInChoice:
    """The chosen penalties and the validation figures they were chosen on.

    Attributes:
        vector_ridge, bias_ridge: the winning pair.
        validation_rmse: RMSE over every history length's validation predictions at that pair.
        by_history: per history length, at that pair; length 0 (the unknown user) first, for comparison.
        grid: every pair tried with its validation RMSE, as (vector_ridge, bias_ridge, rmse).
    """

    vector_ridge: float
    bias_ridge: float
    validation_rmse: float
    by_history: tuple[HistoryFigures, ...]
    grid: tuple[tuple[float, float, float], ...]

    def to_dict(self) -> dict:
        """The record for metrics.json."""
        return {
            "vector_ridge": self.vector_ridge,
            "bias_ridge": self.bias_ridge,
            "chosen_on": "validation rows: each validation user's fit rows folded in as their history",
            "validation_rmse": self.validation_rmse,
            "validation_rmse_by_history": {
                _length_name(f.length): {"users": f.users, "rows": f.rows, "rmse": round(f.rmse, 5)}
                for f in self.by_history
            },
            "grid": {
                "vector_ridges": list(VECTOR_RIDGES),
                "bias_ridges": list(BIAS_RIDGES),
                "validation_rmse": [[round(r, 5) for v, b, r in self.grid if v == vector] for vector in VECTOR_RIDGES],
            },
        }


def _length_name(length: Optional[int]) -> str:
    return "all" if length is None else str(length)


def fold_in_state(tables, movie_rows: np.ndarray, ratings: np.ndarray, vector_ridge: float, bias_ridge: float):
    """One history's user state, in numpy (float64): what the exported graph solves by conjugate gradients.

    Args:
        tables: the factor tables (`train.serving.FactorTables`).
        movie_rows: the history's movie rows (0, the unknown row, is left out).
        ratings: their ratings.
        vector_ridge, bias_ridge: the penalties.

    Returns:
        (user vector [D], user bias).
    """
    solutions = _solve_grid(
        tables, np.asarray(movie_rows), np.asarray(ratings, np.float64), [vector_ridge], [bias_ridge]
    )
    return solutions[0, :-1], float(solutions[0, -1])


def _solve_grid(tables, movie_rows: np.ndarray, ratings: np.ndarray, vector_ridges, bias_ridges) -> np.ndarray:
    """Ridge solutions [vector, bias] of one history for every (vector ridge, bias ridge) pair, vector ridge major.

    With G = A^T A (A = [movie vectors | 1]) and the penalty diag(v, ..., v, b) =
    v I + (b - v) e e^T (e the bias coordinate), one solve of (G + v I) with the
    right-hand sides t = A^T y and e serves every b, through Sherman-Morrison.
    (Batched `solve`, not `eigh`: numpy's eigh of many small matrices is slow
    under OpenBLAS threads on a busy machine.)

    Returns:
        [len(vector_ridges) * len(bias_ridges), D + 1].
    """
    dimension = tables.movie_vectors.shape[1]
    known = movie_rows > 0
    rows, ratings = movie_rows[known], ratings[known]
    design = np.concatenate([tables.movie_vectors[rows].astype(np.float64), np.ones((len(rows), 1))], axis=1)
    target = design.T @ (ratings - tables.global_mean - tables.movie_bias[rows])
    vector_ridges, bias_ridges = np.asarray(vector_ridges, np.float64), np.asarray(bias_ridges, np.float64)
    identity = np.eye(dimension + 1)
    systems = (design.T @ design)[None] + vector_ridges[:, None, None] * identity[None]
    right_hand_sides = np.broadcast_to(np.stack([target, identity[-1]], axis=1), systems.shape[:1] + (dimension + 1, 2))
    inverse = np.linalg.solve(systems, right_hand_sides)
    inverse_t, inverse_e = inverse[..., 0], inverse[..., 1]  # (G + v I)^-1 t and (G + v I)^-1 e, [V, D + 1]
    change = bias_ridges[None, :] - vector_ridges[:, None]  # [V, B]
    weight = change * inverse_t[:, -1:] / (1.0 + change * inverse_e[:, -1:])
    solutions = inverse_t[:, None, :] - weight[..., None] * inverse_e[:, None, :]  # [V, B, D + 1]
    return solutions.reshape(-1, dimension + 1)


def choose_fold_in(tables, fit_rows, validation_rows, seed: int) -> FoldInChoice:
    """Picks the fold-in's (vector ridge, bias ridge) by validation RMSE; see the module's docstring.

    Args:
        tables: the exported factor tables (the frozen movie vectors and biases).
        fit_rows: the rows the model was fitted on (user_id, movie_title, user_rating arrays).
        validation_rows: the held-out validation rows of the training split.
        seed: orders each user's fit rows.

    Returns:
        The winning pair and its figures.

    Raises:
        TrainError: no known user has both fit and validation rows.
    """
    user_index = {user: row for row, user in enumerate(tables.users, start=1)}
    movie_index = {movie: row for row, movie in enumerate(tables.movies, start=1)}
    pairs = [(vector, bias) for vector in VECTOR_RIDGES for bias in BIAS_RIDGES]
    fit_by_user = rows_by_user(fit_rows.user_id)
    validation_by_user = rows_by_user(validation_rows.user_id)
    users = sorted(u for u in validation_by_user if u in fit_by_user and u in user_index)
    if not users:
        raise TrainError(
            "no known user has both fit and validation rows, so the fold-in's penalties cannot be chosen; "
            "train on more rows or with a validation fraction above 0"
        )

    lengths = (0,) + HISTORY_LENGTHS
    squared = np.zeros((len(lengths), len(pairs)))
    counts = np.zeros(len(lengths), np.int64)
    rng = np.random.default_rng(seed)
    for user in users:
        fit = fit_by_user[user][rng.permutation(len(fit_by_user[user]))]
        history_rows = np.array([movie_index.get(t, 0) for t in fit_rows.movie_title[fit]], np.int64)
        history_ratings = fit_rows.user_rating[fit].astype(np.float64)
        held_out = validation_by_user[user]
        rows = np.array([movie_index.get(t, 0) for t in validation_rows.movie_title[held_out]], np.int64)
        truth = validation_rows.user_rating[held_out].astype(np.float64)
        vectors = tables.movie_vectors[rows].astype(np.float64).T
        errors_by_cut: dict[int, np.ndarray] = {}  # lengths beyond the user's rows all cut at len(fit)
        for position, length in enumerate(lengths):
            cut = len(fit) if length is None else min(length, len(fit))
            if cut not in errors_by_cut:
                states = _solve_grid(tables, history_rows[:cut], history_ratings[:cut], VECTOR_RIDGES, BIAS_RIDGES)
                raw = tables.global_mean + tables.movie_bias[rows][None, :] + states[:, -1:] + states[:, :-1] @ vectors
                errors_by_cut[cut] = np.sum((np.clip(raw, MIN_RATING, MAX_RATING) - truth[None, :]) ** 2, axis=1)
            squared[position] += errors_by_cut[cut]
            counts[position] += len(truth)

    # Length 0 is the unknown user, the same for every pair: it is reported, not chosen on.
    pooled = np.sqrt(squared[1:].sum(axis=0) / counts[1:].sum())
    best = int(np.argmin(pooled))
    by_history = tuple(
        HistoryFigures(length, len(users), int(counts[i]), float(np.sqrt(squared[i, best] / counts[i])))
        for i, length in enumerate(lengths)
    )
    choice = FoldInChoice(
        vector_ridge=pairs[best][0],
        bias_ridge=pairs[best][1],
        validation_rmse=float(pooled[best]),
        by_history=by_history,
        grid=tuple((vector, bias, float(rmse)) for (vector, bias), rmse in zip(pairs, pooled)),
    )
    logger.info(
        "fold-in: vector ridge %g, bias ridge %g (validation RMSE %.4f over %d users; %s)",
        choice.vector_ridge,
        choice.bias_ridge,
        choice.validation_rmse,
        len(users),
        ", ".join(f"{_length_name(f.length)}: {f.rmse:.4f}" for f in by_history),
    )
    return choice


def rows_by_user(users: np.ndarray) -> dict[str, np.ndarray]:
    """User id -> the indices of their rows, in row order."""
    users = np.asarray(users).astype(str)
    order = np.argsort(users, kind="stable")
    names, starts = np.unique(users[order], return_index=True)
    return {str(name): order[start:stop] for name, start, stop in zip(names, starts, list(starts[1:]) + [len(order)])}

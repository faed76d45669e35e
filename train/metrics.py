"""Quality figures on held-out ratings, in numpy only: RMSE, and NDCG@k over each user's rated movies.

The kit's one home for both; importing it never loads TensorFlow."""

from __future__ import annotations

import numpy as np

MIN_RATED = 2  # a user with one held-out rating has nothing to order


def rmse(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Root mean squared error, computed in float64; nan for no rows."""
    difference = np.asarray(predictions, np.float64).reshape(-1) - np.asarray(targets, np.float64).reshape(-1)
    return float(np.sqrt(np.mean(difference**2))) if difference.size else float("nan")


def ndcg_at_k(user_ids: np.ndarray, ratings: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over users with at least two held-out ratings.

    Each user's held-out movies are ordered by predicted score (ties keep row
    order); the gain of a movie rated r is 2**r - 1 and position i (0-based)
    is discounted by log2(i + 2). Users are weighted equally.
    """
    if not len(user_ids) == len(ratings) == len(scores):
        raise ValueError("user_ids, ratings and scores must have the same length")
    order = np.argsort(user_ids, kind="stable")
    users, starts = np.unique(user_ids[order], return_index=True)
    bounds = list(starts) + [len(order)]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for begin, end in zip(bounds[:-1], bounds[1:]):
        rows = order[begin:end]
        if len(rows) < MIN_RATED:
            continue
        gains = 2.0 ** ratings[rows].astype(np.float64) - 1.0
        predicted = gains[np.argsort(-scores[rows], kind="stable")][:k]
        ideal = np.sort(gains)[::-1][:k]
        values.append(float(predicted @ discounts[: len(predicted)]) / float(ideal @ discounts[: len(ideal)]))
    return float(np.mean(values)) if values else float("nan")

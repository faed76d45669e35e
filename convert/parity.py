"""Parity figures between two scorers of the same (user, movie) pairs, in numpy only.

`pair_figures` compares scores on the test pairs (absolute differences and
RMSE against the true ratings); `ranking_figures` compares, per user, the two
rankings of every movie (top-k overlap and Kendall's tau-b);
`failed_checks` holds the figures against `Tolerances`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from convert.config import TOP_K, Tolerances
from convert.results import CheckFailure
from train.metrics import rmse


def pair_figures(reference: np.ndarray, candidate: np.ndarray, ratings: np.ndarray) -> dict:
    """Compares two score vectors over the same pairs.

    Args:
        reference: the SavedModel's scores, shape [N].
        candidate: the .tflite's scores, shape [N].
        ratings: the true ratings, shape [N].

    Returns:
        pairs, max_abs_diff, mean_abs_diff, rmse_saved_model, rmse_tflite, rmse_diff.
    """
    reference = np.asarray(reference, np.float64).reshape(-1)
    candidate = np.asarray(candidate, np.float64).reshape(-1)
    if reference.shape != candidate.shape or reference.shape != np.shape(ratings):
        raise ValueError(f"shapes differ: {reference.shape}, {candidate.shape}, {np.shape(ratings)}")
    difference = np.abs(candidate - reference)
    rmse_reference = rmse(reference, ratings)
    rmse_candidate = rmse(candidate, ratings)
    return {
        "pairs": int(reference.size),
        "max_abs_diff": float(difference.max()),
        "mean_abs_diff": float(difference.mean()),
        "rmse_saved_model": rmse_reference,
        "rmse_tflite": rmse_candidate,
        "rmse_diff": abs(rmse_candidate - rmse_reference),
    }


def top_k_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = TOP_K) -> float:
    """Share of the reference's k highest-scored items that the candidate also puts in its top k."""
    k = min(k, len(reference))
    top_reference = np.argsort(-np.asarray(reference), kind="stable")[:k]
    top_candidate = np.argsort(-np.asarray(candidate), kind="stable")[:k]
    return len(np.intersect1d(top_reference, top_candidate)) / k


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b between two score vectors, in O(n log^2 n).

    tau_b = (C - D) / sqrt((n0 - n1) * (n0 - n2)), where C and D count
    concordant and discordant pairs, n0 = n(n-1)/2, n1 and n2 the pairs tied in
    x and in y. With n3 the pairs tied in both, C - D = n0 - n1 - n2 + n3 - 2D,
    and D is the number of strict inversions of y once the items are sorted by
    (x, y).

    Returns:
        tau-b in [-1, 1]; nan when either vector is constant.
    """
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} and {y.size}")
    n = x.size
    n0 = n * (n - 1) // 2
    order = np.lexsort((y, x))
    x_sorted, y_sorted = x[order], y[order]
    n1 = _tied_pairs(x_sorted)
    n2 = _tied_pairs(np.sort(y))
    n3 = _tied_pairs(np.stack([x_sorted, y_sorted], axis=1))
    discordant = _strict_inversions(y_sorted)
    denominator = np.sqrt(float(n0 - n1) * float(n0 - n2))
    if denominator == 0:
        return float("nan")
    return float((n0 - n1 - n2 + n3 - 2 * discordant) / denominator)


def _tied_pairs(sorted_values: np.ndarray) -> int:
    """Pairs of equal entries in a sorted 1-D array (or rows of a lexsorted 2-D array)."""
    if len(sorted_values) < 2:
        return 0
    same = sorted_values[1:] == sorted_values[:-1]
    if same.ndim == 2:
        same = same.all(axis=1)
    # Run lengths of equal neighbours: a run of t equal values holds t(t-1)/2 pairs.
    boundaries = np.flatnonzero(np.diff(np.concatenate(([0], same.astype(np.int8), [0]))))
    runs = (boundaries[1::2] - boundaries[::2]) + 1
    return int(np.sum(runs * (runs - 1) // 2))


def _strict_inversions(values: np.ndarray) -> int:
    """Counts pairs i < j with values[i] > values[j], by a bottom-up merge sort.

    Each pass merges neighbouring sorted blocks of `width` items; for every item
    of a right block, the items of its left block that are greater are
    inversions. One `searchsorted` serves all blocks at once because block b's
    ranks are offset by b * (n + 1), which keeps the concatenation sorted.
    """
    n = values.size
    if n < 2:
        return 0
    ranks = np.unique(values, return_inverse=True)[1].astype(np.int64).reshape(-1)
    size = 1 << (n - 1).bit_length()
    padded = np.full(size, n, dtype=np.int64)  # padding ranks above every real rank, at the end
    padded[:n] = ranks
    inversions = 0
    width = 1
    while width < size:
        blocks = padded.reshape(-1, 2, width)
        offsets = (np.arange(blocks.shape[0], dtype=np.int64) * (n + 1))[:, None]
        left = (blocks[:, 0, :] + offsets).reshape(-1)
        right = (blocks[:, 1, :] + offsets).reshape(-1)
        not_greater = np.searchsorted(left, right, side="right") - np.repeat(np.arange(blocks.shape[0]) * width, width)
        inversions += int(np.sum(width - not_greater))
        padded = np.sort(blocks.reshape(-1, 2 * width), axis=1).reshape(-1)
        width *= 2
    return inversions


def ranking_figures(reference: np.ndarray, candidate: np.ndarray, k: int = TOP_K) -> dict:
    """Compares two [users, movies] score matrices row by row.

    Returns:
        ranking_users, ranking_movies, top10_overlap (mean), top10_overlap_min,
        kendall_tau (mean), kendall_tau_min.
    """
    reference = np.asarray(reference)
    candidate = np.asarray(candidate)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(f"score matrices differ: {reference.shape} and {candidate.shape}")
    overlaps = np.array([top_k_overlap(r, c, k) for r, c in zip(reference, candidate)])
    taus = np.array([kendall_tau_b(r, c) for r, c in zip(reference, candidate)])
    return {
        "ranking_users": int(reference.shape[0]),
        "ranking_movies": int(reference.shape[1]),
        "top10_overlap": float(overlaps.mean()),
        "top10_overlap_min": float(overlaps.min()),
        "kendall_tau": float(np.nanmean(taus)),
        "kendall_tau_min": float(np.nanmin(taus)),
    }


def max_abs_difference(reference: np.ndarray, candidate: np.ndarray) -> float:
    """The largest |candidate - reference| over two arrays of the same shape (0 when empty)."""
    difference = np.asarray(candidate, np.float64) - np.asarray(reference, np.float64)
    return float(np.max(np.abs(difference), initial=0.0))


# Figure -> the tolerance that bounds it, and whether the bound is an upper one.
CHECKED_FIGURES = (
    ("max_abs_diff", "max_abs_diff", True),
    ("ranking_max_abs_diff", "max_abs_diff", True),
    ("rmse_diff", "rmse_diff", True),
    ("top10_overlap", "top10_overlap", False),
    ("kendall_tau", "kendall_tau", False),
    ("top10_identical", "top10_identical", False),
)


def failed_checks(figures: dict, tolerances: Tolerances, signature: Optional[str] = None) -> list[CheckFailure]:
    """Holds one signature's parity figures against the bounds; returns every check that fails.

    Each figure the signature reports is held to its bound (`CHECKED_FIGURES`);
    one that is None, NaN or out of bounds fails. Checks are named
    `parity.SIGNATURE.FIGURE` (`parity.FIGURE` without a signature).
    """
    failures = []
    for name, bound_name, upper in CHECKED_FIGURES:
        bound = getattr(tolerances, bound_name)
        if bound is None or name not in figures:
            continue
        figure: Optional[float] = figures[name]
        broken = figure is None or not np.isfinite(figure) or (figure > bound if upper else figure < bound)
        if broken:
            relation = "<=" if upper else ">="
            failures.append(
                CheckFailure(
                    check=f"parity.{signature}.{name}" if signature else f"parity.{name}",
                    message=f"{signature + ': ' if signature else ''}{name} is {_figure(figure)}, must be {relation} "
                    f"{_figure(bound)} "
                    f"(loosen with --tolerance {bound_name}=VALUE only if that is acceptable)",
                    figure=figure,
                    bound=bound,
                )
            )
    return failures


def _figure(value: Optional[float]) -> str:
    if value is None:
        return "missing"
    return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.4f}"

"""Reading the serving models' independent references (reference.json's "serving" part).

The references come from numpy over the factor tables, a numpy ridge solve of
hand-cleaned histories, and plain interpreter calls (see serving_fixtures.py);
never from the Ranker.
"""

from __future__ import annotations

import numpy as np

from tests.device_runtime import serving_fixtures as sf


def catalog_scores(serving: dict, model: str, user: str, tower_key: str = "litert_scores") -> dict[str, float]:
    """Title -> reference score of every movie for a user id (an unknown id gets the unknown-user row)."""
    if model in sf.FACTOR_MODELS:
        reference = serving["factor"][model]
        users = reference["users"]
        row = users.index(user) + 1 if user in users else 0
        return dict(zip(reference["movies"], reference["scores"][row]))
    reference = serving["tower"][model]
    users = reference["users"]
    row = users.index(user) if user in users else len(users) - 1  # the last user is unknown
    return dict(zip(reference["movies"], reference[tower_key][row]))


def state_scores(serving: dict, model: str, history: str) -> dict[str, float]:
    """Title -> reference score of every movie for a named history (serving_fixtures._histories)."""
    reference = serving["factor"][model]
    return dict(zip(reference["movies"], reference["states"][history]["scores"]))


def best_first(scores: dict[str, float], order: list[str]) -> list[str]:
    """Titles by descending reference score, ties in `order`."""
    position = {title: i for i, title in enumerate(order)}
    return sorted(scores, key=lambda title: (-scores[title], position[title]))


def as_array(scores: dict[str, float], titles) -> np.ndarray:
    return np.array([scores[title] for title in titles])


def unknown_movie_score(serving: dict, model: str, user: str) -> float:
    """The reference score of a title the factor model does not know, for a user id."""
    reference = serving["factor"][model]
    users = reference["users"]
    return reference["unknown_movie"][users.index(user) + 1 if user in users else 0]

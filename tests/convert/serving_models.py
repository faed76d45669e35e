"""A factor-family SavedModel, small and seeded, built with `train.serving` as training exports the default preset.

`factor_saved_model` serves random `FactorTables` over the real MovieLens 100K
vocabularies (so the offline parity data matches them) without minutes of
training. (The tower family is the tiny tutorial export, `tests.factories`.)
Needs TensorFlow: call it only from tests marked `@pytest.mark.tensorflow`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GLOBAL_MEAN = 3.53
BIAS_SCALE = 0.3
VECTOR_SCALE = 0.25
FACTOR_DIMENSION = 8
RIDGE = 4.0


def factor_tables(seed: int = 0, dimension: int = FACTOR_DIMENSION):
    """Random factor tables over the offline data's vocabularies; row 0 (the unknown id) is zeros."""
    from train import load_ratings
    from train.serving import FactorTables

    ratings = load_ratings()
    users = tuple(str(u) for u in ratings.unique_users())
    movies = tuple(str(m) for m in ratings.unique_movies())
    rng = np.random.default_rng(seed)

    def table(rows: int, *shape: int, scale: float) -> np.ndarray:
        values = rng.normal(0.0, scale, (rows, *shape)).astype(np.float32)
        values[0] = 0.0
        return values

    return FactorTables(
        global_mean=GLOBAL_MEAN,
        user_bias=table(len(users) + 1, scale=BIAS_SCALE),
        movie_bias=table(len(movies) + 1, scale=BIAS_SCALE),
        user_vectors=table(len(users) + 1, dimension, scale=VECTOR_SCALE),
        movie_vectors=table(len(movies) + 1, dimension, scale=VECTOR_SCALE),
        users=users,
        movies=movies,
    )


def factor_saved_model(path: Path, tables=None, ridge: float = RIDGE) -> Path:
    """Exports `FactorServing` (all seven signatures) over `tables` (default: `factor_tables()`)."""
    from train.serving import FactorServing, FoldIn, export_saved_model

    export_saved_model(FactorServing(tables or factor_tables(), FoldIn(ridge, ridge)), Path(path))
    return Path(path)

"""SavedModels of both served families, small and seeded, built with `train.serving` as training exports them.

`factor_saved_model` serves random `FactorTables` over the real MovieLens 100K
vocabularies (so the offline parity data matches them); `tower_saved_model`
serves the tutorial's tower trained for one epoch on 2,000 rows. Each needs
TensorFlow: call them only from tests marked `@pytest.mark.tensorflow`.
"""

from __future__ import annotations

import dataclasses
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


def tower_saved_model(path: Path, rows: int = 2000) -> Path:
    """Exports `TowerServing` (strings and index space) of the tutorial's tower fitted on `rows` training rows."""
    from train.config import preset_config
    from train.data import load_ratings, split_ratings
    from train.model import fit_model, in_memory_training_data
    from train.serving import TowerServing, export_saved_model

    ratings = load_ratings()
    train_rows, _ = split_ratings(ratings)
    config = dataclasses.replace(preset_config("tutorial", epochs=1), batch_size=256)
    data = in_memory_training_data(train_rows.take(np.arange(rows)), config)
    tower = fit_model(data, list(ratings.unique_users()), list(ratings.unique_movies()), config).model.ranking_model
    export_saved_model(TowerServing.from_tower(tower), Path(path))
    return Path(path)

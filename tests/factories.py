"""Small, real models for tests: trained in seconds on a slice of the offline data.

Only for the main environment (needs TensorFlow); import inside fixtures of
tests marked `@pytest.mark.tensorflow`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

TINY_TRAIN_ROWS = 2000


def train_tiny_export(
    out_dir: Path, preset: str = "tutorial", rows: int = TINY_TRAIN_ROWS, epochs: int = 1, seed: int = 42
) -> Path:
    """Runs the real training pipeline on `rows` training rows; returns the export folder."""
    from train import preset_config, train_and_export

    config = preset_config(preset, epochs=epochs, seed=seed)
    config = dataclasses.replace(config, batch_size=min(config.batch_size, 256))
    train_and_export(config, Path(out_dir), max_train_rows=rows)
    return Path(out_dir)


def tutorial_style_saved_model(path: Path, rows: int = TINY_TRAIN_ROWS) -> Path:
    """Exports a model exactly as the tutorial does: `tf.saved_model.save(model, path)`.

    Its signature has inputs `movie_title` and `user_id` and the output
    `output_1` of shape [N, 1].
    """
    from train.config import preset_config
    from train.data import load_ratings, split_ratings
    from train.model import fit_model, in_memory_training_data

    import tensorflow as tf

    ratings = load_ratings()
    train_rows, _ = split_ratings(ratings)
    train_rows = train_rows.take(np.arange(rows))
    config = dataclasses.replace(preset_config("tutorial", epochs=1), batch_size=256)
    users, movies = list(ratings.unique_users()), list(ratings.unique_movies())
    trained = fit_model(in_memory_training_data(train_rows, config), users, movies, config)
    # The tutorial calls the model once on a dict before saving.
    trained.model({"user_id": np.array(["42"]), "movie_title": np.array(["Speed (1994)"])})
    tf.saved_model.save(trained.model, str(path))
    return Path(path)

"""Train the TFRS basic-ranking model on MovieLens 100K and export a SavedModel.

Run `python -m train --out DIR`; from Python, `train_and_export(config, out_dir)`.
Importing this package is cheap: TensorFlow is loaded by the functions that need it.
"""

from train.artifacts import MOVIES_VOCAB, METRICS_FILE, SAVED_MODEL_DIR, USERS_VOCAB
from train.config import DEFAULT_PRESET, PRESETS, TrainConfig, preset_config
from train.data import DEFAULT_SOURCE, Ratings, load_ratings, split_ratings
from train.errors import ConfigError, DataError, OutputError, TrainError

__all__ = [
    "ConfigError",
    "DataError",
    "DEFAULT_SOURCE",
    "METRICS_FILE",
    "MOVIES_VOCAB",
    "OutputError",
    "Ratings",
    "SAVED_MODEL_DIR",
    "TrainError",
    "USERS_VOCAB",
    "load_ratings",
    "split_ratings",
    "train_and_export",
    "preset_config",
    "PRESETS",
    "DEFAULT_PRESET",
    "TrainConfig",
    "TrainingResult",
]


def __getattr__(name):
    # The model and pipeline import TensorFlow; load them on first use only.
    if name in ("train_and_export", "TrainingResult"):
        from train import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")

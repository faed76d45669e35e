"""The training package's entry point: data -> split -> fit -> evaluate -> export."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np

from train import artifacts
from train.data import Ratings, load_ratings, split_ratings
from train.config import TrainConfig
from train.model import export_saved_model, fit_model, predict, rmse

logger = logging.getLogger(__name__)

_VERSIONED_PACKAGES = ("tensorflow", "tf-keras", "tensorflow-recommenders", "numpy")


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """Where the export went and the figures written to its metrics.json."""

    out_dir: Path
    metrics: dict

    @property
    def test_rmse(self) -> float:
        return self.metrics["test_rmse"]


def train_and_export(
    config: TrainConfig,
    out_dir: Path,
    data_source: Optional[str] = None,
    max_train_rows: Optional[int] = None,
) -> TrainingResult:
    """Trains a ranking model on MovieLens 100K and writes the export folder.

    Args:
        config: preset and hyper-parameters (see `train.model.PRESETS`).
        out_dir: the export folder (see `train.artifacts` for its layout); it is
            built beside itself and renamed into place when complete.
        data_source: "recbole" (default, offline), "tfds", or an ml-100k folder.
        max_train_rows: train on only the first N training rows (for quick
            tests); the test split is unchanged.

    Returns:
        The folder and its metrics.

    Raises:
        DataError: the data source is missing or malformed.
        OutputError: `out_dir` exists and is not an earlier output of this tool.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    artifacts.check_output_folder(out_dir)  # fail before minutes of work, not after

    ratings = load_ratings(data_source)
    train_rows, test_rows = split_ratings(ratings)
    if max_train_rows is not None:
        train_rows = train_rows.take(np.arange(min(max_train_rows, len(train_rows))))
    # Vocabularies come from all rows, as in the tutorial; unseen ids share one extra row.
    users = [str(u) for u in ratings.unique_users()]
    movies = [str(m) for m in ratings.unique_movies()]

    logger.info("training preset %r on %d rows (%d users, %d movies)", config.preset, len(train_rows), len(users), len(movies))
    trained = fit_model(train_rows, users, movies, config)
    test_rmse = rmse(predict(trained.model, test_rows), test_rows.user_rating)
    train_rmse = rmse(predict(trained.model, train_rows), train_rows.user_rating)
    logger.info("test RMSE %.4f, train RMSE %.4f", test_rmse, train_rmse)

    metrics = {
        "producer": artifacts.PRODUCER,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "preset": config.preset,
        "hyperparameters": config.to_dict(),
        "seed": config.seed,
        "test_rmse": test_rmse,
        "train_rmse": train_rmse,
        "validation_rmse": trained.validation_rmse,
        "epochs_run": trained.epochs_run,
        "best_epoch": trained.best_epoch,
        "rows": {"total": len(ratings), "train": len(train_rows), "test": len(test_rows)},
        "data": {"source": ratings.source, "sha256": ratings.sha256},
        "vocabulary_sizes": {"users": len(users), "movies": len(movies)},
        "versions": _versions(),
        "fit_seconds": round(trained.fit_seconds, 3),
    }

    def build(staging: Path) -> None:
        export_saved_model(trained.model, staging / artifacts.SAVED_MODEL_DIR)
        artifacts.write_vocabulary(staging / artifacts.USERS_VOCAB, users)
        artifacts.write_vocabulary(staging / artifacts.MOVIES_VOCAB, movies)
        metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
        # metrics.json is written last: it marks a complete export.
        (staging / artifacts.METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")

    artifacts.publish_atomically(out_dir, build)
    logger.info("wrote %s", out_dir)
    return TrainingResult(out_dir, metrics)


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions

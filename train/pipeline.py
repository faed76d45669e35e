"""The training package's entry point: data -> split -> fit -> evaluate -> export."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import platform
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np

from train import artifacts, holdout, streaming
from train.config import Architecture, TrainConfig
from train.data import load_ratings, split_ratings
from train.errors import ConfigError
from train.metrics import ndcg_at_k, rmse
from train.distributed import DEFAULT_WORKER_TIMEOUT_SECONDS, Cluster, lost_peers_reported, make_strategy

logger = logging.getLogger(__name__)

_VERSIONED_PACKAGES = ("tensorflow", "tf-keras", "tensorflow-recommenders", "numpy")
EVALUATION_BATCH = 8192
SHARDS_PER_WORKER = 2  # in-memory data is written to this many files per worker for auto-sharding


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
    cluster: Optional[Cluster] = None,
    lock_output: bool = True,
    holdout_fraction: Optional[float] = None,
) -> TrainingResult:
    """Trains a ranking model and writes the export folder.

    Args:
        config: preset and hyper-parameters (see `train.config.PRESETS`).
        out_dir: the export folder (layout in `train.artifacts`); it is built
            beside itself and renamed into place when complete.
        data_source: "recbole" (default, offline MovieLens 100K), "tfds", a
            GroupLens ml-100k folder, or a sharded TSV folder (`train.streaming`).
        max_train_rows: train on only the first N training rows of an
            in-memory source (quick tests); the test split is unchanged.
        cluster: this worker's place in a multi-worker cluster (from
            TF_CONFIG), or None for one process. Only the chief writes `out_dir`.
        lock_output: hold `out_dir`'s lock for the run (off in launched workers,
            whose launcher holds it).
        holdout_fraction: hold this share of the users out of training entirely
            (`train.holdout`); None trains on every user.

    Returns:
        The folder and its metrics.

    Raises:
        ConfigError: `max_train_rows` or `holdout_fraction` is out of range.
        DataError: the data source is missing or malformed.
        OutputError: `out_dir` is not an earlier output of this tool, or
            another run is writing it.
    """
    started = time.perf_counter()
    check_run_options(data_source, max_train_rows, holdout_fraction=holdout_fraction)
    out_dir = Path(out_dir)
    # The strategy must exist before any other TensorFlow op runs.
    strategy = make_strategy(cluster) if cluster else None
    is_chief = cluster is None or cluster.is_chief
    lock = artifacts.output_lock(out_dir) if (is_chief and lock_output) else contextlib.nullcontext()
    with lock, tempfile.TemporaryDirectory(prefix="ranking-kit-shards-") as scratch:
        if is_chief:
            artifacts.check_output_folder(out_dir)  # fail before minutes of work, not after
        source = _prepare_source(config, data_source, max_train_rows, cluster, Path(scratch), holdout_fraction)
        logger.info(
            "training preset %r on %s rows (%d users, %d movies)%s",
            config.preset,
            f"{source.training.train_rows:,}",
            len(source.users),
            len(source.movies),
            f" with {cluster.size} workers" if cluster else "",
        )

        from train.model import dataset_rmse
        from train.serving import export_saved_model, strings_scorer

        with lost_peers_reported(cluster):
            if config.architecture is Architecture.BLEND:
                fitted = _fit_blend(config, source, cluster)
            elif config.architecture is Architecture.FACTORIZATION:
                fitted = _fit_mf(config, source, strategy)
            else:
                fitted = _fit_tower(config, source, strategy)
        score = strings_scorer(fitted.module)
        test_rmse, test_ndcg = _test_figures(score, source)
        train_rmse = dataset_rmse(score, source.train_batches)
        logger.info("test RMSE %.4f, train RMSE %.4f", test_rmse, train_rmse)

        metrics = {
            "producer": artifacts.PRODUCER,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "preset": config.preset,
            "hyperparameters": config.to_dict(),
            "seed": config.seed,
            "test_rmse": test_rmse,
            "train_rmse": train_rmse,
            "test_ndcg_at_10": test_ndcg,
            "validation_rmse": fitted.validation_rmse,
            "epochs_run": fitted.curve.epochs_run,
            "best_epoch": fitted.curve.best_epoch,
            "rows": source.rows,
            "data": source.provenance,
            "vocabulary_sizes": {"users": len(source.users), "movies": len(source.movies)},
            "holdout": source.holdout.to_dict() if source.holdout else None,  # users held out of training
            "distribution": {
                "strategy": "MultiWorkerMirroredStrategy" if strategy else None,
                "workers": cluster.size if cluster else 1,
                "replicas_in_sync": strategy.num_replicas_in_sync if strategy else 1,
            },
            "versions": _versions(),
            "fit_seconds": round(fitted.fit_seconds, 3),
            "train_examples_per_second": round(
                (fitted.examples or fitted.curve.epochs_run * source.training.train_rows) / fitted.fit_seconds, 1
            ),
        }
        if fitted.details:
            metrics["architecture_details"] = fitted.details
        if fitted.fold_in:
            metrics["fold_in"] = fitted.fold_in

        def build(staging: Path) -> None:
            export_saved_model(fitted.module, staging / artifacts.SAVED_MODEL_DIR)
            artifacts.write_vocabulary(staging / artifacts.USERS_VOCAB, source.users)
            artifacts.write_vocabulary(staging / artifacts.MOVIES_VOCAB, source.movies)
            if source.holdout is not None:
                holdout.write_holdout_files(staging, source.holdout)
            metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
            # metrics.json is written last: it marks a complete export.
            artifacts.write_json_atomically(staging / artifacts.METRICS_FILE, metrics)

        if is_chief:
            artifacts.publish_atomically(out_dir, build)
            logger.info("wrote %s", out_dir)
        else:
            # Saving may run collectives, so every worker saves; the others throw theirs away.
            throwaway = Path(scratch) / "export"
            throwaway.mkdir()
            export_saved_model(fitted.module, throwaway / artifacts.SAVED_MODEL_DIR)
            shutil.rmtree(throwaway)
    return TrainingResult(out_dir, metrics)


def check_run_options(
    data_source: Optional[str],
    max_train_rows: Optional[int],
    worker_timeout_seconds: float = DEFAULT_WORKER_TIMEOUT_SECONDS,
    holdout_fraction: Optional[float] = None,
) -> None:
    """Refuses, before any work, options out of range or that the data source cannot honour.

    Raises:
        ConfigError: naming the option, the value and what to do instead.
    """
    if max_train_rows is not None:
        if max_train_rows < 1:
            raise ConfigError(f"--max-train-rows must be >= 1, got {max_train_rows}")
        if data_source and streaming.is_sharded_folder(Path(data_source)):
            raise ConfigError(
                f"--max-train-rows applies to in-memory sources only, and --data {data_source} is a sharded folder; "
                "write fewer rows into its train-*.tsv files, or drop --max-train-rows"
            )
    if not worker_timeout_seconds > 0:
        raise ConfigError(f"--worker-timeout must be > 0 seconds, got {worker_timeout_seconds:g}")
    sharded = bool(data_source) and streaming.is_sharded_folder(Path(data_source))
    holdout.check_holdout_options(holdout_fraction, sharded)


def _test_figures(score, source: "_Source") -> tuple[float, Optional[float]]:
    """Test RMSE, and NDCG@10 over each test user's rated movies when the rows are in memory.

    In-memory test rows are scored once for both figures; streamed ones only
    give the RMSE.
    """
    from train.model import dataset_rmse

    if source.test_rows is None:
        return dataset_rmse(score, source.test_batches), None
    rows = source.test_rows
    scores = np.concatenate(
        [
            score(rows.user_id[start : start + EVALUATION_BATCH], rows.movie_title[start : start + EVALUATION_BATCH])
            for start in range(0, len(rows), EVALUATION_BATCH)
        ]
    )
    return rmse(scores, rows.user_rating), ndcg_at_k(rows.user_id, rows.user_rating, scores, k=10)


@dataclasses.dataclass(frozen=True)
class _Fitted:
    """A trained model ready to export, however it was trained."""

    module: object  # train.serving.TowerServing or FactorServing: every signature of its family
    curve: object  # train.early_stopping.TrainingCurve
    validation_rmse: Optional[float]
    fit_seconds: float
    details: Optional[dict] = None
    fold_in: Optional[dict] = None  # how the fold-in's penalties were chosen (factor models)
    examples: Optional[int] = None  # training examples processed, when not epochs x training rows


def _fit_tower(config: TrainConfig, source: "_Source", strategy) -> _Fitted:
    from train.model import fit_model
    from train.serving import TowerServing

    trained = fit_model(source.training, source.users, source.movies, config, strategy)
    return _Fitted(
        TowerServing.from_tower(trained.model.ranking_model),
        trained.curve,
        trained.curve.best_validation_rmse,
        trained.fit_seconds,
    )


def _fit_blend(config: TrainConfig, source: "_Source", cluster) -> _Fitted:
    if cluster is not None or source.train_rows is None:
        raise ConfigError(
            f"preset {config.preset!r} (the blend) trains on in-memory data on one machine; "
            "use --preset mf (its strongest member alone), adam or tutorial for sharded data or several workers"
        )
    from train.blend import train_blend
    from train.model import carve_validation
    from train.serving import FactorServing

    fit_rows, validation_rows = carve_validation(source.train_rows, config)
    # Side features come from these training rows only, inside train_blend.
    result = train_blend(fit_rows, validation_rows, source.users, source.movies, config)
    fold_in, record = _fold_in(result.tables, fit_rows, validation_rows, config.seed)
    return _Fitted(
        FactorServing(result.tables, fold_in),
        curve=result.members[0].curve,  # the matrix-factorisation member's epochs
        validation_rmse=result.folded_validation_rmse,
        fit_seconds=result.fit_seconds,
        details=result.to_dict(),
        fold_in=record,
    )


def _fold_in(tables, fit_rows, validation_rows, seed: int):
    """The fold-in's penalties, chosen on the validation rows (never the test rows), and their record."""
    from train.fold_in import DEFAULT_RIDGE, choose_fold_in
    from train.serving import FoldIn

    if validation_rows is None:
        record = {"vector_ridge": DEFAULT_RIDGE, "bias_ridge": DEFAULT_RIDGE, "chosen_on": "no validation rows: the defaults"}
        return FoldIn(DEFAULT_RIDGE, DEFAULT_RIDGE), record
    choice = choose_fold_in(tables, fit_rows, validation_rows, seed)
    return FoldIn(choice.vector_ridge, choice.bias_ridge), choice.to_dict()


def _fit_mf(config: TrainConfig, source: "_Source", strategy) -> _Fitted:
    """The `mf` preset: phase 1 with early stopping, then the refit (train.mf), from memory or shards."""
    from train import mf
    from train.serving import FactorServing

    if source.mf_inputs is not None:
        inputs = source.mf_inputs
    else:  # in memory, one process; side features and history from the training rows only
        inputs = mf.inputs_from_rows(source.train_rows, source.users, source.movies, config)
    result = mf.train_mf(inputs, config, strategy)
    # The penalties are chosen with the phase-1 tables, which never saw the validation rows; the refit
    # tables (trained on every training row) are the ones exported.
    fit_rows, validation_rows = mf.fold_in_rows(inputs, _MF_FOLD_IN_USERS, config.seed)
    if len(validation_rows.user_id) == 0:
        validation_rows = None
    fold_in, record = _fold_in(result.chosen_tables, fit_rows, validation_rows, config.seed)
    return _Fitted(
        FactorServing(result.tables, fold_in),
        curve=result.curve,
        validation_rmse=result.curve.best_validation_rmse,
        fit_seconds=result.fit_seconds,
        details=result.details(inputs),
        fold_in=record,
        examples=result.examples,
    )


# At most this many validation users choose the mf fold-in's penalties (a few seconds of numpy at any size).
_MF_FOLD_IN_USERS = 1000


@dataclasses.dataclass(frozen=True)
class _Source:
    training: object  # train.model.TrainingData
    test_batches: object  # tf.data.Dataset
    train_batches: object  # tf.data.Dataset (for train RMSE)
    users: tuple
    movies: tuple
    rows: dict
    provenance: dict
    train_rows: Optional[object] = None  # the training rows when held in memory
    test_rows: Optional[object] = None  # the test rows when held in memory
    mf_inputs: Optional[object] = None  # train.mf.MfInputs from shards (the mf preset)
    holdout: Optional[holdout.Holdout] = None  # the users held out of training, and their rows


def _prepare_source(config, data_source, max_train_rows, cluster, scratch: Path, holdout_fraction=None) -> _Source:
    from train.model import carve_validation, in_memory_training_data, rows_dataset

    if data_source and streaming.is_sharded_folder(Path(data_source)):
        shards = streaming.scan_shards(Path(data_source), _history_request(config))
        return _sharded_source(config, shards, {"source": str(Path(data_source).resolve()), "sha256": None})

    ratings = load_ratings(data_source)
    train_rows, test_rows = split_ratings(ratings)
    held_out, train_rows, test_rows = holdout.hold_out(ratings, train_rows, test_rows, holdout_fraction, config.seed)
    if max_train_rows is not None:
        train_rows = train_rows.take(np.arange(min(max_train_rows, len(train_rows))))
    # Vocabularies come from all rows, as in the tutorial; unseen ids share one extra row.
    users = tuple(str(u) for u in ratings.unique_users())
    users = holdout.without_held_out(users, held_out)
    movies = tuple(str(m) for m in ratings.unique_movies())
    provenance = {"source": ratings.source, "sha256": ratings.sha256}
    rows = {"total": len(ratings), "train": len(train_rows), "test": len(test_rows)}

    if cluster is None:
        return _Source(
            training=in_memory_training_data(train_rows, config),
            test_batches=rows_dataset(test_rows).batch(EVALUATION_BATCH),
            train_batches=rows_dataset(train_rows).batch(EVALUATION_BATCH),
            users=users,
            movies=movies,
            rows=rows,
            provenance=provenance,
            train_rows=train_rows,
            test_rows=test_rows,
            holdout=held_out,
        )
    # Several workers: write the same split to shards so tf.data can deal them out.
    fit_rows, validation_rows = carve_validation(train_rows, config)
    shard_count = SHARDS_PER_WORKER * cluster.size
    if config.architecture is Architecture.FACTORIZATION:
        _write_mf_shards(scratch, fit_rows, validation_rows, test_rows, shard_count)
    else:
        streaming.write_shards(
            scratch, "train", fit_rows.user_id, fit_rows.movie_title, fit_rows.user_rating, shard_count
        )
        if validation_rows is not None:
            streaming.write_shards(
                scratch, "validation", validation_rows.user_id, validation_rows.movie_title,
                validation_rows.user_rating, 1,
            )
        streaming.write_shards(scratch, "test", test_rows.user_id, test_rows.movie_title, test_rows.user_rating, 1)
    artifacts.write_vocabulary(scratch / artifacts.USERS_VOCAB, users)
    artifacts.write_vocabulary(scratch / artifacts.MOVIES_VOCAB, movies)
    source = _sharded_source(config, streaming.scan_shards(scratch, _history_request(config)), provenance)
    return dataclasses.replace(source, rows=rows, holdout=held_out)


def _history_request(config: TrainConfig) -> Optional["streaming.HistoryRequest"]:
    """What the scan of a sharded folder keeps for the mf preset; None for the others."""
    if config.architecture is not Architecture.FACTORIZATION:
        return None
    return streaming.HistoryRequest(config.factorization.max_rated_per_user, config.validation_fraction)


def _write_mf_shards(folder: Path, fit_rows, validation_rows, test_rows, shard_count: int) -> None:
    """MovieLens as the mf preset streams it: timestamps in the rows, side files from the training rows only."""
    from train.side_files import write_side_files

    for split, rows, count in (("train", fit_rows, shard_count), ("validation", validation_rows, shard_count),
                               ("test", test_rows, 1)):
        if rows is not None:
            streaming.write_shards(
                folder, split, rows.user_id, rows.movie_title, rows.user_rating, count, timestamps=rows.timestamp
            )
    write_side_files(folder, [fit_rows, validation_rows])


def _sharded_source(config, shards: "streaming.ShardedData", provenance: dict) -> _Source:
    mf_inputs = None
    if shards.training is not None:
        from train.mf import inputs_from_shards

        mf_inputs = inputs_from_shards(shards, config)
    return _Source(
        training=mf_inputs.fit_data if mf_inputs else streaming.streaming_training_data(shards, config),
        test_batches=streaming.evaluation_batches(shards, "test", EVALUATION_BATCH),
        train_batches=streaming.evaluation_batches(shards, "train", EVALUATION_BATCH, streaming.VALIDATION_MAX_ROWS),
        users=shards.users,
        movies=shards.movies,
        rows={"total": sum(shards.rows.values()), **shards.rows},
        provenance=provenance,
        mf_inputs=mf_inputs,
    )


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions

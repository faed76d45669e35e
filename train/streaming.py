"""Sharded TSV rating files, streamed through tf.data: data larger than memory.

A sharded data folder holds

    train-00000-of-00004.tsv ... (required)   rows to train on
    test-00000-of-00001.tsv ...  (required)   rows for the reported test RMSE
    validation-*.tsv             (optional)   rows for early stopping
    vocab/users.txt, vocab/movies.txt (optional) the vocabularies, one id a line
    users.tsv, movies.tsv        (optional)   side features (`train.side_files`; `mf` preset)

Every rating file starts with the header `user_id<TAB>movie_title<TAB>user_rating`,
optionally followed by `<TAB>timestamp` (whole seconds; then every file of the
folder has it), and has one rating a line (UTF-8). Without validation files, a
stable hash of each training line holds out `validation_fraction` of the rows.
One streaming pass over all files checks every line (a bad one is named by
file and line), counts the rows and, without vocab files, collects the ids; for
the `mf` preset the same pass keeps each user's most recent ratings
(`train.history`), so only the vocabularies and users x N ratings (never the
rows) have to fit in memory. Write such a folder with `write_shards` (and
`train.side_files.write_side_files`) or `python -m train.synthetic`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from device_runtime.files import write_atomically
from device_runtime.signature import ITEM_INPUT, USER_INPUT
from train import artifacts, side_files
from train.errors import DataError
from train.history import HistoryCollector, RatingHistory
from train.side_features import SideFeatures

logger = logging.getLogger(__name__)

HEADER = f"{USER_INPUT}\t{ITEM_INPUT}\tuser_rating"
TIMESTAMP_HEADER = f"{HEADER}\ttimestamp"
SPLITS = ("train", "validation", "test")
SHUFFLE_BUFFER = 100_000
VALIDATION_MAX_ROWS = 200_000  # scored on every worker after each epoch
HASH_BUCKETS = 10_000
HASH_BLOCK = 4096  # lines hashed at a time when holding out validation rows
CHUNK_ROWS = 100_000  # rows handed to the history at a time


@dataclasses.dataclass(frozen=True)
class HistoryRequest:
    """Asks the scan for what the `mf` preset needs besides the rows.

    Attributes:
        max_per_user: N, each user's most recent ratings to keep (`train.history`).
        validation_fraction: the share of training lines held out by hash when
            the folder has no validation files (as `streaming_training_data` does).
    """

    max_per_user: int
    validation_fraction: float


@dataclasses.dataclass(frozen=True)
class TrainingRows:
    """What the scan learnt about the training rows for the `mf` preset.

    Attributes:
        history: each user's most recent ratings; held-out ones are flagged.
        side: side-feature tables from the folder's side files, or None without them.
        fit_rows, held_out_rows: training rows trained on and held out (by
            validation files or by hash).
        fit_mean, training_mean: the mean rating of the fit rows and of every training row.
    """

    history: RatingHistory
    side: Optional[SideFeatures]
    fit_rows: int
    held_out_rows: int
    fit_mean: float
    training_mean: float


@dataclasses.dataclass(frozen=True)
class ShardedData:
    """A scanned sharded data folder: its files, row counts and vocabularies."""

    folder: Path
    files: dict  # split -> tuple of paths
    rows: dict  # split -> row count
    users: tuple[str, ...]
    movies: tuple[str, ...]
    has_timestamps: bool = False
    training: Optional[TrainingRows] = None  # with a HistoryRequest only


def is_sharded_folder(folder: Path) -> bool:
    """True if `folder` looks like a sharded data folder (has train-*.tsv)."""
    return Path(folder).is_dir() and any(Path(folder).glob("train-*.tsv"))


def scan_shards(folder: Path, history: Optional[HistoryRequest] = None) -> ShardedData:
    """Checks every file and counts rows in one streaming pass; collects vocabularies.

    Args:
        folder: the sharded data folder.
        history: also keep each user's most recent training ratings, and read
            the side files (the `mf` preset); None for the tower presets.

    Raises:
        DataError: a required split is missing, or a line of a rating or side
            file is malformed (the message names the file and line).
    """
    folder = Path(folder)
    files = {split: tuple(sorted(str(p) for p in folder.glob(f"{split}-*.tsv"))) for split in SPLITS}
    for split in ("train", "test"):
        if not files[split]:
            raise DataError(f"{folder} has no {split}-*.tsv files; a sharded data folder needs train and test shards")
    header = _header_of(Path(files["train"][0]))
    threshold = 0
    if history is not None and not files["validation"]:
        threshold = int(round(history.validation_fraction * HASH_BUCKETS))
    scan = _Scan(header == TIMESTAMP_HEADER, history, threshold)
    rows = {}
    for split in SPLITS:
        rows[split] = sum(scan.file(Path(path), header, split) for path in files[split])
    given_users = folder / artifacts.USERS_VOCAB
    given_movies = folder / artifacts.MOVIES_VOCAB
    if given_users.is_file() and given_movies.is_file():
        user_vocab = tuple(artifacts.read_vocabulary(given_users))
        movie_vocab = tuple(artifacts.read_vocabulary(given_movies))
    else:
        user_vocab, movie_vocab = tuple(sorted(scan.users)), tuple(sorted(scan.movies))
    logger.info(
        "scanned %s: %s rows; %d users, %d movies",
        folder,
        ", ".join(f"{split} {rows[split]:,}" for split in SPLITS),
        len(user_vocab),
        len(movie_vocab),
    )
    training = None if history is None else scan.training_rows(folder, user_vocab, movie_vocab)
    return ShardedData(folder, files, rows, user_vocab, movie_vocab, header == TIMESTAMP_HEADER, training)


def _header_of(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as lines:
            header = lines.readline().rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    if header not in (HEADER, TIMESTAMP_HEADER):
        raise DataError(f"{path} line 1: expected the header {HEADER!r} (optionally + '\\ttimestamp'), "
                        f"found {header[:80]!r}")
    return header


class _Scan:
    """The one pass over every line: checks, ids, and (for the `mf` preset) the training rows' history."""

    def __init__(self, has_timestamps: bool, history: Optional[HistoryRequest], threshold: int):
        self.has_timestamps = has_timestamps
        self.users: dict[str, int] = {}  # id -> its number in order of first appearance
        self.movies: dict[str, int] = {}
        self.collector = None if history is None else HistoryCollector(history.max_per_user)
        self.threshold = threshold
        self.position = 0  # training rows seen so far: the order key without timestamps
        self.sums = np.zeros(2)  # rating sums of fit and held-out rows
        self.counts = np.zeros(2, np.int64)
        self.trained_users: set[int] = set()
        self.trained_movies: set[int] = set()

    def file(self, path: Path, header: str, split: str) -> int:
        """Checks one file line by line; returns its row count."""
        collect = self.collector is not None and split != "test"
        columns = header.count("\t") + 1
        users, movies = self.users, self.movies
        chunk: list[tuple] = []
        count = 0
        try:
            with open(path, encoding="utf-8", newline="") as lines:
                found = lines.readline().rstrip("\r\n")
                if found != header:
                    raise DataError(f"{path} line 1: expected the header {header!r} (as in every rating file "
                                    f"of the folder), found {found[:80]!r}")
                for line_no, line in enumerate(lines, start=2):
                    text = line.rstrip("\r\n")
                    fields = text.split("\t")
                    if len(fields) != columns:
                        raise DataError(
                            f"{path} line {line_no}: expected {columns} tab-separated columns, found {len(fields)}"
                        )
                    try:
                        rating = float(fields[2])
                    except ValueError:
                        raise DataError(f"{path} line {line_no}: rating {fields[2]!r} is not a number") from None
                    if not 1.0 <= rating <= 5.0:
                        raise DataError(f"{path} line {line_no}: rating {fields[2]} is outside 1..5")
                    if columns == 4:
                        try:
                            key = int(fields[3])
                        except ValueError:
                            raise DataError(
                                f"{path} line {line_no}: timestamp {fields[3]!r} is not a whole number of seconds"
                            ) from None
                    user = users.setdefault(fields[0], len(users))
                    movie = movies.setdefault(fields[1], len(movies))
                    if collect:
                        chunk.append((user, movie, rating, key if columns == 4 else self.position, text))
                        self.position += 1
                        if len(chunk) >= CHUNK_ROWS:
                            self._add(chunk, split)
                            chunk = []
                    count += 1
        except UnicodeDecodeError as error:
            raise DataError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
        except OSError as error:
            raise DataError(f"cannot read {path}: {error.strerror}") from None
        if chunk:
            self._add(chunk, split)
        return count

    def _add(self, chunk: list, split: str) -> None:
        users, movies, ratings, keys, lines = zip(*chunk)
        users, movies = np.array(users, np.int32), np.array(movies, np.int32)
        ratings = np.array(ratings, np.float32)
        if split == "validation":
            held_out = np.ones(len(chunk), bool)
        elif self.threshold:
            held_out = _held_out_by_hash(lines, self.threshold)
        else:
            held_out = np.zeros(len(chunk), bool)
        self.collector.add(users, movies, ratings, np.array(keys, np.int64), held_out)
        self.sums += [ratings[~held_out].sum(dtype=np.float64), ratings[held_out].sum(dtype=np.float64)]
        self.counts += [np.count_nonzero(~held_out), np.count_nonzero(held_out)]
        self.trained_users.update(np.unique(users).tolist())
        self.trained_movies.update(np.unique(movies).tolist())

    def training_rows(self, folder: Path, users: Sequence[str], movies: Sequence[str]) -> TrainingRows:
        """The history in vocabulary rows, and the side tables over the ids of the training rows."""
        user_rows = _rows_of(self.users, users)
        movie_rows = _rows_of(self.movies, movies)
        history = self.collector.finish(user_rows, movie_rows, len(users) + 1)
        trained_users = np.zeros(len(users) + 1, bool)
        trained_users[user_rows[sorted(self.trained_users)]] = True
        trained_movies = np.zeros(len(movies) + 1, bool)
        trained_movies[movie_rows[sorted(self.trained_movies)]] = True
        trained_users[0] = trained_movies[0] = False
        side = side_files.read_side_files(folder, users, movies, trained_users, trained_movies)
        fit_rows, held_out_rows = (int(count) for count in self.counts)
        if fit_rows == 0:
            raise DataError(f"{folder} has no training rows left to fit on once the validation rows are held out")
        logger.info(
            "history: %s ratings kept of %s training rows (at most %d per user; %d users reach the cap)",
            f"{len(history):,}",
            f"{fit_rows + held_out_rows:,}",
            history.max_per_user,
            history.capped_users(),
        )
        return TrainingRows(
            history=history,
            side=side,
            fit_rows=fit_rows,
            held_out_rows=held_out_rows,
            fit_mean=float(self.sums[0] / fit_rows),
            training_mean=float(self.sums.sum() / (fit_rows + held_out_rows)),
        )


def _rows_of(numbers: dict, vocabulary: Sequence[str]) -> np.ndarray:
    """The vocabulary row of every id numbered in `numbers` (0 for ids the vocabulary lacks)."""
    row_of = {item: row for row, item in enumerate(vocabulary, start=1)}
    rows = np.zeros(len(numbers), np.int32)
    for item, number in numbers.items():
        rows[number] = row_of.get(item, 0)
    return rows


def _held_out_by_hash(lines: Sequence[str], threshold: int) -> np.ndarray:
    """The lines that `streaming_training_data` holds out: the same hash of the same text."""
    import tensorflow as tf

    return tf.strings.to_hash_bucket_fast(tf.constant(list(lines)), HASH_BUCKETS).numpy() < threshold


def write_shards(
    folder: Path,
    split: str,
    user_ids: Sequence,
    movie_titles: Sequence,
    ratings: Sequence,
    shards: int,
    timestamps: Optional[Sequence] = None,
) -> None:
    """Writes rows as `shards` TSV files `SPLIT-0000i-of-0000n.tsv`, each atomically.

    Rows are dealt round-robin, so shards differ in size by at most one row.
    With `timestamps`, the files have the fourth column `timestamp`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        path = folder / f"{split}-{shard:05d}-of-{shards:05d}.tsv"
        rows = zip(user_ids[shard::shards], movie_titles[shard::shards], ratings[shard::shards])
        lines = [f"{user}\t{movie}\t{float(rating):g}" for user, movie, rating in rows]
        if timestamps is not None:
            lines = [f"{line}\t{int(stamp)}" for line, stamp in zip(lines, timestamps[shard::shards])]
        lines.insert(0, HEADER if timestamps is None else TIMESTAMP_HEADER)
        write_atomically(path, "\n".join(lines) + "\n")


def streaming_training_data(data: ShardedData, config, include_validation: bool = False):
    """Builds the `TrainingData` for `train.model.fit_model` from the shards.

    The training files are read as a file-list dataset so that, under a
    multi-worker strategy, tf.data's auto-sharding gives each worker its own
    files (or every n-th row when there are fewer files than workers). The
    batches are of `config.batch_size` rows, the global batch.

    Args:
        data: the scanned folder.
        config: the preset (batch size, seed, validation fraction).
        include_validation: train on every training row, the held-out ones
            included, without validation batches (a refit for a chosen epoch count).
    """
    import tensorflow as tf

    from train.model import VALIDATION_BATCH, TrainingData

    held_out = 0 if data.files["validation"] else config.validation_fraction
    threshold = int(round(held_out * HASH_BUCKETS))

    def where(lines, held_out: bool):
        """The lines the hash holds out (or keeps), decided a block at a time: a per-line
        `filter` costs a function call per line, most of an epoch's time on large data."""

        def keep(block):
            in_validation = tf.strings.to_hash_bucket_fast(block, HASH_BUCKETS) < threshold
            return tf.boolean_mask(block, in_validation if held_out else tf.logical_not(in_validation))

        return lines.batch(HASH_BLOCK).map(keep).unbatch()

    parse = _parser(data.has_timestamps)
    if include_validation:
        training_lines = _lines(data.files["train"] + data.files["validation"])
        train_rows = data.rows["train"] + data.rows["validation"]
    else:
        training_lines = _lines(data.files["train"])
        if threshold:
            training_lines = where(training_lines, held_out=False)
        train_rows = data.training.fit_rows if data.training else int(data.rows["train"] * (1 - held_out))
    batches = (
        training_lines.shuffle(SHUFFLE_BUFFER, seed=config.seed)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)  # one decode per batch, not per line
        .prefetch(tf.data.AUTOTUNE)
    )
    steps = max(1, math.ceil(train_rows / config.batch_size))

    validation = None
    if not include_validation and data.files["validation"]:
        validation = _lines(data.files["validation"])
    elif not include_validation and threshold:
        validation = where(_lines(data.files["train"]), held_out=True)
    if validation is not None:
        validation = validation.take(VALIDATION_MAX_ROWS).batch(VALIDATION_BATCH).map(parse).cache()
    return TrainingData(batches, steps, validation, train_rows)


def evaluation_batches(data: ShardedData, split: str, batch_size: int, max_rows: Optional[int] = None):
    """Rows of one split as batches for scoring on this worker alone (never auto-sharded)."""
    import tensorflow as tf

    lines = _lines(data.files[split])
    if max_rows is not None:
        lines = lines.take(max_rows)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return lines.batch(batch_size).map(_parser(data.has_timestamps)).with_options(options)


def _lines(files: Sequence[str]):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(list(files)).interleave(
        lambda path: tf.data.TextLineDataset(path).skip(1), cycle_length=min(4, len(files))
    )


def _parser(has_timestamps: bool):
    """Parses a batch of lines into the dict every training path uses (the timestamp is not a model input)."""
    import tensorflow as tf

    defaults = ["", "", 0.0] + ([tf.constant(0, tf.int64)] if has_timestamps else [])

    def parse(line):
        user_id, movie_title, rating = tf.io.decode_csv(
            line, record_defaults=defaults, field_delim="\t", use_quote_delim=False
        )[:3]
        return {USER_INPUT: user_id, ITEM_INPUT: movie_title, "user_rating": rating}

    return parse

"""Sharded TSV rating files, streamed through tf.data: data larger than memory.

A sharded data folder holds

    train-00000-of-00004.tsv ... (required)   rows to train on
    test-00000-of-00001.tsv ...  (required)   rows for the reported test RMSE
    validation-*.tsv             (optional)   rows for early stopping
    vocab/users.txt, vocab/movies.txt (optional) the vocabularies, one id a line

Every .tsv file starts with the header `user_id<TAB>movie_title<TAB>user_rating`
and has one rating a line (UTF-8). Without validation files, a stable hash of
each training line holds out `validation_fraction` of the rows. Without vocab
files, one streaming pass over all files collects the ids, so only the
vocabularies (never the rows) have to fit in memory. Write such a folder with
`write_shards` or `python -m train.synthetic`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Optional, Sequence

from device_runtime.files import write_atomically
from device_runtime.signature import ITEM_INPUT, USER_INPUT
from train import artifacts
from train.errors import DataError

logger = logging.getLogger(__name__)

HEADER = f"{USER_INPUT}\t{ITEM_INPUT}\tuser_rating"
SPLITS = ("train", "validation", "test")
SHUFFLE_BUFFER = 100_000
VALIDATION_MAX_ROWS = 200_000  # scored on every worker after each epoch
HASH_BUCKETS = 10_000


@dataclasses.dataclass(frozen=True)
class ShardedData:
    """A scanned sharded data folder: its files, row counts and vocabularies."""

    folder: Path
    files: dict  # split -> tuple of paths
    rows: dict  # split -> row count
    users: tuple[str, ...]
    movies: tuple[str, ...]


def is_sharded_folder(folder: Path) -> bool:
    """True if `folder` looks like a sharded data folder (has train-*.tsv)."""
    return Path(folder).is_dir() and any(Path(folder).glob("train-*.tsv"))


def scan_shards(folder: Path) -> ShardedData:
    """Checks every file and counts rows in one streaming pass; collects vocabularies.

    Raises:
        DataError: a required split is missing, or a line is malformed (the
            message names the file and line).
    """
    folder = Path(folder)
    files = {split: tuple(sorted(str(p) for p in folder.glob(f"{split}-*.tsv"))) for split in SPLITS}
    for split in ("train", "test"):
        if not files[split]:
            raise DataError(f"{folder} has no {split}-*.tsv files; a sharded data folder needs train and test shards")
    given_users = folder / artifacts.USERS_VOCAB
    given_movies = folder / artifacts.MOVIES_VOCAB
    collect = not (given_users.is_file() and given_movies.is_file())
    users: set[str] = set()
    movies: set[str] = set()
    rows = {}
    for split in SPLITS:
        count = 0
        for path in files[split]:
            count += _scan_file(Path(path), users if collect else None, movies if collect else None)
        rows[split] = count
    if collect:
        user_vocab, movie_vocab = tuple(sorted(users)), tuple(sorted(movies))
    else:
        user_vocab = tuple(artifacts.read_vocabulary(given_users))
        movie_vocab = tuple(artifacts.read_vocabulary(given_movies))
    logger.info(
        "scanned %s: %s rows; %d users, %d movies",
        folder,
        ", ".join(f"{split} {rows[split]:,}" for split in SPLITS),
        len(user_vocab),
        len(movie_vocab),
    )
    return ShardedData(folder, files, rows, user_vocab, movie_vocab)


def _scan_file(path: Path, users: Optional[set], movies: Optional[set]) -> int:
    count = 0
    try:
        with open(path, encoding="utf-8", newline="") as lines:
            header = lines.readline().rstrip("\r\n")
            if header != HEADER:
                raise DataError(f"{path} line 1: expected the header {HEADER!r}, found {header[:80]!r}")
            for line_no, line in enumerate(lines, start=2):
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != 3:
                    raise DataError(f"{path} line {line_no}: expected 3 tab-separated columns, found {len(fields)}")
                try:
                    rating = float(fields[2])
                except ValueError:
                    raise DataError(f"{path} line {line_no}: rating {fields[2]!r} is not a number") from None
                if not 1.0 <= rating <= 5.0:
                    raise DataError(f"{path} line {line_no}: rating {fields[2]} is outside 1..5")
                if users is not None:
                    users.add(fields[0])
                    movies.add(fields[1])
                count += 1
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    return count


def write_shards(
    folder: Path, split: str, user_ids: Sequence, movie_titles: Sequence, ratings: Sequence, shards: int
) -> None:
    """Writes rows as `shards` TSV files `SPLIT-0000i-of-0000n.tsv`, each atomically.

    Rows are dealt round-robin, so shards differ in size by at most one row.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        path = folder / f"{split}-{shard:05d}-of-{shards:05d}.tsv"
        rows = zip(user_ids[shard::shards], movie_titles[shard::shards], ratings[shard::shards])
        lines = [HEADER] + [f"{user}\t{movie}\t{float(rating):g}" for user, movie, rating in rows]
        write_atomically(path, "\n".join(lines) + "\n")


def streaming_training_data(data: ShardedData, config):
    """Builds the `TrainingData` for `train.model.fit_model` from the shards.

    The training files are read as a file-list dataset so that, under a
    multi-worker strategy, tf.data's auto-sharding gives each worker its own
    files (or every n-th row when there are fewer files than workers). The
    batches are of `config.batch_size` rows, the global batch.
    """
    import tensorflow as tf

    from train.model import VALIDATION_BATCH, TrainingData

    held_out = 0 if data.files["validation"] else config.validation_fraction
    threshold = int(round(held_out * HASH_BUCKETS))

    def in_validation(line):
        return tf.strings.to_hash_bucket_fast(line, HASH_BUCKETS) < threshold

    training_lines = _lines(data.files["train"])
    if threshold:
        training_lines = training_lines.filter(lambda line: tf.logical_not(in_validation(line)))
    batches = (
        training_lines.shuffle(SHUFFLE_BUFFER, seed=config.seed)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
        .map(_parse, num_parallel_calls=tf.data.AUTOTUNE)  # one decode per batch, not per line
        .prefetch(tf.data.AUTOTUNE)
    )
    train_rows = int(data.rows["train"] * (1 - held_out))
    steps = max(1, math.ceil(train_rows / config.batch_size))

    validation = None
    if data.files["validation"]:
        validation = _lines(data.files["validation"])
    elif threshold:
        validation = _lines(data.files["train"]).filter(in_validation)
    if validation is not None:
        validation = validation.take(VALIDATION_MAX_ROWS).batch(VALIDATION_BATCH).map(_parse).cache()
    return TrainingData(batches, steps, validation, train_rows)


def evaluation_batches(files: Sequence[str], batch_size: int, max_rows: Optional[int] = None):
    """Rows of `files` as batches for scoring on this worker alone (never auto-sharded)."""
    import tensorflow as tf

    lines = _lines(files)
    if max_rows is not None:
        lines = lines.take(max_rows)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return lines.batch(batch_size).map(_parse).with_options(options)


def _lines(files: Sequence[str]):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(list(files)).interleave(
        lambda path: tf.data.TextLineDataset(path).skip(1), cycle_length=min(4, len(files))
    )


def _parse(line):
    import tensorflow as tf

    user_id, movie_title, rating = tf.io.decode_csv(
        line, record_defaults=["", "", 0.0], field_delim="\t", use_quote_delim=False
    )
    return {USER_INPUT: user_id, ITEM_INPUT: movie_title, "user_rating": rating}

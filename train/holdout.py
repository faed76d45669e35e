"""Holding users out of training entirely, so that personalization can be measured on users the model never saw.

`python -m train --holdout-users FRACTION --out DIR` removes every row of the
held-out users before anything is trained: no model member, blend weight,
early stopping, side table or fold-in penalty sees them, and they are absent
from the user vocabulary and the model's user table. The test rows of the
other users are the run's test figures.

Which users: the round(FRACTION x users) users (Python's `round`: halves to
even) with the smallest `sha256(f"{seed}:{user_id}".encode("utf-8")).hexdigest()`,
users taken from all rows of the data and `seed` the run's `--seed`. The rule
needs no random generator, so it gives the same users under any numpy version
and in any language.

Two files go to the export folder:
    DIR/holdout_users.txt   the held-out ids, one per line, smallest digest first
    DIR/holdout_rows.tsv    their rows of the tutorial split (header `split user_id movie_title user_rating`,
                            then the training-split rows and the test-split rows, each in split order), so that
                            `python -m evaluation personalization` needs no TensorFlow to rebuild the split
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from device_runtime.files import write_atomically
from train.data import Ratings
from train.errors import ConfigError, DataError, OutputError

USERS_FILE = "holdout_users.txt"
ROWS_FILE = "holdout_rows.tsv"
ROWS_HEADER = ("split", "user_id", "movie_title", "user_rating")
TRAIN_SPLIT = "train"
TEST_SPLIT = "test"
RULE = (
    'the round(fraction x users) users with the smallest sha256(f"{seed}:{user_id}".encode("utf-8")).hexdigest(), '
    "users taken from all rows of the data"
)


def parse_fraction(text: str) -> float:
    """Reads `--holdout-users`: a number strictly between 0 and 1.

    Raises:
        ConfigError: not a number, or outside (0, 1).
    """
    try:
        fraction = float(text)
    except (TypeError, ValueError):
        fraction, text = math.nan, repr(text)
    if not (math.isfinite(fraction) and 0.0 < fraction < 1.0):
        raise ConfigError(f"--holdout-users must be a fraction strictly between 0 and 1 such as 0.1, got {text}")
    return fraction


def check_holdout_options(fraction: Optional[float], sharded: bool) -> None:
    """Refuses a fraction outside (0, 1), and holding out users of sharded data.

    Args:
        fraction: the share of users to hold out, or None (no holdout).
        sharded: whether the data source is a folder of sharded TSV files.

    Raises:
        ConfigError: naming the option and what to do instead.
    """
    if fraction is None:
        return
    parse_fraction(fraction)
    if sharded:
        raise ConfigError(
            "--holdout-users needs the rows in memory (the offline copy, tfds or an ml-100k folder); "
            "sharded TSV folders are not supported: leave the users out of the shards yourself"
        )


def user_digest(user_id: str, seed: int) -> str:
    """The key users are held out by: sha256 of "seed:user_id" (UTF-8), as hexadecimal."""
    return hashlib.sha256(f"{seed}:{user_id}".encode("utf-8")).hexdigest()


def select_holdout_users(user_ids: Iterable[str], fraction: float, seed: int) -> tuple[str, ...]:
    """The users to hold out (see the module's docstring), smallest digest first.

    Args:
        user_ids: every row's user id (repeats are counted once).
        fraction: the share of users, strictly between 0 and 1.
        seed: the run's seed.

    Raises:
        ConfigError: the fraction rounds to no user, or to every user.
    """
    users = sorted({str(user) for user in user_ids})
    count = round(fraction * len(users))
    if count < 1 or count >= len(users):
        raise ConfigError(
            f"--holdout-users {fraction:g} of {len(users)} users holds out {count}; "
            "choose a fraction that leaves at least one user out and at least one in"
        )
    return tuple(sorted(users, key=lambda user: (user_digest(user, seed), user))[:count])


@dataclasses.dataclass(frozen=True)
class Holdout:
    """The users held out of a training run, and their rows of the split.

    Attributes:
        fraction, seed: what chose them.
        users: the held-out ids, smallest digest first.
        total_users: the users in all rows of the data.
        train_rows: their training-split rows (never trained on).
        test_rows: their test-split rows.
    """

    fraction: float
    seed: int
    users: tuple[str, ...]
    total_users: int
    train_rows: Ratings
    test_rows: Ratings

    def to_dict(self) -> dict:
        """The record for metrics.json."""
        return {
            "fraction": self.fraction,
            "users": len(self.users),
            "of_users": self.total_users,
            "seed": self.seed,
            "rule": RULE,
            "users_file": USERS_FILE,
            "rows_file": ROWS_FILE,
            "train_rows_held_out": len(self.train_rows),
            "test_rows_held_out": len(self.test_rows),
            "note": "held-out users' rows train nothing; the test figures are the other users'",
        }


def hold_out(
    ratings: Ratings, train_rows: Ratings, test_rows: Ratings, fraction: Optional[float], seed: int
) -> tuple[Optional[Holdout], Ratings, Ratings]:
    """Splits the held-out users' rows off the training and test rows.

    Args:
        ratings: all rows of the data (users are chosen among theirs).
        train_rows, test_rows: the tutorial split of `ratings`.
        fraction: as `select_holdout_users`; None holds out nobody.
        seed: as `select_holdout_users`.

    Returns:
        The holdout (None without a fraction), then the training and test rows
        of the other users, in their order.
    """
    if fraction is None:
        return None, train_rows, test_rows
    all_user_ids = ratings.user_id
    users = select_holdout_users(all_user_ids, fraction, seed)
    held = np.array(users, dtype=str)
    in_train = np.isin(train_rows.user_id.astype(str), held)
    in_test = np.isin(test_rows.user_id.astype(str), held)
    holdout = Holdout(
        fraction=fraction,
        seed=seed,
        users=users,
        total_users=len(np.unique(all_user_ids)),
        train_rows=train_rows.take(np.flatnonzero(in_train)),
        test_rows=test_rows.take(np.flatnonzero(in_test)),
    )
    return holdout, train_rows.take(np.flatnonzero(~in_train)), test_rows.take(np.flatnonzero(~in_test))


def without_held_out(users: Sequence[str], holdout: Optional[Holdout]) -> tuple[str, ...]:
    """The vocabulary `users` without the held-out ids (unchanged without a holdout)."""
    held = set() if holdout is None else set(holdout.users)
    return tuple(user for user in users if user not in held)


def write_holdout_files(folder: Path, holdout: Holdout) -> None:
    """Writes `holdout_users.txt` and `holdout_rows.tsv` into `folder` (atomically, each).

    Raises:
        OutputError: an id or title holds a tab or a line break, which the files cannot carry.
    """
    lines = ["\t".join(ROWS_HEADER)]
    for split, rows in ((TRAIN_SPLIT, holdout.train_rows), (TEST_SPLIT, holdout.test_rows)):
        for user, title, rating in zip(rows.user_id, rows.movie_title, rows.user_rating):
            fields = (str(user), str(title))
            if any(character in field for field in fields for character in "\t\r\n"):
                raise OutputError(f"{fields!r} holds a tab or a line break and cannot be written to {ROWS_FILE}")
            lines.append(f"{split}\t{fields[0]}\t{fields[1]}\t{float(rating)!r}")
    for user in holdout.users:
        if any(character in user for character in "\t\r\n"):
            raise OutputError(f"user id {user!r} holds a tab or a line break and cannot be written to {USERS_FILE}")
    write_atomically(Path(folder) / USERS_FILE, "".join(f"{user}\n" for user in holdout.users))
    write_atomically(Path(folder) / ROWS_FILE, "\n".join(lines) + "\n")


@dataclasses.dataclass(frozen=True)
class HoldoutRows:
    """The held-out users' rows as `holdout_rows.tsv` stores them (parallel arrays, file order).

    Attributes:
        split: "train" or "test" per row.
        user_id, movie_title: str arrays.
        user_rating: float64.
    """

    split: np.ndarray
    user_id: np.ndarray
    movie_title: np.ndarray
    user_rating: np.ndarray


def read_holdout_users(path: Path) -> tuple[str, ...]:
    """Reads `holdout_users.txt`: one id per line (blank lines are an error, as are repeats).

    Raises:
        DataError: the file is missing, not UTF-8, empty, or lists an id twice.
    """
    text = _read_text(path, "--holdout-users")
    users = tuple(text.splitlines())
    if not users:
        raise DataError(f"{path} lists no user; give the {USERS_FILE} written by `python -m train --holdout-users`")
    for line_no, user in enumerate(users, start=1):
        if not user:
            raise DataError(f"{path} line {line_no} is blank; the file holds one user id per line")
    if len(set(users)) != len(users):
        repeated = next(user for user in users if users.count(user) > 1)
        raise DataError(f"{path} lists user {repeated!r} twice; give the {USERS_FILE} written by training")
    return users


def read_holdout_rows(path: Path) -> HoldoutRows:
    """Reads `holdout_rows.tsv` as written by `write_holdout_files`.

    Raises:
        DataError: the file is missing, has another header, or a malformed row (named by line).
    """
    text = _read_text(path, "--rows")
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != ROWS_HEADER:
        raise DataError(
            f"{path} does not start with the header {' '.join(ROWS_HEADER)} (tab separated); "
            f"give the {ROWS_FILE} written by `python -m train --holdout-users`"
        )
    columns: tuple[list, ...] = ([], [], [], [])
    for line_no, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(ROWS_HEADER):
            raise DataError(f"{path} line {line_no}: expected {len(ROWS_HEADER)} tab-separated fields, "
                            f"found {len(fields)}")
        split, user, title, rating_text = fields
        if split not in (TRAIN_SPLIT, TEST_SPLIT):
            raise DataError(f"{path} line {line_no}: split {split!r} is neither {TRAIN_SPLIT} nor {TEST_SPLIT}")
        try:
            rating = float(rating_text)
        except ValueError:
            rating = math.nan
        if not 1.0 <= rating <= 5.0:
            raise DataError(f"{path} line {line_no}: rating {rating_text!r} is not a number from 1 to 5")
        for column, value in zip(columns, (split, user, title, rating)):
            column.append(value)
    return HoldoutRows(
        split=np.array(columns[0], dtype=str),
        user_id=np.array(columns[1], dtype=str),
        movie_title=np.array(columns[2], dtype=str),
        user_rating=np.array(columns[3], dtype=np.float64),
    )


def _read_text(path: Path, option: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{option} {path} does not exist; give the file written by "
                        "`python -m train --holdout-users FRACTION --out DIR` (in DIR)") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{option} {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise DataError(f"cannot read {option} {path}: {error.strerror}") from None

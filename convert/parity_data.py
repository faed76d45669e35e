"""The data parity is measured on: the test split of the training data, the model's vocabularies, the users to rank.

The parity data must be the data the model was trained on (`MIN_PARITY_COVERAGE`
of its test pairs known to the model), except for users an export held out of
training on purpose (`python -m train --holdout-users`), whose pairs are scored
with the fallback on both sides and not counted.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from convert.errors import InputError, ParityDataError
from convert.saved_model import SavedModelScorer, vocabularies_from_tables
from train import artifacts, holdout
from train.errors import TrainError

logger = logging.getLogger(__name__)

# The parity data must be the data the model was trained on: at least this
# share of its test pairs must have a user and a movie the model knows.
MIN_PARITY_COVERAGE = 0.95


@dataclasses.dataclass(frozen=True)
class Vocabularies:
    users: list[str]
    movies: list[str]
    source: str


@dataclasses.dataclass(frozen=True)
class ParityData:
    """The parity data's test split (users, movies, ratings), and its training split for histories."""

    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray
    source: str
    train: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.users, self.movies, self.ratings


def export_folder(saved_model_dir: Path) -> Optional[Path]:
    """The `python -m train` export that holds this SavedModel, if it is one."""
    parent = saved_model_dir.parent
    if saved_model_dir.name == artifacts.SAVED_MODEL_DIR and (
        (parent / artifacts.METRICS_FILE).is_file() or (parent / artifacts.USERS_VOCAB).is_file()
    ):
        return parent
    return None


@functools.lru_cache(maxsize=2)  # several conversions in one process share the split
def load_parity_data(source: Optional[str]) -> ParityData:
    """The test and training splits of `source` (the offline MovieLens 100K copy by default).

    Raises:
        ParityDataError: the source cannot be loaded or split.
    """
    from train.data import load_ratings, split_ratings

    try:
        train_rows, test_rows = split_ratings(load_ratings(source))
    except TrainError as error:
        raise ParityDataError(f"parity data: {error}") from None
    return ParityData(
        users=np.asarray(test_rows.user_id, dtype=object),
        movies=np.asarray(test_rows.movie_title, dtype=object),
        ratings=np.asarray(test_rows.user_rating, dtype=np.float32),
        source=test_rows.source or str(source),
        train=(
            np.asarray(train_rows.user_id, dtype=object),
            np.asarray(train_rows.movie_title, dtype=object),
            np.asarray(train_rows.user_rating, dtype=np.float32),
        ),
    )


def vocabularies_for(
    export_dir: Optional[Path], reference: SavedModelScorer, parity_source: Optional[str]
) -> Vocabularies:
    tables = vocabularies_from_tables(reference)
    if (
        export_dir is not None
        and (export_dir / artifacts.USERS_VOCAB).is_file()
        and (export_dir / artifacts.MOVIES_VOCAB).is_file()
    ):
        users = artifacts.read_vocabulary(export_dir / artifacts.USERS_VOCAB)
        movies = artifacts.read_vocabulary(export_dir / artifacts.MOVIES_VOCAB)
        if tables is not None and (set(tables[0]) != set(users) or set(tables[1]) != set(movies)):
            raise InputError(
                f"{export_dir / artifacts.VOCAB_DIR} does not match the SavedModel's lookup tables "
                f"({len(users)}/{len(movies)} ids on file, {len(tables[0])}/{len(tables[1])} in the model); "
                "the export folder mixes two training runs: train again"
            )
        return Vocabularies(users, movies, f"export folder {artifacts.VOCAB_DIR}/")
    if tables is not None:
        return Vocabularies(tables[0], tables[1], "SavedModel lookup tables")
    from train.data import load_ratings

    logger.warning("no vocab/ folder and no readable lookup tables: taking the vocabularies from the parity data")
    try:
        ratings = load_ratings(parity_source)
    except TrainError as error:
        raise ParityDataError(f"parity data: {error}") from None
    return Vocabularies(
        [str(u) for u in ratings.unique_users()],
        [str(m) for m in ratings.unique_movies()],
        "parity data (all ids in the ratings)",
    )


def held_out_users(export_dir: Optional[Path]) -> tuple[str, ...]:
    """The users a `python -m train --holdout-users` export left out on purpose (none for other exports)."""
    if export_dir is None or not (export_dir / holdout.USERS_FILE).is_file():
        return ()
    try:
        return holdout.read_holdout_users(export_dir / holdout.USERS_FILE)
    except TrainError as error:
        raise InputError(f"the export's held-out users: {error}") from None


def check_coverage(data: ParityData, vocabularies: Vocabularies, held_out_users: Sequence[str] = ()) -> float:
    """The share of the test pairs the model knows, not counting users held out of training on purpose."""
    counted = ~np.isin(data.users, np.asarray(held_out_users, dtype=object))
    known = np.isin(data.users, np.asarray(vocabularies.users, dtype=object)) & np.isin(
        data.movies, np.asarray(vocabularies.movies, dtype=object)
    )
    coverage = float(known[counted].mean()) if counted.any() else 0.0
    if coverage < MIN_PARITY_COVERAGE:
        raise ParityDataError(
            f"the parity data ({data.source}) does not match the model's vocabulary: only {coverage:.1%} of its "
            f"{int(counted.sum()):,} test pairs have a user and a movie the model knows "
            f"(need {MIN_PARITY_COVERAGE:.0%}); "
            "pass the data the model was trained on with --parity-data"
        )
    return coverage


def ranked_users(data: ParityData, vocabularies: Vocabularies, count: int) -> np.ndarray:
    """`count` users spread evenly over the sorted known users of the test split."""
    known_users = np.asarray(sorted(set(data.users) & set(vocabularies.users)), dtype=object)
    spread = np.linspace(0, len(known_users) - 1, min(count, len(known_users))).round().astype(int)
    return known_users[np.unique(spread)]

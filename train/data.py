"""MovieLens 100K ratings from three sources, and the tutorial's train/test split.

Every source yields the same columns as TFDS `movielens/100k-ratings`:
`user_id` and `movie_title` ("Title (Year)") as strings, `user_rating` as
float32, plus `timestamp` and the side features later models may use.

Sources:
- "recbole" (default, offline): the MovieLens 100K copy inside the
  `recbole==1.2.1` wheel, installed with `pip install --no-deps recbole==1.2.1`
  as a data carrier only (never imported); checked against recorded sha256s.
- a folder path: ml-100k as GroupLens distributes it (u.data, u.item, u.user).
- "tfds": `tfds.load("movielens/100k-ratings")`, as the original tutorial does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from device_runtime.errors import one_line
from train.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "recbole"
TFDS_SOURCE = "tfds"
RECBOLE_DISTRIBUTION = "recbole"
RECBOLE_VERSION = "1.2.1"
RECBOLE_FOLDER = "recbole/dataset_example/ml-100k"
RECBOLE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
RECBOLE_INSTALL_HINT = f'pip install --no-deps "recbole=={RECBOLE_VERSION}"'
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
UNKNOWN_TITLE = "unknown"  # u.item's title of movie 267, which has no year

# The tutorial's split, applied to the rows in file order.
SPLIT_SEED = 42
SHUFFLE_BUFFER = 100_000
TRAIN_ROWS = 80_000
TEST_ROWS = 20_000

MIN_RATING = 1.0
MAX_RATING = 5.0


@dataclasses.dataclass(frozen=True)
class Ratings:
    """Rating rows as parallel 1-D numpy arrays (one entry per rating).

    Attributes:
        user_id, movie_title: str arrays.
        user_rating: float32 in [1, 5].
        timestamp: int64 seconds since the epoch.
        user_age (int32), user_gender ("M"/"F"), user_occupation, user_zip_code:
            the rating user's side features.
        movie_genres: the movie's genres joined by "|".
        source: where the rows came from.
        sha256: one checksum over the source files (or the TFDS version).
    """

    user_id: np.ndarray
    movie_title: np.ndarray
    user_rating: np.ndarray
    timestamp: np.ndarray
    user_age: np.ndarray
    user_gender: np.ndarray
    user_occupation: np.ndarray
    user_zip_code: np.ndarray
    movie_genres: np.ndarray
    source: str = ""
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.user_rating)

    def take(self, indices: np.ndarray) -> "Ratings":
        """Returns the rows at `indices`, in that order."""
        columns = {name: getattr(self, name)[indices] for name in COLUMNS}
        return dataclasses.replace(self, **columns)

    def unique_users(self) -> np.ndarray:
        """Sorted unique user ids (the tutorial's `np.unique` vocabulary)."""
        return np.unique(self.user_id)

    def unique_movies(self) -> np.ndarray:
        """Sorted unique movie titles."""
        return np.unique(self.movie_title)


COLUMNS = tuple(f.name for f in dataclasses.fields(Ratings) if f.name not in ("source", "sha256"))


def load_ratings(source: Optional[str] = None) -> Ratings:
    """Loads MovieLens 100K from `source` ("recbole", "tfds" or a folder path).

    Raises:
        DataError: the source is missing, its files changed, or a row is malformed.
    """
    source = source or DEFAULT_SOURCE
    if source == DEFAULT_SOURCE:
        return _load_recbole()
    if source == TFDS_SOURCE:
        return _load_tfds()
    return _load_grouplens(Path(source))


def split_ratings(ratings: Ratings) -> tuple[Ratings, Ratings]:
    """Splits rows exactly as the tutorial: seeded shuffle, 80,000 train, next 20,000 test.

    The permutation is taken from `tf.data`'s shuffle with the tutorial's seeds
    over row indices, which orders rows as shuffling the rows themselves would.
    """
    if len(ratings) < TRAIN_ROWS + TEST_ROWS:
        raise DataError(
            f"the tutorial split needs {TRAIN_ROWS + TEST_ROWS:,} rows, the source has {len(ratings):,}"
        )
    order = shuffled_order(len(ratings))
    return ratings.take(order[:TRAIN_ROWS]), ratings.take(order[TRAIN_ROWS : TRAIN_ROWS + TEST_ROWS])


def shuffled_order(row_count: int) -> np.ndarray:
    """The tutorial's seeded shuffle of `row_count` rows, as an index array."""
    import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf

    tf.random.set_seed(SPLIT_SEED)
    indices = tf.data.Dataset.range(row_count).shuffle(
        SHUFFLE_BUFFER, seed=SPLIT_SEED, reshuffle_each_iteration=False
    )
    return indices.batch(row_count).get_single_element().numpy()


# --- sources -----------------------------------------------------------------


def recbole_folder() -> Path:
    """Where the recbole wheel keeps ml-100k; DataError if it is not installed."""
    try:
        distribution = importlib.metadata.distribution(RECBOLE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"the offline MovieLens 100K copy is not installed; run: {RECBOLE_INSTALL_HINT}"
        ) from None
    return Path(str(distribution.locate_file(RECBOLE_FOLDER)))


def _load_recbole() -> Ratings:
    folder = recbole_folder()
    digest = hashlib.sha256()
    for name, expected in RECBOLE_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path} is missing; reinstall the data with: {RECBOLE_INSTALL_HINT} --force-reinstall")
        actual = _sha256(path)
        if actual != expected:
            raise DataError(
                f"{path} has sha256 {actual[:12]}..., expected {expected[:12]}...; "
                f"reinstall the data with: {RECBOLE_INSTALL_HINT} --force-reinstall"
            )
        digest.update(actual.encode())

    movies = {}
    for line_no, row in _rows(folder / "ml-100k.item", "\t", 4, header=True):
        item_id, title, year, genres = row[:4]
        if title == "unkonwn" and year == "unkonwn":  # RecBole's spelling of u.item's "unknown"
            full_title = UNKNOWN_TITLE
        else:
            full_title = f"{title} ({year})" if year else title
        movies[item_id] = (full_title, "|".join(genres.split()) if genres != "unknown" else "unknown")
    users = {}
    for line_no, row in _rows(folder / "ml-100k.user", "\t", 5, header=True):
        users[row[0]] = (_int(row[1], folder / "ml-100k.user", line_no, "age"), row[2], row[3], row[4])
    return _build(
        _rows(folder / "ml-100k.inter", "\t", 4, header=True),
        folder / "ml-100k.inter",
        movies,
        users,
        source=f"recbole=={RECBOLE_VERSION}",
        sha256=digest.hexdigest(),
    )


def _load_grouplens(folder: Path) -> Ratings:
    if not folder.is_dir():
        raise DataError(
            f"--data {folder} is not a folder; pass 'recbole', 'tfds' or a folder with "
            + ", ".join(GROUPLENS_FILES)
        )
    for name in GROUPLENS_FILES:
        if not (folder / name).is_file():
            raise DataError(f"{folder / name} is missing; an ml-100k folder needs " + ", ".join(GROUPLENS_FILES))
    digest = hashlib.sha256()
    for name in GROUPLENS_FILES:
        digest.update(_sha256(folder / name).encode())

    genre_names = _grouplens_genres(folder)
    movies = {}
    for line_no, row in _rows(folder / "u.item", "|", 5, encoding="latin-1"):
        flags = row[5:]
        if genre_names and len(flags) != len(genre_names):
            raise DataError(
                f"{folder / 'u.item'} line {line_no}: {len(flags)} genre flags, u.genre lists {len(genre_names)}"
            )
        genres = [name for name, flag in zip(genre_names, flags) if flag.strip() == "1"]
        movies[row[0]] = (row[1], "|".join(genres))
    users = {}
    for line_no, row in _rows(folder / "u.user", "|", 5):
        users[row[0]] = (_int(row[1], folder / "u.user", line_no, "age"), row[2], row[3], row[4])
    return _build(
        _rows(folder / "u.data", "\t", 4),
        folder / "u.data",
        movies,
        users,
        source=str(folder),
        sha256=digest.hexdigest(),
    )


def _grouplens_genres(folder: Path) -> list[str]:
    path = folder / "u.genre"
    if not path.is_file():
        return []
    genres = [row[0] for _, row in _rows(path, "|", 2, allow_empty=True)]
    return genres


def _load_tfds() -> Ratings:
    import train._tensorflow  # noqa: F401
    import tensorflow_datasets as tfds

    try:
        dataset, info = tfds.load("movielens/100k-ratings", split="train", with_info=True)
    except Exception as error:  # tfds raises many types for a failed download
        raise DataError(
            f"tfds could not load movielens/100k-ratings ({_described(error)}); "
            "this source needs network access; use the default offline data instead (omit --data)"
        ) from None
    columns = {name: [] for name in COLUMNS}
    for row in tfds.as_numpy(dataset):
        columns["user_id"].append(row["user_id"].decode("utf-8"))
        columns["movie_title"].append(row["movie_title"].decode("utf-8"))
        columns["user_rating"].append(row["user_rating"])
        columns["timestamp"].append(row["timestamp"])
        columns["user_age"].append(int(row["raw_user_age"]))
        columns["user_gender"].append("M" if row["user_gender"] else "F")
        columns["user_occupation"].append(row["user_occupation_text"].decode("utf-8"))
        columns["user_zip_code"].append(row["user_zip_code"].decode("utf-8"))
        columns["movie_genres"].append("|".join(str(g) for g in row["movie_genres"]))
    version = f"tfds movielens/100k-ratings {info.version}"
    return _to_ratings(columns, source="tfds", sha256=hashlib.sha256(version.encode()).hexdigest())


def _described(error: Exception) -> str:
    """`Type: message` on one line (just `Type` when the message is empty)."""
    name, text = type(error).__name__, one_line(error, limit=200)
    return name if text == name else f"{name}: {text}"


# --- parsing -----------------------------------------------------------------


def _build(rating_rows, path: Path, movies: dict, users: dict, *, source: str, sha256: str) -> Ratings:
    columns = {name: [] for name in COLUMNS}
    for line_no, row in rating_rows:
        user, item = row[0], row[1]
        rating = _float(row[2], path, line_no, "rating")
        if not MIN_RATING <= rating <= MAX_RATING:
            raise DataError(f"{path} line {line_no}: rating {row[2]} is outside {MIN_RATING:g}..{MAX_RATING:g}")
        if item not in movies:
            raise DataError(f"{path} line {line_no}: movie id {item!r} is not in the movie file")
        if user not in users:
            raise DataError(f"{path} line {line_no}: user id {user!r} is not in the user file")
        title, genres = movies[item]
        age, gender, occupation, zip_code = users[user]
        columns["user_id"].append(user)
        columns["movie_title"].append(title)
        columns["user_rating"].append(rating)
        columns["timestamp"].append(int(_float(row[3], path, line_no, "timestamp")))
        columns["user_age"].append(age)
        columns["user_gender"].append(gender)
        columns["user_occupation"].append(occupation)
        columns["user_zip_code"].append(zip_code)
        columns["movie_genres"].append(genres)
    if not columns["user_id"]:
        raise DataError(f"{path} has no rating rows")
    logger.info("loaded %d ratings from %s", len(columns["user_id"]), source)
    return _to_ratings(columns, source=source, sha256=sha256)


def _to_ratings(columns: dict, *, source: str, sha256: str) -> Ratings:
    dtypes = {"user_rating": np.float32, "timestamp": np.int64, "user_age": np.int32}
    arrays = {name: np.asarray(values, dtype=dtypes.get(name, str)) for name, values in columns.items()}
    return Ratings(**arrays, source=source, sha256=sha256)


def _rows(
    path: Path,
    separator: str,
    min_columns: int,
    *,
    header: bool = False,
    encoding: str = "utf-8",
    allow_empty: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """Yields (line number, fields) for each non-blank line; DataError on short rows."""
    try:
        with open(path, encoding=encoding, newline="") as lines:
            count = 0
            for line_no, line in enumerate(lines, start=1):
                line = line.rstrip("\r\n")
                if header and line_no == 1:
                    continue
                if not line.strip():
                    continue
                fields = line.split(separator)
                if len(fields) < min_columns:
                    raise DataError(
                        f"{path} line {line_no}: expected at least {min_columns} "
                        f"{'tab' if separator == chr(9) else repr(separator)}-separated columns, found {len(fields)}"
                    )
                count += 1
                yield line_no, fields
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not {encoding} text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    if count == 0 and not allow_empty:
        raise DataError(f"{path} is empty")


def _float(text: str, path: Path, line_no: int, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path} line {line_no}: {what} {text!r} is not a number") from None


def _int(text: str, path: Path, line_no: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path} line {line_no}: {what} {text!r} is not a whole number") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""Side files of a sharded data folder: the users' and the movies' attributes, one id a line.

    users.tsv    user_id<TAB>age<TAB>gender<TAB>occupation<TAB>zip_code
    movies.tsv   movie_title<TAB>genres

Each file starts with that header line and is UTF-8. `age` is a whole number
of years or empty (unknown); `gender` is M or F (anything else is unknown);
`occupation` and `zip_code` are free text (only the zip code's first
character is used); `genres` is a `|`-separated list, possibly empty. A
movie's release year is read from its title's trailing "(YYYY)". Both files
are optional, and so is every id in them: a user or movie without a line has
unknown features (as an id first seen on a device has). Ids the vocabulary
lacks are ignored.

As everywhere in the kit, side features come from the training rows only:
only ids that appear in the training (or validation) rows get their features,
so a user or movie seen only in the test rows stays unknown. `write_side_files`
writes these files from rating rows that carry the attributes (the pipeline
writes them from the training rows when it shards MovieLens for several workers).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from device_runtime.files import write_atomically
from train.errors import DataError, OutputError
from train.side_features import SideFeatures, release_year, side_tables

logger = logging.getLogger(__name__)

USERS_FILE = "users.tsv"
MOVIES_FILE = "movies.tsv"
USERS_HEADER = "user_id\tage\tgender\toccupation\tzip_code"
MOVIES_HEADER = "movie_title\tgenres"


def has_side_files(folder: Path) -> bool:
    return (Path(folder) / USERS_FILE).is_file() or (Path(folder) / MOVIES_FILE).is_file()


def read_side_files(
    folder: Path, users: Sequence[str], movies: Sequence[str], trained_users: np.ndarray, trained_movies: np.ndarray
) -> Optional[SideFeatures]:
    """Reads the side files of `folder` into tables over the vocabularies.

    Args:
        folder: the sharded data folder.
        users, movies: the vocabularies (row k + 1 is entry k).
        trained_users, trained_movies: bool [vocabulary + 1], True for the rows
            that appear in the training rows; the others stay unknown.

    Returns:
        The tables, or None when the folder has neither file.

    Raises:
        DataError: a file is malformed (the message names the file and line).
    """
    folder = Path(folder)
    if not has_side_files(folder):
        return None
    user_row = {user: row for row, user in enumerate(users, start=1)}
    movie_row = {movie: row for row, movie in enumerate(movies, start=1)}
    user_attributes, movie_attributes = {}, {}
    for line_no, fields, path in _records(folder / USERS_FILE, USERS_HEADER):
        user, age, gender, occupation, zip_code = fields
        row = user_row.get(user, 0)
        age = _age(age, path, line_no)
        if row and trained_users[row]:
            user_attributes[row] = (age, gender, occupation, zip_code)
    for line_no, fields, path in _records(folder / MOVIES_FILE, MOVIES_HEADER):
        title, genres = fields
        row = movie_row.get(title, 0)
        if row and trained_movies[row]:
            movie_attributes[row] = (tuple(genre for genre in genres.split("|") if genre), release_year(title))
    logger.info(
        "side features of %d users and %d movies from %s (ids in the training rows only)",
        len(user_attributes),
        len(movie_attributes),
        folder,
    )
    return side_tables(user_attributes, movie_attributes, len(users), len(movies))


def write_side_files(folder: Path, row_sets: Sequence) -> None:
    """Writes users.tsv and movies.tsv from rating rows; the first row of an id gives its attributes.

    Args:
        folder: where to write (created if missing); each file is written atomically.
        row_sets: `train.data.Ratings` (pass the training rows only); None entries are skipped.

    Raises:
        OutputError: an id or attribute contains a tab or a line break.
    """
    users: dict[str, str] = {}
    movies: dict[str, str] = {}
    for rows in (rows for rows in row_sets if rows is not None):
        for k in range(len(rows.user_id)):
            user, title = str(rows.user_id[k]), str(rows.movie_title[k])
            if user not in users:
                fields = (user, str(int(rows.user_age[k])), rows.user_gender[k], rows.user_occupation[k],
                          rows.user_zip_code[k])
                users[user] = _line(fields, USERS_FILE)
            if title not in movies:
                movies[title] = _line((title, rows.movie_genres[k]), MOVIES_FILE)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / USERS_FILE, "".join([USERS_HEADER + "\n", *users.values()]))
    write_atomically(folder / MOVIES_FILE, "".join([MOVIES_HEADER + "\n", *movies.values()]))


def _line(fields: Sequence, file_name: str) -> str:
    fields = [str(field) for field in fields]
    for field in fields:
        if any(character in field for character in "\t\r\n"):
            raise OutputError(f"{field!r} contains a tab or a line break and cannot be written to {file_name}")
    return "\t".join(fields) + "\n"


def _records(path: Path, header: str):
    """Yields (line number, fields, path) of a side file's data lines; nothing if the file is absent.

    Raises:
        DataError: a wrong header or column count, an empty id or an id listed twice.
    """
    if not path.is_file():
        return
    columns = header.count("\t") + 1
    first_line: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8", newline="") as lines:
            found = lines.readline().rstrip("\r\n")
            if found != header:
                raise DataError(f"{path} line 1: expected the header {header!r}, found {found[:80]!r}")
            for line_no, line in enumerate(lines, start=2):
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != columns:
                    raise DataError(
                        f"{path} line {line_no}: expected {columns} tab-separated columns, found {len(fields)}"
                    )
                if not fields[0]:
                    raise DataError(f"{path} line {line_no}: the id in the first column is empty")
                if first_line.setdefault(fields[0], line_no) != line_no:
                    raise DataError(f"{path} line {line_no}: {fields[0]!r} is already listed on line "
                                    f"{first_line[fields[0]]}")
                yield line_no, fields, path
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None


def _age(text: str, path: Path, line_no: int) -> int:
    if not text:
        return -1
    try:
        age = int(text)
    except ValueError:
        raise DataError(f"{path} line {line_no}: age {text!r} is not a whole number (leave it empty if unknown)") \
            from None
    if not 0 <= age <= 150:
        raise DataError(f"{path} line {line_no}: age {age} is outside 0..150")
    return age

"""Side features of users and movies as index-space tables, built from training rows only.

A user's features are their age group, gender, occupation and the first digit
of their zip code; a movie's are its genres and its release-year bucket (the
year in its title). Row k+1 of a table belongs to vocabulary entry k; row 0,
and every bucket 0, is "unknown". A user or movie that the training rows do
not mention keeps the unknown bucket everywhere, as an id first seen on a
device would: the test rows never inform these tables. Numpy only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Sequence

import numpy as np

UNKNOWN = 0  # row 0 of every id table, bucket 0 of every feature
AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens 1M's age groups
GENDERS = ("M", "F")
ZIP_BUCKETS = 12  # unknown, the digits 0-9, and "not a digit" (Canadian codes)
YEAR_BUCKETS = 15  # unknown, before 1950, four decades, then 1990..1998 one by one
YEAR_PATTERN = re.compile(r"\((\d{4})\)\s*$")
USER_FEATURES = ("age group", "gender", "occupation", "zip code's first digit")


@dataclasses.dataclass(frozen=True)
class SideFeatures:
    """Side-feature tables over the vocabularies (row 0 = unknown id).

    Attributes:
        user_features: int32 [users + 1, 4], one bucket per `USER_FEATURES` entry.
        user_feature_sizes: the number of buckets of each user feature.
        movie_genres: float32 [movies + 1, genres]; a movie's genres share weight 1.
        movie_year: int32 [movies + 1], the release-year bucket (< YEAR_BUCKETS).
    """

    user_features: np.ndarray
    user_feature_sizes: tuple[int, ...]
    movie_genres: np.ndarray
    movie_year: np.ndarray

    def __post_init__(self):
        if self.user_features.shape[1:] != (len(self.user_feature_sizes),):
            raise ValueError(f"user_features has shape {self.user_features.shape}, expected one column a feature")
        if len(self.movie_genres) != len(self.movie_year):
            raise ValueError(f"movie_genres has {len(self.movie_genres)} rows, movie_year {len(self.movie_year)}")


def side_features(row_sets: Sequence, users: Sequence[str], movies: Sequence[str]) -> SideFeatures:
    """Builds the tables from rating rows; the first row of a user or movie gives its features.

    Args:
        row_sets: rating row sets (`train.data.Ratings`, or any object with
            `user_id` and `movie_title` arrays and, optionally, `user_age`,
            `user_gender`, `user_occupation`, `user_zip_code`, `movie_genres`).
            Pass the training rows only. None entries are skipped.
        users, movies: the vocabularies; rows of ids the rows never mention stay unknown.

    Returns:
        The tables.
    """
    user_row = {user: row for row, user in enumerate(users, start=1)}
    movie_row = {movie: row for row, movie in enumerate(movies, start=1)}
    user_attributes: dict[int, tuple] = {}
    movie_attributes: dict[int, tuple] = {}
    for rows in (rows for rows in row_sets if rows is not None):
        has_users, has_genres = hasattr(rows, "user_age"), hasattr(rows, "movie_genres")
        for k in range(len(rows.user_id)):
            user, movie = user_row.get(str(rows.user_id[k])), movie_row.get(str(rows.movie_title[k]))
            if user is not None and user not in user_attributes and has_users:
                user_attributes[user] = (
                    int(rows.user_age[k]),
                    str(rows.user_gender[k]),
                    str(rows.user_occupation[k]),
                    str(rows.user_zip_code[k]),
                )
            if movie is not None and movie not in movie_attributes:
                genres = str(rows.movie_genres[k]).split("|") if has_genres else []
                movie_attributes[movie] = (tuple(g for g in genres if g), release_year(str(rows.movie_title[k])))

    return side_tables(user_attributes, movie_attributes, len(users), len(movies))


def side_tables(user_attributes: dict, movie_attributes: dict, user_count: int, movie_count: int) -> SideFeatures:
    """Builds the tables from each id's attributes.

    Args:
        user_attributes: user row -> (age, gender, occupation, zip code); age -1,
            or an empty string, for unknown.
        movie_attributes: movie row -> (genres as a tuple of names, release year or None).
        user_count, movie_count: the vocabulary sizes; rows missing from the
            attributes stay unknown.

    Returns:
        The tables.
    """
    occupations = sorted({occupation for _, _, occupation, _ in user_attributes.values() if occupation})
    occupation_bucket = {occupation: bucket for bucket, occupation in enumerate(occupations, start=1)}
    user_features = np.zeros((user_count + 1, len(USER_FEATURES)), np.int32)
    for row, (age, gender, occupation, zip_code) in user_attributes.items():
        user_features[row] = (
            _age_bucket(age),
            GENDERS.index(gender) + 1 if gender in GENDERS else UNKNOWN,
            occupation_bucket.get(occupation, UNKNOWN),
            _zip_bucket(zip_code),
        )

    genre_names = sorted({genre for genres, _ in movie_attributes.values() for genre in genres})
    genre_column = {genre: column for column, genre in enumerate(genre_names)}
    movie_genres = np.zeros((movie_count + 1, max(len(genre_names), 1)), np.float32)
    movie_year = np.zeros(movie_count + 1, np.int32)
    for row, (genres, year) in movie_attributes.items():
        for genre in genres:
            movie_genres[row, genre_column[genre]] = 1.0
        movie_year[row] = _year_bucket(year)
    movie_genres /= np.maximum(movie_genres.sum(axis=1, keepdims=True), 1.0)
    sizes = (len(AGE_EDGES) + 2, len(GENDERS) + 1, len(occupations) + 1, ZIP_BUCKETS)
    return SideFeatures(user_features, sizes, movie_genres, movie_year)


def _age_bucket(age: int) -> int:
    return UNKNOWN if age < 0 else 1 + int(np.searchsorted(AGE_EDGES, age, side="right"))


def _zip_bucket(zip_code: str) -> int:
    head = zip_code[:1]
    if not head:
        return UNKNOWN
    return 1 + int(head) if head.isdigit() else ZIP_BUCKETS - 1


def release_year(title: str) -> Optional[int]:
    """The year in a title's trailing "(YYYY)", or None."""
    match = YEAR_PATTERN.search(title)
    return int(match.group(1)) if match else None


def _year_bucket(year: Optional[int]) -> int:
    if year is None:
        return UNKNOWN
    if year < 1950:
        return 1
    if year < 1990:
        return 2 + (year - 1950) // 10  # 2..5 by decade
    return 6 + min(year - 1990, 8)  # 6..14 by year (most movies are from the 1990s)

"""Checking what callers pass: ids, candidate lists, k and personalization histories.

Every check names the argument and, for lists, the position of the bad
element, so a caller (or the command line) can point at it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from device_runtime import contract
from device_runtime.errors import HistoryError, UnknownIdError

# How many unknown ids an UnknownIdError message lists before "and N more".
MAX_IDS_IN_MESSAGE = 5


def as_list(values, what: str) -> Sequence:
    """A list, tuple or 1-D array of ids as a sequence; TypeError/ValueError for anything else."""
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"{what} must be a list, tuple or 1-D numpy array of ids, got a single {type(values).__name__}; "
            "wrap it in a list"
        )
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got an array of shape {values.shape}")
        return values.tolist()
    if isinstance(values, (list, tuple)):
        return values
    if isinstance(values, Sequence):
        return list(values)
    raise TypeError(f"{what} must be a list, tuple or 1-D numpy array of ids, got {type(values).__name__}")


def encode_all(values: Sequence, what: str) -> tuple[Sequence[str], np.ndarray]:
    """The ids as text and as a numpy object array of UTF-8 bytes (what a string tensor takes)."""
    try:
        data = [value.encode("utf-8") for value in values]  # the common case: all str
        texts = values
    except (AttributeError, TypeError, UnicodeEncodeError):
        texts = [to_text(value, f"{what}[{position}]") for position, value in enumerate(values)]
        data = [text.encode("utf-8") for text in texts]
    array = np.empty(len(data), dtype=object)
    array[:] = data
    return texts, array


def rows_of(values: Sequence, rows: Mapping[str, int], what: str) -> tuple[Sequence[str], np.ndarray, list[str]]:
    """Maps ids to table rows (unknown ids to the OOV row).

    Returns:
        (the ids as text, int32 rows, the unknown ids as text in input order).
    """
    found = [rows.get(value) if isinstance(value, str) else None for value in values]
    if None not in found:  # the common case: every id a known str, valid by construction
        return values, np.array(found, dtype=np.int32), []
    texts = list(values)
    unknown = []
    for position, row in enumerate(found):
        if row is None:
            text = to_text(values[position], f"{what}[{position}]")
            texts[position] = text
            row = rows.get(text)
            if row is None:
                unknown.append(text)
                row = contract.OOV_ROW
            found[position] = row
    return texts, np.array(found, dtype=np.int32), unknown


def to_text(value, what: str) -> str:
    """Validates one id (str, UTF-8 bytes or int) and returns it as text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{what} is not valid Unicode text ({error.reason}); pass a proper string") from None
        return str(value)
    if isinstance(value, bytes):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} is bytes that are not UTF-8; pass text or UTF-8 bytes") from None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be a str, bytes or int, got bool {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        raise TypeError(f"{what} must be a str, bytes or int, got float {value!r}; ids are text, e.g. '42'")
    if isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{what} must be a str, bytes or int, got a nested {type(value).__name__}; pass a flat list")
    raise TypeError(f"{what} must be a str, bytes or int, got {type(value).__name__}")


def user_text(user_id) -> str:
    """A user id as non-empty text."""
    text = to_text(user_id, "user_id")
    if not text:
        raise ValueError("user_id is empty; pass a user id such as '42'")
    return text


def check_k(k) -> None:
    """k must be a positive integer or None."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k must be a positive integer or None, got {k!r}")


def unknown_ids_error(unknown: Sequence[str], what: str, total: int) -> UnknownIdError:
    """The strict-mode error naming the first unknown ids."""
    shown = ", ".join(repr(text) for text in unknown[:MAX_IDS_IN_MESSAGE])
    more = f" and {len(unknown) - MAX_IDS_IN_MESSAGE} more" if len(unknown) > MAX_IDS_IN_MESSAGE else ""
    return UnknownIdError(
        f"unknown {what} ({len(unknown)} of {total}): {shown}{more}; the model would score them with its "
        "out-of-vocabulary row, so strict mode refuses; pass known ids or use strict=False"
    )


# --------------------------------------------------------------------- histories


@dataclasses.dataclass(frozen=True)
class CleanHistory:
    """A validated history, as the model's fold-in should see it.

    Attributes:
        entries: (title, rating) of known titles, each title once with its last
            rating, in the order of those last ratings, at most `contract.MAX_HISTORY`
            (the most recent).
        unknown_titles: titles the model does not know, skipped (each once, in order).
        dropped: how many of the oldest (known, distinct) entries were left out
            because the history was longer than `contract.MAX_HISTORY`.
        replaced: how many ratings were superseded by a later rating of the same title.
    """

    entries: tuple[tuple[str, float], ...]
    unknown_titles: tuple[str, ...]
    dropped: int
    replaced: int


def check_history_entry(title, rating, where: str) -> tuple[str, float]:
    """Validates one (title, rating) pair; `where` names it in the message ("history[3]", "line 4").

    Raises:
        HistoryError: the title is not text, or the rating is not a finite number in 1..5.
    """
    if not isinstance(title, str):
        raise HistoryError(f"{where}: the title must be a str, got {type(title).__name__} {title!r}")
    try:
        title.encode("utf-8")
    except UnicodeEncodeError as error:
        raise HistoryError(f"{where}: the title is not valid Unicode text ({error.reason})") from None
    if isinstance(rating, (bool, np.bool_)) or not isinstance(rating, (int, float, np.integer, np.floating)):
        raise HistoryError(f"{where}: the rating must be a number from 1 to 5, got {type(rating).__name__} {rating!r}")
    value = float(rating)
    if not math.isfinite(value):
        raise HistoryError(f"{where}: the rating is {value}; pass a finite number from 1 to 5")
    if not contract.MIN_RATING <= value <= contract.MAX_RATING:
        raise HistoryError(
            f"{where}: the rating {value:g} is outside {contract.MIN_RATING:g}..{contract.MAX_RATING:g}; "
            "pass the user's own rating on that scale"
        )
    return str(title), value


def validated_history(history) -> list[tuple[str, float]]:
    """Checks a sequence of (movie_title, rating) pairs; returns them as (str, float).

    Raises:
        HistoryError: the history is not a sequence of pairs, or an entry is bad
            (the message names its position, e.g. "history[3]").
    """
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, (Sequence, np.ndarray)):
        raise HistoryError(
            f"history must be a list of (movie_title, rating) pairs, got {type(history).__name__}"
        )
    entries = []
    for position, entry in enumerate(history):
        where = f"history[{position}]"
        if isinstance(entry, (str, bytes, Mapping)) or not isinstance(entry, (Sequence, np.ndarray)) or len(entry) != 2:
            raise HistoryError(f"{where} must be a (movie_title, rating) pair, got {entry!r}")
        entries.append(check_history_entry(entry[0], entry[1], where))
    return entries


def clean_history(
    entries: Sequence[tuple[str, float]], known: Optional[Mapping[str, int]], strict: bool, limit: int
) -> CleanHistory:
    """Deduplicates (last rating wins), skips unknown titles and keeps the `limit` most recent entries.

    Args:
        entries: validated (title, rating) pairs, oldest first.
        known: title -> row of the model's movie vocabulary.
        strict: raise for unknown titles instead of skipping them.
        limit: the most entries to keep.

    Raises:
        UnknownIdError: strict and a title is unknown.
    """
    latest: dict[str, float] = {}
    for title, rating in entries:
        latest.pop(title, None)  # re-inserting moves the title to its last position
        latest[title] = rating
    replaced = len(entries) - len(latest)
    kept = [(title, rating) for title, rating in latest.items() if known is None or title in known]
    unknown = tuple(title for title in latest if known is not None and title not in known)
    if unknown and strict:
        raise unknown_ids_error(list(unknown), "history titles", len(latest))
    dropped = max(len(kept) - limit, 0)
    return CleanHistory(tuple(kept[dropped:]), unknown, dropped, replaced)

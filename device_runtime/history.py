"""Personalization histories: checked, cleaned, and folded into a `PersonalizedUser` by the model.

Imported when a history is first personalized, not at start-up.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from device_runtime import contract
from device_runtime._log import Logger
from device_runtime.errors import HistoryError
from device_runtime.inputs import encode_all, unknown_ids_error
from device_runtime.prepared import PersonalizedUser, read_only

logger = Logger("device_runtime.ranker")  # the Ranker's records (the command line reports these itself)
# How many skipped titles a log record names before "and N more".
MAX_TITLES_IN_MESSAGE = 5


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


def personalize(model, history, strict: bool) -> PersonalizedUser:
    """Checks and cleans a history, then folds it into a user state with the model's `user_state`.

    Args:
        model: the `LoadedModel` serving (it has the personalized signatures).
        history: (movie_title, rating) pairs, oldest first.
        strict: raise for unknown titles instead of skipping them.
    """
    clean = clean_history(validated_history(history), model.movie_vocabulary().rows, strict, contract.MAX_HISTORY)
    if clean.unknown_titles:
        shown = ", ".join(repr(title) for title in clean.unknown_titles[:MAX_TITLES_IN_MESSAGE])
        extra = len(clean.unknown_titles) - MAX_TITLES_IN_MESSAGE
        logger.warning(
            "personalizing: skipped %d title(s) the model does not know: %s%s",
            len(clean.unknown_titles),
            shown,
            f" and {extra} more" if extra > 0 else "",
        )
    if clean.dropped:
        logger.warning(
            "personalizing: the history holds %d titles, more than the %d the model takes; kept the %d most recent",
            len(clean.entries) + clean.dropped,
            contract.MAX_HISTORY,
            len(clean.entries),
        )
    _, titles = encode_all([title for title, _ in clean.entries], "history")
    ratings = np.array([rating for _, rating in clean.entries], dtype=np.float32)
    vector, bias = model.user_state(titles, ratings)
    return PersonalizedUser(
        history=clean.entries,
        user_vector=read_only(vector),
        user_bias=read_only(bias),
        model_checksum=model.checksum,
        unknown_titles=clean.unknown_titles,
        dropped=clean.dropped,
        replaced=clean.replaced,
    )

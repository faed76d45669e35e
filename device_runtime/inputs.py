"""Checking what callers pass: ids, candidate lists and k (histories: `device_runtime.history`).

Every check names the argument and, for lists, the position of the bad
element, so a caller (or the command line) can point at it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from device_runtime import contract
from device_runtime.errors import ArgumentTypeError, InvalidArgumentError, UnknownIdError

# How many unknown ids an UnknownIdError message lists before "and N more".
MAX_IDS_IN_MESSAGE = 5


def as_list(values, what: str) -> Sequence:
    """A list, tuple or 1-D array of ids as a sequence; TypeError/ValueError for anything else."""
    if isinstance(values, (str, bytes)):
        raise ArgumentTypeError(
            f"{what} must be a list, tuple or 1-D numpy array of ids, got a single {type(values).__name__}; "
            "wrap it in a list"
        )
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise InvalidArgumentError(f"{what} must be 1-D, got an array of shape {values.shape}")
        return values.tolist()
    if isinstance(values, (list, tuple)):
        return values
    if isinstance(values, Sequence):
        return list(values)
    raise ArgumentTypeError(f"{what} must be a list, tuple or 1-D numpy array of ids, got {type(values).__name__}")


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
            raise InvalidArgumentError(f"{what} is not valid Unicode text ({error.reason}); pass a proper string") from None
        return str(value)
    if isinstance(value, bytes):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"{what} is bytes that are not UTF-8; pass text or UTF-8 bytes") from None
    if isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{what} must be a str, bytes or int, got bool {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        raise ArgumentTypeError(f"{what} must be a str, bytes or int, got float {value!r}; ids are text, e.g. '42'")
    if isinstance(value, (list, tuple, np.ndarray)):
        raise ArgumentTypeError(f"{what} must be a str, bytes or int, got a nested {type(value).__name__}; pass a flat list")
    raise ArgumentTypeError(f"{what} must be a str, bytes or int, got {type(value).__name__}")


def user_text(user_id) -> str:
    """A user id as non-empty text."""
    text = to_text(user_id, "user_id")
    if not text:
        raise InvalidArgumentError("user_id is empty; pass a user id such as '42'")
    return text


def check_k(k) -> None:
    """k must be a positive integer or None."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise InvalidArgumentError(f"k must be a positive integer or None, got {k!r}")


def unknown_ids_error(unknown: Sequence[str], what: str, total: int) -> UnknownIdError:
    """The strict-mode error naming the first unknown ids."""
    shown = ", ".join(repr(text) for text in unknown[:MAX_IDS_IN_MESSAGE])
    more = f" and {len(unknown) - MAX_IDS_IN_MESSAGE} more" if len(unknown) > MAX_IDS_IN_MESSAGE else ""
    return UnknownIdError(
        f"unknown {what} ({len(unknown)} of {total}): {shown}{more}; the model would score them with its "
        "out-of-vocabulary row, so strict mode refuses; pass known ids or use strict=False"
    )

"""The device runtime's exceptions, all under one base class.

Every message names what was wrong and how to fix it, so the command line can
print it as one line. `one_line` is the kit's one way to turn a foreign
error (an interpreter's, a converter's) into such a line.
"""

from __future__ import annotations

from typing import Optional, Union


class DeviceRuntimeError(Exception):
    """Base class of every error the device runtime raises on purpose."""


class ModelLoadError(DeviceRuntimeError):
    """The model file cannot be read, parsed or loaded by any usable backend."""


class SignatureError(DeviceRuntimeError):
    """The model has no signature that maps to (user, item) -> score."""


class UnknownIdError(DeviceRuntimeError, KeyError):
    """A user id or movie title is not in the model's vocabulary (strict mode)."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise.
        return str(self.args[0]) if self.args else ""


class BackendError(DeviceRuntimeError):
    """The requested interpreter backend is unknown, missing or failed at run time."""


class ManifestError(DeviceRuntimeError):
    """The manifest embedded in a model is malformed or of an unknown format."""


class HistoryError(DeviceRuntimeError, ValueError):
    """A personalization history is malformed; the message names the position of the bad entry."""


class InvalidArgumentError(DeviceRuntimeError, ValueError):
    """An argument has a value the runtime cannot use (k = 0, a 2-D id array, text that is not Unicode)."""


class ArgumentTypeError(DeviceRuntimeError, TypeError):
    """An argument is of a type the runtime does not take (a float id, a nested list, a path that is not one)."""


class ModelMismatchError(DeviceRuntimeError):
    """A personalized user state was built on another model than the one serving (re-personalize)."""


def one_line(error: Union[BaseException, str], limit: Optional[int] = None) -> str:
    """An error (or text) as one line: whitespace runs collapsed, cut to `limit` characters.

    An exception with an empty message is named by its type, so the line is never empty.
    """
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text

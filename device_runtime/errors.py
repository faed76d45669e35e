"""The device runtime's exceptions, all under one base class.

Every message names what was wrong and how to fix it, so the command line can
print it as one line.
"""


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

"""The aarch64 emulation check's exceptions, all under one base class.

Every message is one line that names what is missing or wrong and how to fix
it; the command line prints it as it is.
"""

from __future__ import annotations


class EmulationError(Exception):
    """Base class of every error the aarch64 check raises on purpose."""


class SettingsError(EmulationError):
    """A command-line setting is wrong (missing model file, bad count, ...)."""


class MissingToolError(EmulationError):
    """qemu-aarch64-static, debootstrap, dpkg or pip is not available."""


class NetworkError(EmulationError):
    """Debian's package mirror or the Python package index cannot be reached."""


class WheelNotFoundError(EmulationError):
    """A requirement has no wheel for aarch64 CPython 3.11 on the package index."""


class BuildError(EmulationError):
    """Building the arm64 root or a wheel folder failed for another reason."""


class CheckFailedError(EmulationError):
    """A check under emulation failed (tests, the rank command, the benchmark, parity)."""

"""The runtime's loggers, which import `logging` only once a record could be seen.

Importing `logging` is a few milliseconds of a device's cold start. Until some
code in the process has imported it, nothing can have configured a handler or
a level, so INFO and DEBUG records would be dropped anyway: they are skipped.
Warnings import `logging` and go through it as usual (to stderr by default).
"""

from __future__ import annotations

import sys


class Logger:
    """`logging.getLogger(name)`, looked up when a record is emitted."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def _logger(self):
        import logging

        return logging.getLogger(self.name)

    def debug(self, message: str, *args) -> None:
        if "logging" in sys.modules:
            self._logger().debug(message, *args, stacklevel=2)

    def info(self, message: str, *args) -> None:
        if "logging" in sys.modules:
            self._logger().info(message, *args, stacklevel=2)

    def warning(self, message: str, *args) -> None:
        self._logger().warning(message, *args, stacklevel=2)

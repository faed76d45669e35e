"""Keeps the command line's logging set-up from leaking into later tests."""

from __future__ import annotations

import logging

import pytest

from evaluation.__main__ import NOISY_LOGGERS, QUIET_LOGGERS


@pytest.fixture(autouse=True)
def _restore_logger_levels():
    """`python -m evaluation` quietens the libraries' loggers; set them back after each test."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS + NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)

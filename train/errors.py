"""The training package's exceptions, all under one base class."""


class TrainError(Exception):
    """Base class of every error the training package raises on purpose."""


class DataError(TrainError):
    """A data source is missing, changed or malformed (the message names file and line)."""


class OutputError(TrainError):
    """The output folder cannot be written safely."""


class ConfigError(TrainError, ValueError):
    """A preset or hyper-parameter is unknown or out of range."""

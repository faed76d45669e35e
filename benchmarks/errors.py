"""The benchmark harness's exceptions, all under one base class.

Every message names what was wrong and how to fix it, so the command line can
print it as one line.
"""


class BenchmarkError(Exception):
    """Base class of every error the benchmark harness raises on purpose."""


class SettingsError(BenchmarkError, ValueError):
    """A benchmark setting (counts, threads, runs, paths) is out of range or unusable."""


class OutputError(BenchmarkError):
    """A report file (JSON, CSV, plot) cannot be written."""

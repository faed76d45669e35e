"""The evaluation's exceptions, all under one base class.

Every message names what was wrong and how to fix it, so the command line can
print it as one line.
"""


class EvaluationError(Exception):
    """Base class of every error the evaluation raises on purpose."""


class SettingsError(EvaluationError, ValueError):
    """An option is out of range, or names an output that cannot be used."""


class StepError(EvaluationError):
    """A step (training, the latency harness, a scale run) could not run or gave no usable result."""

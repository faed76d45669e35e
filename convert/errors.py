"""The converter's exceptions, all under one base class.

Every message names what was wrong and how to fix it, so the command line can
print it as one line. `ValidationError` carries every failed check at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from convert.results import CheckFailure, ConversionResult


class ConvertError(Exception):
    """Base class of every error the converter raises on purpose."""


class InputError(ConvertError):
    """A path or option given to the converter is wrong (missing, not a SavedModel, bad value)."""


class ModelSignatureError(ConvertError):
    """The model's signature does not map onto (user, item) -> score by name."""


class ParityDataError(ConvertError):
    """The parity data cannot be loaded or does not match the model's vocabulary."""


class ConversionError(ConvertError):
    """The TFLite converter failed, or the quantization mode cannot apply to this model."""


class UnsupportedOpsError(ConversionError):
    """The flatbuffer needs Flex (SELECT_TF_OPS) or custom ops, which the device runtime lacks.

    Attributes:
        ops: the offending operator names, e.g. ("FlexRegexReplace",).
    """

    def __init__(self, message: str, ops: Sequence[str] = ()):
        super().__init__(message)
        self.ops = tuple(ops)


class ValidationError(ConvertError):
    """The converted model failed one or more checks; all of them are listed.

    Attributes:
        failures: every failed check (name, figure, bound).
        result: the full result, as written to the rejected report.
    """

    def __init__(self, failures: Sequence["CheckFailure"], result: "ConversionResult | None" = None):
        self.failures = tuple(failures)
        self.result = result
        count = len(self.failures)
        listed = "; ".join(str(failure) for failure in self.failures)
        super().__init__(f"{count} check{'s' if count != 1 else ''} failed: {listed}")


class ParityError(ValidationError):
    """The .tflite's outputs differ from the SavedModel's beyond the tolerances."""


class TargetError(ValidationError):
    """The .tflite cannot load or run on a requested target runtime."""

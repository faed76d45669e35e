"""Convert a ranking SavedModel to a validated .tflite with an embedded manifest.

Run `python -m convert SAVED_MODEL --out MODEL.tflite`; from Python,
`convert_saved_model(saved_model, output, ConversionConfig(...))`, and
`check_parity(saved_model, tflite)` to re-check a file. Importing this
package is cheap: TensorFlow is loaded by the functions that need it.
"""

from convert.config import DEFAULT_TOLERANCES, ConversionConfig, Quantization, Tolerances
from convert.convert import check_parity, convert_saved_model
from convert.errors import (
    ConversionError,
    ConvertError,
    InputError,
    ModelSignatureError,
    ParityDataError,
    ParityError,
    TargetError,
    UnsupportedOpsError,
    ValidationError,
)
from convert.results import ConversionResult, ParityFigures
from convert.targets import Target
from convert.tflite import audit_ops

__all__ = [
    "ConversionConfig",
    "ConversionError",
    "ConversionResult",
    "ConvertError",
    "DEFAULT_TOLERANCES",
    "InputError",
    "ModelSignatureError",
    "ParityDataError",
    "ParityError",
    "ParityFigures",
    "Quantization",
    "Target",
    "TargetError",
    "Tolerances",
    "UnsupportedOpsError",
    "ValidationError",
    "audit_ops",
    "check_parity",
    "convert_saved_model",
]

"""The .tflite side: convert with builtin ops only, audit the op table, read the signatures.

The audit reads the produced flatbuffer's operator codes (device_runtime's
reader), so a Flex or custom op is caught even if a converter let it through.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence

from convert.config import Quantization
from convert.errors import ConversionError, UnsupportedOpsError
from convert.int8_weights import int8_weights
from convert.results import OpInfo
from convert.saved_model import import_tensorflow
from convert.signatures import SignatureSet, check_signatures
from convert.targets import TargetSpec
from device_runtime.backends import Backend, BackendError, Delegates, create_interpreter, import_backend
from device_runtime.errors import DeviceRuntimeError, one_line
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.signature import specs_from_interpreter_details

logger = logging.getLogger(__name__)

_UNSUPPORTED_OP_PATTERN = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def convert_saved_model_to_flatbuffer(
    saved_model: Path, signature_keys: Sequence[str], quantization: Quantization
) -> bytes:
    """Runs `TFLiteConverter.from_saved_model` with builtin ops only, every signature into one flatbuffer.

    Args:
        saved_model: the SavedModel folder.
        signature_keys: the signatures to convert (the only ones kept); constant
            tables they share are stored once.
        quantization: the weight format.

    Returns:
        The flatbuffer's bytes.

    Raises:
        UnsupportedOpsError: the model needs TensorFlow ops TFLite has no builtin for.
        ConversionError: any other converter failure.
    """
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=list(signature_keys))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization is Quantization.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization is Quantization.DYNAMIC_INT8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        flatbuffer = bytes(converter.convert())
    except Exception as error:  # noqa: BLE001 - the converter raises ConverterError and others
        raise _conversion_error(error, saved_model) from None
    if quantization is Quantization.WEIGHT_ONLY_INT8:
        flatbuffer = int8_weights(flatbuffer)
    return flatbuffer


def _conversion_error(error: Exception, saved_model: Path) -> ConversionError:
    text = str(error)
    ops = sorted(set(_UNSUPPORTED_OP_PATTERN.findall(text)))
    if ops:
        return UnsupportedOpsError(
            f"{saved_model} needs TensorFlow ops that TFLite has no builtin kernel for: {', '.join(ops)}; "
            "the device runtime has no Flex delegate, so rewrite the model without them",
            ops,
        )
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return ConversionError(f"the TFLite converter failed on {saved_model}: {first_line}")


def audit_ops(flatbuffer: bytes, source: str = "the converted model") -> tuple[OpInfo, ...]:
    """Reads the operator table and refuses Flex and custom ops.

    Args:
        flatbuffer: the .tflite bytes.
        source: how to name the model in messages.

    Returns:
        Every operator code (name, version).

    Raises:
        UnsupportedOpsError: the model uses Flex (SELECT_TF_OPS) or custom ops;
            the message lists them.
        ConversionError: the bytes are not a TFLite flatbuffer.
    """
    try:
        model = read_flatbuffer(flatbuffer, source)
    except DeviceRuntimeError as error:
        raise ConversionError(str(error)) from None
    ops = tuple(OpInfo(code.name, code.version, code.is_custom) for code in model.operator_codes)
    offending = [code for code in model.operator_codes if code.is_custom]
    if offending:
        flex = sorted(code.name for code in offending if code.is_flex)
        custom = sorted(code.name for code in offending if not code.is_flex)
        parts = []
        if flex:
            parts.append(f"Flex (SELECT_TF_OPS) ops {', '.join(flex)}")
        if custom:
            parts.append(f"custom ops {', '.join(custom)}")
        raise UnsupportedOpsError(
            f"{source} needs {' and '.join(parts)}, which the device runtime cannot run (it has builtin ops only); "
            "convert without SELECT_TF_OPS or custom ops, and rewrite the model if they are needed",
            flex + custom,
        )
    return ops


def target_op_problems(ops: Sequence[OpInfo], spec: TargetSpec) -> list[str]:
    """Lists the ops (or op versions) the target cannot load; empty if it can load them all."""
    problems = []
    for op in ops:
        highest = spec.max_op_versions.get(op.name)
        if highest is None:
            problems.append(f"{op.name} v{op.version} is not among the ops measured to load on {spec.target.value}")
        elif op.version > highest:
            problems.append(f"{op.name} v{op.version} is newer than {spec.target.value} supports (v{highest} at most)")
    return problems


def flatbuffer_signatures(
    model_path: Path, signature_key: str, user_input: Optional[str], item_input: Optional[str]
) -> SignatureSet:
    """Checks every contract signature of the .tflite by name, through an interpreter's signature runners.

    Uses LiteRT when installed, else tf.lite; default delegates are off, since
    only the signatures are read.

    Raises:
        ModelSignatureError: a signature is missing or does not fit the contract.
        ConversionError: no interpreter can open the file.
    """
    return check_signatures(
        interpreter_specs(_open_interpreter(model_path)),
        user_input=user_input,
        item_input=item_input,
        signature_key=signature_key,
        source="the converted .tflite",
    )


def interpreter_specs(interpreter) -> dict:
    """Every signature of an interpreter, described in full: key -> {"inputs": [...], "outputs": [...]}."""
    specs = {}
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)
        specs[key] = {
            "inputs": specs_from_interpreter_details(runner.get_input_details()),
            "outputs": specs_from_interpreter_details(runner.get_output_details()),
        }
    return specs


def _open_interpreter(model_path: Path):
    try:
        package = import_backend(Backend.LITERT)
    except BackendError:
        import_tensorflow()  # with the kit's environment settings, before tf.lite is imported
        package = import_backend(Backend.TENSORFLOW)
    try:
        return create_interpreter(package, model_path=model_path, delegates=Delegates.NONE)
    except (RuntimeError, ValueError, SystemError) as error:
        raise ConversionError(f"no interpreter can open the converted model: {one_line(error)}") from None

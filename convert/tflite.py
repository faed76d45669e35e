"""The .tflite side: convert with builtin ops only, audit the op table, read the signature.

The audit reads the produced flatbuffer's operator codes (device_runtime's
reader), so a Flex or custom op is caught even if a converter let it through.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from convert.config import Quantization
from convert.errors import ConversionError, ModelSignatureError, UnsupportedOpsError
from convert.results import OpInfo
from convert.saved_model import import_tensorflow
from convert.targets import TargetSpec
from device_runtime.backends import Backend, BackendError, Delegates, create_interpreter, import_backend
from device_runtime.errors import DeviceRuntimeError, SignatureError, one_line
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.signature import SignatureMapping, resolve_signature, signatures_from_interpreter

logger = logging.getLogger(__name__)

# weight-only int8: weights this small stay float32 (biases, the last layer);
# the converter's dynamic-range quantizer uses the same threshold.
WEIGHT_ONLY_MIN_ELEMENTS = 1024
INT8_MAX = 127
# DEQUANTIZE versions by input (tensorflow/lite/tools/versioning/op_version.cc).
DEQUANTIZE_INT8_VERSION = 2
DEQUANTIZE_INT8_PER_CHANNEL_VERSION = 5

_UNSUPPORTED_OP_PATTERN = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def convert_saved_model_to_flatbuffer(saved_model: Path, signature_key: str, quantization: Quantization) -> bytes:
    """Runs `TFLiteConverter.from_saved_model` with builtin ops only.

    Args:
        saved_model: the SavedModel folder.
        signature_key: the signature to convert (the only one kept).
        quantization: the weight format.

    Returns:
        The flatbuffer's bytes.

    Raises:
        UnsupportedOpsError: the model needs TensorFlow ops TFLite has no builtin for.
        ConversionError: any other converter failure.
    """
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[signature_key])
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


def int8_weights(flatbuffer: bytes) -> bytes:
    """Stores a float32 model's dense kernels and embedding tables as int8, dequantized at load.

    Each constant weight of FULLY_CONNECTED (per output channel scales) and
    each GATHER table (one scale: per-row scales would cost 12 bytes a row in
    the flatbuffer) with at least `WEIGHT_ONLY_MIN_ELEMENTS` elements becomes
    an int8 tensor feeding a new DEQUANTIZE op, whose float32 output replaces
    it. The model still computes in float32: TFLite dequantizes constant inputs
    once, and XNNPACK takes the int8 kernels as static weights, so the file
    runs on the default delegate at float speed. (The converter's
    dynamic-range int8 instead uses int8 FULLY_CONNECTED kernels, version 12,
    which XNNPACK cannot prepare and tflite-runtime 2.14 cannot load.)

    Returns:
        The rewritten flatbuffer (a copy).

    Raises:
        ConversionError: the model has no weight large enough to quantize.
    """
    import_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    builtin = schema.BuiltinOperator
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    if builtin.DEQUANTIZE not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin.DEQUANTIZE
        code.version = 1
        model.operatorCodes.append(code)
        codes.append(builtin.DEQUANTIZE)
    dequantize = codes.index(builtin.DEQUANTIZE)
    weight_slots = {builtin.FULLY_CONNECTED: (1, True), builtin.GATHER: (0, False)}  # input index, per channel

    rewritten = 0
    version = model.operatorCodes[dequantize].version
    for subgraph in model.subgraphs:
        consumers: dict[int, int] = {}
        for operator in subgraph.operators:
            for index in operator.inputs:
                consumers[index] = consumers.get(index, 0) + 1
        operators = []
        for operator in subgraph.operators:
            slot = weight_slots.get(codes[operator.opcodeIndex])
            if slot is not None and _quantizable(model, subgraph, operator.inputs[slot[0]], consumers, schema):
                index = operator.inputs[slot[0]]
                dequantized, per_channel = _to_int8(model, subgraph, index, slot[1], schema)
                operators.append(_dequantize_operator(schema, dequantize, index, dequantized))
                operator.inputs = [dequantized if i == slot[0] else t for i, t in enumerate(operator.inputs)]
                version = max(version, DEQUANTIZE_INT8_PER_CHANNEL_VERSION if per_channel else DEQUANTIZE_INT8_VERSION)
                rewritten += 1
            operators.append(operator)
        subgraph.operators = operators
    if rewritten == 0:
        raise ConversionError("weight-only-int8 found no weights to quantize; use --quantize none or float16")
    model.operatorCodes[dequantize].version = version
    logger.info("weight-only int8: %d weight tensors stored as int8", rewritten)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _quantizable(model, subgraph, index: int, consumers: dict, schema) -> bool:
    """A float32 2-D constant, large enough, read by this operator only."""
    tensor = subgraph.tensors[index]
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    return (
        tensor.type == schema.TensorType.FLOAT32
        and data is not None
        and len(data) > 0
        and tensor.shape is not None
        and len(tensor.shape) == 2
        and int(np.prod(tensor.shape)) >= WEIGHT_ONLY_MIN_ELEMENTS
        and consumers.get(index) == 1
        and index not in list(subgraph.inputs) + list(subgraph.outputs)
    )


def _to_int8(model, subgraph, index: int, per_channel: bool, schema) -> tuple[int, bool]:
    """Quantizes tensor `index` in place; returns the index of a new float32 tensor for its dequantized value."""
    tensor = subgraph.tensors[index]
    buffer = model.buffers[tensor.buffer]
    weights = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), np.float32).reshape(tuple(tensor.shape))
    if per_channel:
        scales = np.abs(weights).max(axis=1) / INT8_MAX
    else:
        scales = np.array([np.abs(weights).max() / INT8_MAX])
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    quantized = np.clip(np.round(weights / (scales[:, None] if per_channel else scales)), -INT8_MAX, INT8_MAX)
    buffer.data = np.frombuffer(quantized.astype(np.int8).tobytes(), np.uint8)
    tensor.type = schema.TensorType.INT8
    parameters = schema.QuantizationParametersT()
    parameters.scale = scales.tolist()
    parameters.zeroPoint = [0] * len(scales)
    parameters.quantizedDimension = 0
    tensor.quantization = parameters

    output = schema.TensorT()
    output.shape = list(tensor.shape)
    output.type = schema.TensorType.FLOAT32
    output.buffer = 0  # buffer 0 is the flatbuffer's empty buffer: a computed tensor
    name = tensor.name.decode("utf-8") if isinstance(tensor.name, bytes) else str(tensor.name)
    output.name = f"{name}/dequantized"
    subgraph.tensors.append(output)
    return len(subgraph.tensors) - 1, per_channel and len(scales) > 1


def _dequantize_operator(schema, opcode_index: int, source: int, target: int):
    operator = schema.OperatorT()
    operator.opcodeIndex = opcode_index
    operator.inputs = [source]
    operator.outputs = [target]
    operator.builtinOptionsType = schema.BuiltinOptions.DequantizeOptions
    operator.builtinOptions = schema.DequantizeOptionsT()
    return operator


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


def flatbuffer_signature(
    model_path: Path, signature_key: str, user_input: Optional[str], item_input: Optional[str]
) -> SignatureMapping:
    """Checks the .tflite's signature by name, through an interpreter's signature runner.

    Uses LiteRT when installed, else tf.lite; default delegates are off, since
    only the signature is read.

    Raises:
        ModelSignatureError: the signature is missing or does not fit the contract.
        ConversionError: no interpreter can open the file.
    """
    interpreter = _open_interpreter(model_path)
    try:
        return resolve_signature(
            signatures_from_interpreter(interpreter, signature_key),
            user_input=user_input,
            item_input=item_input,
            signature_key=signature_key,
        )
    except SignatureError as error:
        raise ModelSignatureError(f"the converted .tflite: {error}") from None


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

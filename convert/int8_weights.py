"""The kit's weight-only int8 variant: large float32 constants stored as int8, dequantized once at load.

`int8_weights` rewrites a float32 flatbuffer. A multi-signature model keeps one
copy of each constant table and lets every subgraph that needs it read that
buffer through a tensor of its own (the movie vectors of the default model are
read by gathers in five subgraphs and by the top-k matvecs in two more), so the
rewrite works per *buffer*: each buffer is quantized once, and every tensor
that reads it, in every subgraph, becomes an int8 tensor feeding a DEQUANTIZE
op whose float32 output replaces it for all of that subgraph's operators. The
operators themselves are untouched and keep computing in float32; TFLite
dequantizes a constant once, when the interpreter is prepared, and XNNPACK
takes a DEQUANTIZE of a constant into FULLY_CONNECTED as static weights, so
the file runs at float speed on the default delegate and loads on
tflite-runtime 2.14 (DEQUANTIZE v5 at most). The converter's dynamic-range
int8 instead computes FULLY_CONNECTED in int8 (version 12), which
tflite-runtime 2.14 cannot load.

Scales: one scale per output channel (row) for a buffer read only as the
weights of FULLY_CONNECTED ops; one scale for the whole buffer otherwise
(embedding tables read by gathers, where a scale per row would cost 12 bytes
a row in the flatbuffer).
"""

from __future__ import annotations

import collections
import dataclasses
import logging

import numpy as np

from convert.errors import ConversionError
from convert.saved_model import import_tensorflow

logger = logging.getLogger(__name__)

# Weights this small stay float32 (biases, the last layer, the ridge penalties);
# the converter's dynamic-range quantizer uses the same threshold.
WEIGHT_ONLY_MIN_ELEMENTS = 1024
INT8_MAX = 127
FULLY_CONNECTED_WEIGHTS_INPUT = 1
# DEQUANTIZE versions by input (tensorflow/lite/tools/versioning/op_version.cc).
DEQUANTIZE_INT8_VERSION = 2
DEQUANTIZE_INT8_PER_CHANNEL_VERSION = 5


@dataclasses.dataclass(frozen=True)
class _Reader:
    """One tensor that reads a buffer: where it is and which operators consume it (and at which input)."""

    subgraph: int
    tensor: int
    consumers: tuple[tuple[int, int], ...]  # (operator index, input slot)


def int8_weights(flatbuffer: bytes) -> bytes:
    """Stores a float32 model's large constant matrices as int8, dequantized once at load.

    A buffer is quantized when every tensor reading it is a float32 2-D
    constant of at least `WEIGHT_ONLY_MIN_ELEMENTS` elements, of one shape,
    read by at least one operator and never a subgraph's input or output.

    Returns:
        The rewritten flatbuffer (a copy).

    Raises:
        ConversionError: the model has no weight large enough to quantize.
    """
    import_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    fully_connected = schema.BuiltinOperator.FULLY_CONNECTED
    readers = _readers_by_buffer(model)
    # subgraph -> [(tensor, dequantized tensor, index of its first consumer)]
    insertions: dict[int, list[tuple[int, int, int]]] = collections.defaultdict(list)
    per_channel_used = False
    quantized_buffers = 0
    for buffer_index, buffer_readers in readers.items():
        if not _quantizable(model, buffer_index, buffer_readers, schema):
            continue
        per_channel = all(
            codes[model.subgraphs[r.subgraph].operators[op].opcodeIndex] == fully_connected
            and slot == FULLY_CONNECTED_WEIGHTS_INPUT
            for r in buffer_readers
            for op, slot in r.consumers
        )
        parameters = _quantize_buffer(model, buffer_index, buffer_readers[0], per_channel, schema)
        quantized_buffers += 1
        per_channel_used |= per_channel and len(parameters.scale) > 1
        for reader in buffer_readers:
            dequantized = _int8_reader(model.subgraphs[reader.subgraph], reader.tensor, parameters, schema)
            first = min(op for op, _ in reader.consumers)
            insertions[reader.subgraph].append((reader.tensor, dequantized, first))
    if not insertions:
        raise ConversionError("weight-only-int8 found no weights to quantize; use --quantize none or float16")

    dequantize = _dequantize_opcode(model, codes, schema)
    wanted = DEQUANTIZE_INT8_PER_CHANNEL_VERSION if per_channel_used else DEQUANTIZE_INT8_VERSION
    model.operatorCodes[dequantize].version = max(model.operatorCodes[dequantize].version, wanted)
    for subgraph_index, rewrites in insertions.items():
        _insert_dequantize_ops(model.subgraphs[subgraph_index], rewrites, dequantize, schema)
    readers_rewritten = sum(len(rewrites) for rewrites in insertions.values())
    logger.info("weight-only int8: %d buffers stored as int8, read by %d tensors", quantized_buffers, readers_rewritten)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _readers_by_buffer(model) -> dict[int, list[_Reader]]:
    """Buffer index -> every tensor (in any subgraph) that reads it, for buffers that hold data."""
    readers: dict[int, list[_Reader]] = collections.defaultdict(list)
    for subgraph_index, subgraph in enumerate(model.subgraphs):
        consumers = collections.defaultdict(list)
        for op_index, operator in enumerate(subgraph.operators):
            for slot, tensor_index in enumerate(operator.inputs):
                if tensor_index >= 0:
                    consumers[tensor_index].append((op_index, slot))
        for tensor_index, tensor in enumerate(subgraph.tensors):
            buffer = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
            if buffer is not None and buffer.data is not None and len(buffer.data) > 0:
                readers[tensor.buffer].append(_Reader(subgraph_index, tensor_index, tuple(consumers[tensor_index])))
    return readers


def _quantizable(model, buffer_index: int, readers: list[_Reader], schema) -> bool:
    shapes = set()
    for reader in readers:
        subgraph = model.subgraphs[reader.subgraph]
        tensor = subgraph.tensors[reader.tensor]
        if (
            tensor.type != schema.TensorType.FLOAT32
            or tensor.shape is None
            or len(tensor.shape) != 2
            or reader.tensor in list(subgraph.inputs) + list(subgraph.outputs)
        ):
            return False
        shapes.add(tuple(int(d) for d in tensor.shape))
    if len(shapes) != 1 or not any(reader.consumers for reader in readers):
        return False
    (shape,) = shapes
    elements = int(np.prod(shape))
    return elements >= WEIGHT_ONLY_MIN_ELEMENTS and len(model.buffers[buffer_index].data) == 4 * elements


def _quantize_buffer(model, buffer_index: int, reader: _Reader, per_channel: bool, schema):
    """Rewrites the buffer as int8 (symmetric); returns the quantization parameters every reader shares."""
    buffer = model.buffers[buffer_index]
    shape = tuple(int(d) for d in model.subgraphs[reader.subgraph].tensors[reader.tensor].shape)
    weights = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), np.float32).reshape(shape)
    if per_channel:
        scales = np.abs(weights).max(axis=1) / INT8_MAX
    else:
        scales = np.array([np.abs(weights).max() / INT8_MAX])
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    quantized = np.clip(np.round(weights / (scales[:, None] if per_channel else scales)), -INT8_MAX, INT8_MAX)
    buffer.data = np.frombuffer(quantized.astype(np.int8).tobytes(), np.uint8)
    parameters = schema.QuantizationParametersT()
    parameters.scale = scales.tolist()
    parameters.zeroPoint = [0] * len(scales)
    parameters.quantizedDimension = 0
    return parameters


def _int8_reader(subgraph, index: int, parameters, schema) -> int:
    """Marks tensor `index` as int8; returns the index of a new float32 tensor for its dequantized value."""
    tensor = subgraph.tensors[index]
    tensor.type = schema.TensorType.INT8
    tensor.quantization = parameters
    output = schema.TensorT()
    output.shape = list(tensor.shape)
    output.type = schema.TensorType.FLOAT32
    output.buffer = 0  # buffer 0 is the flatbuffer's empty buffer: a computed tensor
    name = tensor.name.decode("utf-8") if isinstance(tensor.name, bytes) else str(tensor.name)
    output.name = f"{name}/dequantized"
    subgraph.tensors.append(output)
    return len(subgraph.tensors) - 1


def _dequantize_opcode(model, codes: list, schema) -> int:
    if schema.BuiltinOperator.DEQUANTIZE not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
        code.version = 1
        model.operatorCodes.append(code)
        codes.append(schema.BuiltinOperator.DEQUANTIZE)
    return codes.index(schema.BuiltinOperator.DEQUANTIZE)


def _insert_dequantize_ops(subgraph, rewrites: list[tuple[int, int, int]], opcode_index: int, schema) -> None:
    """Puts a DEQUANTIZE before each int8 tensor's first consumer and points every consumer at its output."""
    replacement = {source: target for source, target, _ in rewrites}
    before = collections.defaultdict(list)
    for source, target, first in rewrites:
        before[first].append(_dequantize_operator(schema, opcode_index, source, target))
    operators = []
    for op_index, operator in enumerate(subgraph.operators):
        operators.extend(before.get(op_index, ()))
        operator.inputs = [replacement.get(t, t) for t in operator.inputs]
        operators.append(operator)
    subgraph.operators = operators


def _dequantize_operator(schema, opcode_index: int, source: int, target: int):
    operator = schema.OperatorT()
    operator.opcodeIndex = opcode_index
    operator.inputs = [source]
    operator.outputs = [target]
    operator.builtinOptionsType = schema.BuiltinOptions.DequantizeOptions
    operator.builtinOptions = schema.DequantizeOptionsT()
    return operator

"""The runtimes a .tflite may be shipped to, and the op versions each one accepts.

An interpreter refuses a model whose operator table names an op version newer
than its kernels ("Didn't find op for builtin opcode 'FULLY_CONNECTED' version
'12'"), so the converter compares the flatbuffer's op codes with these tables
before any device sees the file.

How the tables were measured (x86_64, ai-edge-litert 2.3.0 and tflite-runtime
2.14.0): every op that appears in any variant the kit produces (float32,
float16, dynamic-int8 and weight-only-int8 of both served families, every
signature of `train.serving`) was written into copies of a weight-only-int8
model with its version set to 1..16, and each copy was loaded with the
runtime's `Interpreter(..., experimental_op_resolver_type=
BUILTIN_WITHOUT_DEFAULT_DELEGATES)`; the highest version that loaded is the
bound. tflite-runtime 2.14.0 ran under numpy 1.26 (it cannot load any model
under numpy 2). Ops missing from a table were never measured and are refused.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Mapping

from convert.errors import InputError

MAX_OP_VERSIONS_LITERT_2_3: Mapping[str, int] = {
    "ADD": 6,
    "BATCH_MATMUL": 4,
    "BROADCAST_TO": 4,
    "CALL_ONCE": 1,
    "CAST": 9,
    "CONCATENATION": 7,
    "DEQUANTIZE": 9,
    "DIV": 2,
    "EQUAL": 5,
    "EXPAND_DIMS": 1,
    "FULLY_CONNECTED": 14,
    "GATHER": 8,
    "GREATER": 2,
    "GREATER_EQUAL": 3,
    "HASHTABLE": 1,
    "HASHTABLE_FIND": 1,
    "HASHTABLE_IMPORT": 1,
    "LESS": 3,
    "LOGICAL_AND": 1,
    "MAXIMUM": 4,
    "MINIMUM": 4,
    "MUL": 8,
    "PACK": 5,
    "RANGE": 2,
    "RANK": 1,
    "RESHAPE": 1,
    "SELECT": 4,
    "SELECT_V2": 2,
    "SHAPE": 1,
    "STRIDED_SLICE": 8,
    "SUB": 5,
    "SUM": 2,
    "TILE": 3,
    "TOPK_V2": 3,
    "TRANSPOSE": 9,
    "WHILE": 1,
    "ZEROS_LIKE": 1,
}

MAX_OP_VERSIONS_TFLITE_RUNTIME_2_14: Mapping[str, int] = {
    "ADD": 5,
    "BATCH_MATMUL": 4,
    "BROADCAST_TO": 3,
    "CALL_ONCE": 1,
    "CAST": 5,
    "CONCATENATION": 4,
    "DEQUANTIZE": 5,
    "DIV": 2,
    "EQUAL": 4,
    "EXPAND_DIMS": 1,
    "FULLY_CONNECTED": 10,
    "GATHER": 6,
    "GREATER": 2,
    "GREATER_EQUAL": 3,
    "HASHTABLE": 1,
    "HASHTABLE_FIND": 1,
    "HASHTABLE_IMPORT": 1,
    "LESS": 3,
    "LOGICAL_AND": 1,
    "MAXIMUM": 4,
    "MINIMUM": 4,
    "MUL": 7,
    "PACK": 4,
    "RANGE": 2,
    "RANK": 1,
    "RESHAPE": 1,
    "SELECT": 4,
    "SELECT_V2": 2,
    "SHAPE": 1,
    "STRIDED_SLICE": 8,
    "SUB": 5,
    "SUM": 2,
    "TILE": 3,
    "TOPK_V2": 3,
    "TRANSPOSE": 6,
    "WHILE": 1,
    "ZEROS_LIKE": 1,
}


class Target(str, enum.Enum):
    """A runtime the converted file must load and run on."""

    LITERT = "litert"
    LITERT_XNNPACK = "litert-xnnpack"
    TFLITE_RUNTIME_2_14 = "tflite-runtime-2.14"

    @classmethod
    def parse(cls, value) -> "Target":
        """Returns the Target named by `value`; InputError lists the choices otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(t.value for t in cls)
            raise InputError(f"unknown target {value!r}; choose one of: {names}") from None


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """What a target accepts.

    Attributes:
        target: the target's name.
        runtime: the interpreter package that embodies it (a device_runtime
            Backend value: "ai_edge_litert" or "tflite_runtime").
        version_prefix: the package versions the table was measured on.
        max_op_versions: builtin op name -> highest version that loads.
        requires_default_delegates: the file must run with the runtime's
            default delegates (XNNPACK), not only with builtin kernels.
        description: one line for humans.
    """

    target: Target
    runtime: str
    version_prefix: str
    max_op_versions: Mapping[str, int]
    requires_default_delegates: bool
    description: str


TARGETS: Mapping[Target, TargetSpec] = {
    Target.LITERT: TargetSpec(
        Target.LITERT,
        "ai_edge_litert",
        "2.3",
        MAX_OP_VERSIONS_LITERT_2_3,
        requires_default_delegates=False,
        description="LiteRT (ai-edge-litert 2.3), with or without its default XNNPACK delegate",
    ),
    Target.LITERT_XNNPACK: TargetSpec(
        Target.LITERT_XNNPACK,
        "ai_edge_litert",
        "2.3",
        MAX_OP_VERSIONS_LITERT_2_3,
        requires_default_delegates=True,
        description="LiteRT (ai-edge-litert 2.3) on its default path, XNNPACK applied",
    ),
    Target.TFLITE_RUNTIME_2_14: TargetSpec(
        Target.TFLITE_RUNTIME_2_14,
        "tflite_runtime",
        "2.14",
        MAX_OP_VERSIONS_TFLITE_RUNTIME_2_14,
        requires_default_delegates=False,
        description="tflite-runtime 2.14 (its last release; numpy<2), e.g. armv7l boards",
    ),
}

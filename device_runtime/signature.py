"""The name-based signature contract between training, conversion and the device.

A ranking model takes two 1-D string tensors (user ids and item ids, same
length) and returns one float32 score per pair. The kit exports them under fixed
names and every consumer matches inputs by *name*, never by position. Models
exported with other names (for example straight from the TFRS tutorial, whose
output is `output_1` of shape [N, 1]) are accepted when the caller says which
input is the user and which is the item.

This module is the single definition of that contract; `convert` checks a
flatbuffer against it and `Ranker` checks it again at load time.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

from device_runtime.errors import SignatureError

SIGNATURE_KEY = "serving_default"
USER_INPUT = "user_id"
ITEM_INPUT = "movie_title"
OUTPUT = "rating"

STRING = "string"
FLOAT32 = "float32"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """What the contract needs to know about one signature tensor.

    Attributes:
        name: the signature's name for the tensor (not the graph tensor name).
        dtype: "string", "float32", ... (see `dtype_name`).
        shape: the shape signature, -1 for a dynamic dimension.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class SignatureMapping:
    """Which signature tensors play which role, checked once at load time."""

    signature_key: str
    user_input: str
    item_input: str
    output: str
    output_shape: tuple[int, ...]

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict (used in the converter's manifest)."""
        return {
            "signature_key": self.signature_key,
            "user_input": self.user_input,
            "item_input": self.item_input,
            "output": self.output,
            "output_shape": list(self.output_shape),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "SignatureMapping":
        """Inverse of `to_dict`; raises SignatureError on a malformed dict."""
        try:
            return cls(
                signature_key=str(data["signature_key"]),
                user_input=str(data["user_input"]),
                item_input=str(data["item_input"]),
                output=str(data["output"]),
                output_shape=tuple(int(d) for d in data["output_shape"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SignatureError(f"malformed signature mapping {dict(data)!r}: {error}") from None


def dtype_name(dtype) -> str:
    """Normalises a numpy, TensorFlow or string dtype to the contract's names.

    String tensors appear as `numpy.bytes_`, `numpy.object_` or `tf.string`
    depending on who describes them; all become "string".
    """
    name = getattr(dtype, "name", None)
    if name is None:
        name = getattr(dtype, "__name__", None) or str(dtype)
    name = str(name).lower()
    if name in ("string", "bytes", "bytes_", "str", "str_", "object", "object_") or name.startswith(("bytes", "str")):
        return STRING
    return name


def _describe(tensors: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{t.name} ({t.dtype}{list(t.shape)})" for t in tensors) or "none"


def resolve_signature(
    signatures: Mapping[str, Mapping[str, Sequence[TensorSpec]]],
    *,
    user_input: Optional[str] = None,
    item_input: Optional[str] = None,
    signature_key: str = SIGNATURE_KEY,
) -> SignatureMapping:
    """Maps a model's signature onto the (user, item) -> score contract, by name.

    Args:
        signatures: signature key -> {"inputs": [TensorSpec], "outputs": [TensorSpec]}.
        user_input: the input that holds user ids; defaults to `USER_INPUT`.
        item_input: the input that holds item ids; defaults to `ITEM_INPUT`.
        signature_key: which signature to use.

    Returns:
        The checked mapping.

    Raises:
        SignatureError: the key is missing, the inputs are not exactly the two
            named string tensors of dynamic length, or there is not exactly one
            float32 output of shape [N] or [N, 1]. The message lists what the
            model has and how to map other names.
    """
    if signature_key not in signatures:
        found = ", ".join(sorted(signatures)) or "no signatures at all"
        raise SignatureError(
            f"the model has no signature {signature_key!r} (found: {found}); "
            "export the model with a serving_default signature"
        )
    inputs = list(signatures[signature_key].get("inputs", ()))
    outputs = list(signatures[signature_key].get("outputs", ()))
    user_name = user_input or USER_INPUT
    item_name = item_input or ITEM_INPUT
    if user_name == item_name:
        raise SignatureError(f"user and item input are both {user_name!r}; name two different inputs")

    by_name = {t.name: t for t in inputs}
    wanted = {user_name, item_name}
    if set(by_name) != wanted:
        hint = (
            "pass the names with user_input=NAME, item_input=NAME "
            "(--user-input NAME --item-input NAME on the command line)"
            if user_input is None and item_input is None
            else "check the names given for the user and item inputs"
        )
        raise SignatureError(
            f"signature {signature_key!r} must have exactly the inputs {sorted(wanted)}, "
            f"found: {_describe(inputs)}; {hint}"
        )
    for name in (user_name, item_name):
        spec = by_name[name]
        if spec.dtype != STRING:
            raise SignatureError(f"input {name!r} must be a string tensor, found {spec.dtype}")
        if len(spec.shape) != 1 or spec.shape[0] not in (-1, None):
            raise SignatureError(
                f"input {name!r} must be 1-D of dynamic length (shape [-1]), found {list(spec.shape)}"
            )

    if len(outputs) != 1:
        raise SignatureError(f"signature {signature_key!r} must have exactly one output, found: {_describe(outputs)}")
    output = outputs[0]
    if output.dtype != FLOAT32:
        raise SignatureError(f"output {output.name!r} must be float32, found {output.dtype}")
    shape = tuple(-1 if d is None else int(d) for d in output.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise SignatureError(f"output {output.name!r} must have shape [N] or [N, 1], found {list(shape)}")
    return SignatureMapping(
        signature_key=signature_key,
        user_input=user_name,
        item_input=item_name,
        output=output.name,
        output_shape=shape,
    )


def specs_from_interpreter_details(details: Mapping[str, Mapping]) -> list[TensorSpec]:
    """Builds TensorSpecs from a SignatureRunner's get_input/output_details()."""
    specs = []
    for name, detail in details.items():
        shape = detail.get("shape_signature")
        if shape is None:
            shape = detail.get("shape", ())
        specs.append(TensorSpec(name=name, dtype=dtype_name(detail["dtype"]), shape=tuple(int(d) for d in shape)))
    return specs


def signatures_from_interpreter(interpreter, signature_key: str = SIGNATURE_KEY) -> dict:
    """Describes a TFLite interpreter's signatures in the form `resolve_signature` takes.

    Only `signature_key` is described in full (through its signature runner);
    the other keys are listed with no tensors, which is enough for messages.

    Args:
        interpreter: an `Interpreter` from ai_edge_litert, tflite_runtime or tf.lite.
        signature_key: the signature to describe.

    Returns:
        signature key -> {"inputs": [TensorSpec], "outputs": [TensorSpec]}.
    """
    signatures: dict = {key: {"inputs": [], "outputs": []} for key in interpreter.get_signature_list()}
    if signature_key in signatures:
        runner = interpreter.get_signature_runner(signature_key)
        signatures[signature_key] = {
            "inputs": specs_from_interpreter_details(runner.get_input_details()),
            "outputs": specs_from_interpreter_details(runner.get_output_details()),
        }
    return signatures


def check_contract_signature(key: str, runner, state_dimension: Optional[int], source: str) -> None:
    """Checks a signature runner's tensors against `device_runtime.contract` (names, dtypes, shapes).

    Args:
        key: a contract signature key other than the strings one (see `resolve_signature`).
        runner: the interpreter's signature runner for `key`.
        state_dimension: the manifest's state dimension (None when the model has none).
        source: how to name the model in messages.

    Raises:
        SignatureError: the tensors differ from the contract; see `check_contract_tensors`.
    """
    found = {
        "inputs": specs_from_interpreter_details(runner.get_input_details()),
        "outputs": specs_from_interpreter_details(runner.get_output_details()),
    }
    check_contract_tensors(key, found, state_dimension, source, fix="convert the model again with this kit")


def check_contract_tensors(
    key: str, found: Mapping[str, Sequence[TensorSpec]], state_dimension: Optional[int], source: str, fix: str
) -> None:
    """Checks one signature's tensors against `device_runtime.contract` by name (the runtime's and the converter's).

    Args:
        key: a contract signature key other than the strings one.
        found: {"inputs": [TensorSpec], "outputs": [TensorSpec]} as the model describes them.
        state_dimension: the length D of `user_vector`, or None when unknown.
        source: how to name the model in messages.
        fix: what to do about a mismatch, ending the message.

    Raises:
        SignatureError: one line naming the signature and the first tensor that is missing, unexpected, or of
            another dtype or shape (a dimension the contract leaves dynamic must be dynamic).
    """
    from device_runtime import contract

    wanted = contract.SIGNATURES[key]
    for side, tensors in (("input", wanted.inputs), ("output", wanted.outputs)):
        actual = {tensor.name: tensor for tensor in found.get(side + "s", ())}
        missing = [tensor.name for tensor in tensors if tensor.name not in actual]
        unexpected = sorted(set(actual) - {tensor.name for tensor in tensors})
        described = ", ".join(
            f"{t.name} ({t.dtype}{list(contract.expected_shape(t, state_dimension))})" for t in tensors
        )
        if missing or unexpected:
            parts = [f"lacks the {side}(s) {', '.join(missing)}"] if missing else []
            parts += [f"has the unexpected {side}(s) {', '.join(unexpected)}"] if unexpected else []
            raise SignatureError(
                f"{source}: signature {key!r} {' and '.join(parts)}; the contract's {side}s are {described}; {fix}"
            )
        for tensor in tensors:
            shape = contract.expected_shape(tensor, state_dimension)
            got = actual[tensor.name]
            if got.dtype != tensor.dtype or not _shape_fits(tuple(got.shape), shape):
                raise SignatureError(
                    f"{source}: signature {key!r} {side} {tensor.name!r} must be {tensor.dtype}{list(shape)}, "
                    f"found {got.dtype}{list(got.shape)}; {fix}"
                )


def _shape_fits(found: tuple, wanted: tuple) -> bool:
    """Same rank; a fixed wanted dimension must match exactly, a dynamic one (-1) must be dynamic."""
    return len(found) == len(wanted) and all((f in (-1, None)) if w == -1 else f == w for f, w in zip(found, wanted))

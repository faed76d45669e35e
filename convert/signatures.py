"""Which contract signatures a model answers, each checked by name against `device_runtime.contract`.

The same check runs twice: on the SavedModel before converting, and on the
`.tflite` through an interpreter's signature runners afterwards. The strings
signature is resolved by `device_runtime.signature.resolve_signature` (other
input names may be mapped to it); every other signature must carry the
contract's own key, tensor names, dtypes and shapes. The index pair
(`score_rows`, `top_k`) and the personalized set are each all-or-nothing, so a
model answers the strings signature alone (a foreign export such as the
tutorial's), the tower family, or the factor family.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

from convert.errors import ModelSignatureError
from device_runtime import contract
from device_runtime.errors import SignatureError
from device_runtime.signature import SignatureMapping, TensorSpec, check_contract_tensors, resolve_signature

# How to mend a signature that does not fit the contract.
_FIX = "export the model with train.serving (device_runtime/contract.py defines every signature)"
# Signatures that come only together.
SIGNATURE_GROUPS = {"index": contract.INDEX_SIGNATURES, "personalized": contract.PERSONALIZED_SIGNATURES}


@dataclasses.dataclass(frozen=True)
class SignatureSet:
    """The contract signatures of one model, checked.

    Attributes:
        strings: the strings signature's mapping (its key may be another than
            `serving_default`, and its tensors mapped from other names).
        keys: every contract signature the model answers, in the contract's
            order; the strings signature is listed as `contract.STRINGS`.
        state_dimension: the length of `user_vector` when the model has the
            personalized signatures, else None.
    """

    strings: SignatureMapping
    keys: tuple[str, ...]
    state_dimension: Optional[int]

    @property
    def model_keys(self) -> tuple[str, ...]:
        """The keys as the model names them (the strings signature under its own key)."""
        return tuple(self.strings.signature_key if key == contract.STRINGS else key for key in self.keys)

    @property
    def personalized(self) -> bool:
        return contract.USER_STATE in self.keys

    def describe(self) -> str:
        dimension = f" (state dimension {self.state_dimension})" if self.state_dimension is not None else ""
        return ", ".join(self.model_keys) + dimension


def check_signatures(
    specs: Mapping[str, Mapping[str, Sequence[TensorSpec]]],
    *,
    user_input: Optional[str],
    item_input: Optional[str],
    signature_key: str,
    source: str,
) -> SignatureSet:
    """Checks every contract signature a model has, by name.

    Args:
        specs: signature key -> {"inputs": [TensorSpec], "outputs": [TensorSpec]}
            (every signature of the model, described in full).
        user_input / item_input: the strings signature's input names, None for the contract's.
        signature_key: the strings signature's key.
        source: how to name the model in messages ("SavedModel DIR", "the converted .tflite").

    Returns:
        The checked set.

    Raises:
        ModelSignatureError: the strings signature does not fit; a contract
            signature has other tensor names, dtypes or shapes; a group is
            incomplete; or the state dimension differs between signatures.
            One line naming the signature, the tensor and what was expected.
    """
    if signature_key in contract.SIGNATURES and signature_key != contract.STRINGS:
        raise ModelSignatureError(
            f"--signature-key {signature_key} names the contract's {signature_key!r} signature, not a strings "
            "signature; give the key of the (user id, movie title) -> rating signature"
        )
    try:
        strings = resolve_signature(specs, user_input=user_input, item_input=item_input, signature_key=signature_key)
    except SignatureError as error:
        raise ModelSignatureError(f"{source}: {error}") from None
    present = [key for key in contract.SIGNATURES if key != contract.STRINGS and key in specs]
    for group, keys in SIGNATURE_GROUPS.items():
        found = [key for key in keys if key in present]
        if found and len(found) != len(keys):
            missing = [key for key in keys if key not in found]
            raise ModelSignatureError(
                f"{source} has the {group} signature(s) {', '.join(found)} but not {', '.join(missing)}; the {group} "
                f"signatures come together ({', '.join(keys)}): export the model with train.serving"
            )
    state_dimension = _state_dimension(specs, present, source)
    for key in present:
        try:
            check_contract_tensors(key, specs[key], state_dimension, source, fix=_FIX)
        except SignatureError as error:
            raise ModelSignatureError(str(error)) from None
    return SignatureSet(strings, (contract.STRINGS, *present), state_dimension)


def _state_dimension(specs, present: Sequence[str], source: str) -> Optional[int]:
    """The one length of `user_vector` over the personalized signatures (None without them)."""
    lengths = {}
    for key in present:
        for tensor in list(specs[key].get("inputs", ())) + list(specs[key].get("outputs", ())):
            if tensor.name == contract.USER_VECTOR and len(tensor.shape) == 1:
                lengths[key] = int(tensor.shape[0])
    if not lengths:
        return None
    if len(set(lengths.values())) != 1 or min(lengths.values()) < 1:
        found = ", ".join(f"{key} {[length]}" for key, length in lengths.items())
        raise ModelSignatureError(
            f"{source}: {contract.USER_VECTOR!r} must have one fixed length D >= 1 in every personalized signature, "
            f"found {found}; export the model with train.serving"
        )
    return next(iter(lengths.values()))

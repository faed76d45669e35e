"""A model file's proof of integrity: the checksum it carries of itself.

The converter writes the sha256 of the whole file into the manifest, computed
with the checksum's own 64 hex digits written as zeros (`manifest.CHECKSUM_PLACEHOLDER`),
then puts the digits in place. Any changed byte (bit rot, a cut-off download,
an edit) makes `verify` fail, and the runtime checks it before any byte of the
file reaches an interpreter.

A file with no manifest at all (a foreign .tflite, such as the tutorial's own
export) carries no proof; `verify` says so and the caller decides. A file whose
bytes still hold the kit's marks but whose manifest cannot be found was a kit
file and is damaged: it is refused like a mismatch.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

from device_runtime.errors import ModelLoadError
from device_runtime.flatbuffer import FlatbufferModel
from device_runtime.manifest import (
    CHECKSUM_HEX_DIGITS,
    CHECKSUM_PLACEHOLDER,
    CHECKSUM_PREFIX,
    MANIFEST_METADATA_NAME,
    MOVIES_METADATA_NAME,
    USERS_METADATA_NAME,
)

# Any of the kit's metadata names, or the manifest's first bytes: damage must erase them all to pass for foreign.
_KIT_MARKS = (
    MANIFEST_METADATA_NAME.encode("ascii"),
    USERS_METADATA_NAME.encode("ascii"),
    MOVIES_METADATA_NAME.encode("ascii"),
    CHECKSUM_PREFIX,
)
GOOD_FILE_HINT = "copy or download it again, or convert it again with `python -m convert`"


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: fewer generated methods to compile at start-up
class Verification:
    """What `verify` found.

    Attributes:
        checksum: the file's verified sha256, or None for a file without one.
    """

    checksum: Optional[str]

    @property
    def verified(self) -> bool:
        return self.checksum is not None


def checksum_position(model: FlatbufferModel) -> Optional[int]:
    """Where the 64 checksum digits sit in the file, or None when there is no manifest.

    Raises:
        ModelLoadError: the manifest does not start with the checksum field.
    """
    offset = model.metadata_offsets.get(MANIFEST_METADATA_NAME)
    if offset is None:
        return None
    payload = model.metadata[MANIFEST_METADATA_NAME]
    if not payload.startswith(CHECKSUM_PREFIX) or len(payload) < len(CHECKSUM_PREFIX) + CHECKSUM_HEX_DIGITS:
        raise ModelLoadError("the model's manifest does not start with its checksum")
    return offset + len(CHECKSUM_PREFIX)


def file_checksum(data: bytes, position: int) -> str:
    """sha256 of `data` with the 64 bytes at `position` taken as ASCII zeros."""
    view = memoryview(data)
    digest = hashlib.sha256(view[:position])
    digest.update(CHECKSUM_PLACEHOLDER.encode("ascii"))
    digest.update(view[position + CHECKSUM_HEX_DIGITS :])
    return digest.hexdigest()


def verify(data: bytes, model: FlatbufferModel, source: str) -> Verification:
    """Checks the file's own checksum.

    Args:
        data: the whole file.
        model: `read_flatbuffer(data)`.
        source: how to name the file in messages.

    Returns:
        The verified checksum, or `Verification(None)` for a file that never had one.

    Raises:
        ModelLoadError: the file is corrupt or was modified (the checksum does
            not match, or the kit's manifest is damaged).
    """
    try:
        position = checksum_position(model)
    except ModelLoadError as error:
        raise ModelLoadError(f"{source} is corrupt or was modified ({error}); {GOOD_FILE_HINT}") from None
    if position is None:
        if any(mark in data for mark in _KIT_MARKS):
            raise ModelLoadError(f"{source} is corrupt: its manifest cannot be read; {GOOD_FILE_HINT}")
        return Verification(None)
    recorded = bytes(data[position : position + CHECKSUM_HEX_DIGITS]).decode("ascii", errors="replace")
    actual = file_checksum(data, position)
    if recorded != actual:
        raise ModelLoadError(
            f"{source} is corrupt or was modified: its checksum says {recorded[:12]}..., its bytes give "
            f"{actual[:12]}...; {GOOD_FILE_HINT}"
        )
    return Verification(actual)

"""Embeds the kit's manifest and vocabularies into a .tflite flatbuffer, then seals it with its checksum."""

from __future__ import annotations

import numpy as np

from convert.saved_model import import_tensorflow
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.integrity import checksum_position, file_checksum
from device_runtime.manifest import (
    CHECKSUM_HEX_DIGITS,
    CHECKSUM_PLACEHOLDER,
    MANIFEST_METADATA_NAME,
    MOVIES_METADATA_NAME,
    USERS_METADATA_NAME,
    Manifest,
)

KIT_METADATA_NAMES = (MANIFEST_METADATA_NAME, USERS_METADATA_NAME, MOVIES_METADATA_NAME)


def embed_manifest(tflite_bytes: bytes, manifest: Manifest) -> bytes:
    """Returns a copy of the flatbuffer holding `manifest` and its vocabularies, sealed with its checksum.

    Metadata from an earlier embedding is replaced. The checksum is the sha256
    of the returned bytes with its own 64 digits read as zeros
    (`device_runtime.integrity`). TensorFlow's flatbuffer utilities are imported
    here, on first use, so that importing `convert` stays cheap.
    """
    if manifest.file_sha256 != CHECKSUM_PLACEHOLDER:
        raise ValueError("embed_manifest computes the checksum itself; pass a manifest without one")
    import_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    model.metadata = [entry for entry in (model.metadata or []) if _name(entry) not in KIT_METADATA_NAMES]
    payloads = {MANIFEST_METADATA_NAME: manifest.to_json_bytes(), **manifest.vocabulary_bytes()}
    for name, payload in payloads.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    sealed = bytearray(flatbuffer_utils.convert_object_to_bytearray(model))
    position = checksum_position(read_flatbuffer(bytes(sealed), "the converted model"))
    sealed[position : position + CHECKSUM_HEX_DIGITS] = file_checksum(bytes(sealed), position).encode("ascii")
    return bytes(sealed)


def _name(metadata) -> str:
    name = metadata.name
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)

"""Embeds the kit's manifest into a .tflite flatbuffer as named metadata."""

from __future__ import annotations

import numpy as np

from convert.saved_model import import_tensorflow
from device_runtime.manifest import MANIFEST_METADATA_NAME, Manifest


def embed_manifest(tflite_bytes: bytes, manifest: Manifest) -> bytes:
    """Returns a copy of the flatbuffer with `manifest` stored as metadata.

    A manifest already present (from an earlier embedding) is replaced.
    TensorFlow's flatbuffer utilities are imported here, on first use, so that
    importing `convert` stays cheap.
    """
    import_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(manifest.to_json_bytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = MANIFEST_METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m) != MANIFEST_METADATA_NAME]
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _name(metadata) -> str:
    name = metadata.name
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)

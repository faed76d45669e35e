"""Rank candidate movies for a user on a device with a TFLite interpreter.

Needs numpy and one interpreter package (ai-edge-litert or tflite-runtime);
never TensorFlow unless `backend="tensorflow"` is asked for.

    from device_runtime import Ranker
    ranker = Ranker("model.tflite")
    ranker.rank("42", ranker.manifest.movies, k=10)
"""

from device_runtime.backends import Backend
from device_runtime.errors import (
    BackendError,
    DeviceRuntimeError,
    ManifestError,
    ModelLoadError,
    SignatureError,
    UnknownIdError,
)
from device_runtime.ranker import MAX_BATCH, Ranker, RankerInfo

__all__ = [
    "Backend",
    "BackendError",
    "DeviceRuntimeError",
    "MAX_BATCH",
    "ManifestError",
    "ModelLoadError",
    "Ranker",
    "RankerInfo",
    "SignatureError",
    "UnknownIdError",
]

"""Rank movies for a user on a device with a TFLite interpreter.

Needs numpy and one interpreter package (ai-edge-litert or tflite-runtime);
never TensorFlow unless `backend="tensorflow"` is asked for.

    from device_runtime import Ranker
    ranker = Ranker("model.tflite")
    ranker.rank("42", k=10)                                  # the whole catalog, ranked in the graph
    me = ranker.personalize([("Speed (1994)", 5.0)])         # a user the model never saw
    ranker.rank(me, ranker.candidates(["Speed (1994)", "Heat (1995)"]))
"""

from device_runtime.backends import Backend
from device_runtime.errors import (
    ArgumentTypeError,
    BackendError,
    DeviceRuntimeError,
    HistoryError,
    InvalidArgumentError,
    ManifestError,
    ModelLoadError,
    ModelMismatchError,
    SignatureError,
    UnknownIdError,
)
from device_runtime.prepared import CandidateSet, PersonalizedUser
from device_runtime.ranker import MAX_BATCH, Ranker

__all__ = [
    "ArgumentTypeError",
    "Backend",
    "BackendError",
    "CandidateSet",
    "DeviceRuntimeError",
    "HistoryError",
    "InvalidArgumentError",
    "MAX_BATCH",
    "ManifestError",
    "ModelLoadError",
    "ModelMismatchError",
    "PersonalizedUser",
    "Ranker",
    "RankerInfo",
    "SignatureError",
    "UnknownIdError",
]


def __getattr__(name: str):
    # RankerInfo's module is imported on first use: start-up time matters on a device.
    if name == "RankerInfo":
        from device_runtime.info import RankerInfo

        return RankerInfo
    raise AttributeError(f"module 'device_runtime' has no attribute {name!r}")

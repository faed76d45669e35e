"""`RankerInfo`: what a Ranker serves and how (imported on first use, not at start-up)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Optional

import numpy as np

from device_runtime.signature import SignatureMapping


@dataclasses.dataclass(frozen=True)
class RankerInfo:
    """What a Ranker serves and how (see `Ranker.info`).

    Attributes:
        model_path: the model file.
        model_size_bytes: its size.
        checksum: its verified sha256 (`device_runtime.integrity`), or None for a
            file that carries none.
        loaded_at: when it was loaded, ISO 8601 UTC.
        load_ms: how long loading took (read, verify, interpreter, warm-ups).
        signatures: the contract signatures the file answers.
        backend: the interpreter package ("ai_edge_litert", "tflite_runtime", "tensorflow").
        backend_version: that package's version.
        numpy_version: the numpy in use.
        num_threads: the threads asked for; None means the backend's default.
        delegates: "default" (the backend's default delegates, XNNPACK on LiteRT) or "none".
        delegate_fallback: why default delegates were turned off, if they were.
        signature: the strings signature's mapping.
        operators: the model's operators as "NAME vVERSION".
        manifest: the embedded manifest without its vocabularies, or None.
        max_batch: pairs per interpreter invocation.
    """

    model_path: str
    model_size_bytes: int
    checksum: Optional[str]
    loaded_at: str
    load_ms: float
    signatures: tuple[str, ...]
    backend: str
    backend_version: str
    numpy_version: str
    num_threads: Optional[int]
    delegates: str
    delegate_fallback: Optional[str]
    signature: SignatureMapping
    operators: tuple[str, ...]
    manifest: Optional[dict]
    max_batch: int

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["signature"] = self.signature.to_dict()
        data["operators"] = list(self.operators)
        data["signatures"] = list(self.signatures)
        return data


def describe(model) -> RankerInfo:
    """Describes a `LoadedModel` (see `Ranker.info`)."""
    loaded = model.interpreter
    manifest = model.manifest
    return RankerInfo(
        model_path=str(model.path),
        model_size_bytes=len(model.content),
        checksum=model.checksum,
        loaded_at=datetime.datetime.fromtimestamp(model.loaded_at, datetime.timezone.utc).isoformat(
            timespec="milliseconds"
        ),
        load_ms=round(model.load_seconds * 1e3, 3),
        signatures=model.signatures,
        backend=loaded.backend.value,
        backend_version=loaded.version,
        numpy_version=np.__version__,
        num_threads=model.options.num_threads,
        delegates=loaded.delegates.value,
        delegate_fallback=loaded.fallback_reason,
        signature=model.strings_signature,
        operators=model.operators,
        manifest=None if manifest is None else manifest.summary(),
        max_batch=model.max_batch,
    )

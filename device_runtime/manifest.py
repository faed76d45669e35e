"""The manifest the converter embeds in a .tflite, and how the runtime reads it.

The manifest travels inside the flatbuffer as a metadata buffer named
`MANIFEST_METADATA_NAME` holding UTF-8 JSON, so one file is all a device needs.
This module is the only definition of its format: `convert` builds a
`Manifest` and serialises it with `to_json_bytes`; the runtime reads it back
with `read_manifest`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, Optional, Sequence

from device_runtime.errors import ManifestError
from device_runtime.flatbuffer import FlatbufferModel
from device_runtime.signature import SignatureMapping

MANIFEST_METADATA_NAME = "ranking_kit.manifest"
MANIFEST_FORMAT_VERSION = 1


def vocabulary_sha256(ids: Sequence[str]) -> str:
    """Hash of a vocabulary as written to vocab/*.txt: one UTF-8 id per line."""
    digest = hashlib.sha256()
    for item in ids:
        digest.update(item.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Facts about a converted model that the device needs or should show.

    Attributes:
        model_name: a human name, e.g. the training preset.
        created_at: ISO 8601 UTC time of conversion.
        tensorflow_version: the TensorFlow that converted the model.
        quantization: "none", "float16" or "dynamic-int8".
        signature: the contract the file was validated against.
        users: the user vocabulary (known ids), or None if not embedded.
        movies: the movie vocabulary (known titles), or None if not embedded.
        users_sha256 / movies_sha256: hashes of the vocabularies (always present).
        training_metrics: the training run's metrics.json, as written by `train`.
        format_version: the manifest format, `MANIFEST_FORMAT_VERSION`.
    """

    model_name: str
    created_at: str
    tensorflow_version: str
    quantization: str
    signature: SignatureMapping
    users_sha256: str
    movies_sha256: str
    users: Optional[tuple[str, ...]] = None
    movies: Optional[tuple[str, ...]] = None
    training_metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    format_version: int = MANIFEST_FORMAT_VERSION

    def __post_init__(self):
        if self.format_version != MANIFEST_FORMAT_VERSION:
            raise ManifestError(
                f"manifest format {self.format_version} is not supported (this runtime reads "
                f"format {MANIFEST_FORMAT_VERSION}); upgrade the runtime or convert the model again"
            )
        for name, ids, digest in (
            ("users", self.users, self.users_sha256),
            ("movies", self.movies, self.movies_sha256),
        ):
            if ids is not None and vocabulary_sha256(ids) != digest:
                raise ManifestError(f"the manifest's {name} vocabulary does not match its sha256; convert the model again")

    def to_json_bytes(self) -> bytes:
        """Serialises the manifest as UTF-8 JSON."""
        data = dataclasses.asdict(self)
        data["signature"] = self.signature.to_dict()
        for key in ("users", "movies"):
            data[key] = None if data[key] is None else list(data[key])
        data["training_metrics"] = dict(self.training_metrics)
        return json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json_bytes(cls, payload: bytes) -> "Manifest":
        """Parses `to_json_bytes` output; raises ManifestError when malformed."""
        try:
            data = json.loads(payload.rstrip(b"\x00").decode("utf-8"))
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = set(data) - fields
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            data["signature"] = SignatureMapping.from_dict(data["signature"])
            for key in ("users", "movies"):
                if data.get(key) is not None:
                    data[key] = tuple(str(item) for item in data[key])
            return cls(**data)
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise ManifestError(f"the embedded manifest is malformed ({error}); convert the model again") from None

    def summary(self) -> dict:
        """A JSON-ready view without the (long) vocabularies."""
        data = json.loads(self.to_json_bytes())
        data["users"] = None if self.users is None else len(self.users)
        data["movies"] = None if self.movies is None else len(self.movies)
        return data


def read_manifest(model: FlatbufferModel) -> Optional[Manifest]:
    """Returns the embedded manifest, or None for a model without one."""
    payload = model.metadata.get(MANIFEST_METADATA_NAME)
    return None if payload is None else Manifest.from_json_bytes(payload)

"""The manifest the converter embeds in a .tflite, and how the runtime reads it.

The manifest travels inside the flatbuffer as named metadata, so one file is
all a device needs:

- `ranking_kit.manifest`: UTF-8 JSON, small, read at every load. It starts
  with the file's own checksum, `{"file_sha256": "<64 hex digits>", ...`: the
  sha256 of the whole file computed with those 64 digits written as zeros
  (`device_runtime.integrity` checks it before any byte reaches an interpreter).
- `ranking_kit.users` and `ranking_kit.movies`: the vocabularies, one UTF-8 id
  per line in row order (row k + 1 is line k), exactly the bytes of the
  training export's `vocab/*.txt`. They are split into ids only when a call
  first needs them, so loading a model with a large catalog stays fast.

This module is the only definition of the format: `convert` builds a `Manifest`
and `to_json_bytes` / `vocabulary_bytes` serialise it; the runtime reads it back
with `read_manifest`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any, Mapping, Optional, Sequence

from device_runtime import contract
from device_runtime.errors import ManifestError
from device_runtime.flatbuffer import FlatbufferModel
from device_runtime.signature import SignatureMapping

MANIFEST_METADATA_NAME = "ranking_kit.manifest"
USERS_METADATA_NAME = "ranking_kit.users"
MOVIES_METADATA_NAME = "ranking_kit.movies"
MANIFEST_FORMAT_VERSION = 2

CHECKSUM_FIELD = "file_sha256"
CHECKSUM_PREFIX = b'{"' + CHECKSUM_FIELD.encode("ascii") + b'": "'
CHECKSUM_HEX_DIGITS = 64
CHECKSUM_PLACEHOLDER = "0" * CHECKSUM_HEX_DIGITS


def vocabulary_sha256(ids: Sequence[str]) -> str:
    """Hash of a vocabulary as written to vocab/*.txt: one UTF-8 id per line."""
    return hashlib.sha256(_vocabulary_text(ids)).hexdigest()


def _vocabulary_text(ids: Sequence[str]) -> bytes:
    return "".join(f"{item}\n" for item in ids).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Ids in row order (row k + 1 is `ids[k]`), kept as text until first used.

    Attributes:
        text: the UTF-8 ids, one per line, each line ending in a newline.
        count: how many ids.
        sha256: the hash of `text` (`vocabulary_sha256`).
    """

    text: bytes
    count: int
    sha256: str

    @classmethod
    def from_ids(cls, ids: Sequence[str]) -> "Vocabulary":
        """Builds a vocabulary; ManifestError if an id holds a line break (it could not be stored)."""
        for item in ids:
            if "\n" in item or "\r" in item:
                raise ManifestError(f"id {item!r} holds a line break and cannot be stored in a vocabulary")
        text = _vocabulary_text(ids)
        return cls(text=text, count=len(ids), sha256=hashlib.sha256(text).hexdigest())

    @functools.cached_property
    def ids(self) -> tuple[str, ...]:
        """The ids, parsed and checked against `count` and `sha256` on first use."""
        if hashlib.sha256(self.text).hexdigest() != self.sha256:
            raise ManifestError("an embedded vocabulary does not match its sha256; convert the model again")
        try:
            ids = tuple(self.text.decode("utf-8").split("\n")[:-1])
        except UnicodeDecodeError:
            raise ManifestError("an embedded vocabulary is not UTF-8; convert the model again") from None
        if len(ids) != self.count:
            raise ManifestError(f"an embedded vocabulary holds {len(ids)} ids, its manifest says {self.count}")
        return ids

    @functools.cached_property
    def rows(self) -> dict[str, int]:
        """Id -> its table row (1..count); row 0, the OOV row, belongs to no id."""
        return {item: row for row, item in enumerate(self.ids, start=1)}


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Facts about a converted model that the device needs or should show.

    Attributes:
        model_name: a human name, e.g. the training preset.
        created_at: ISO 8601 UTC time of conversion.
        tensorflow_version: the TensorFlow that converted the model.
        quantization: "none", "float16", "dynamic-int8" or "weight-only-int8".
        signature: the strings signature's mapping (its input and output names).
        signatures: the keys of every contract signature the file answers
            (`device_runtime.contract`), in the contract's order.
        state_dimension: the length of a user state (`user_vector`), or None for
            a model without personalized signatures.
        users_sha256 / movies_sha256: hashes of the vocabularies (always present).
        user_count / movie_count: the vocabularies' sizes.
        user_vocabulary / movie_vocabulary: the vocabularies, or None when only
            their hashes were embedded.
        training_metrics: the training run's metrics.json, as written by `train`.
        file_sha256: the checksum of the file (see the module's docstring);
            `CHECKSUM_PLACEHOLDER` until the converter writes it.
        format_version: the manifest format, `MANIFEST_FORMAT_VERSION`.
    """

    model_name: str
    created_at: str
    tensorflow_version: str
    quantization: str
    signature: SignatureMapping
    signatures: tuple[str, ...]
    state_dimension: Optional[int]
    users_sha256: str
    movies_sha256: str
    user_count: int
    movie_count: int
    user_vocabulary: Optional[Vocabulary] = None
    movie_vocabulary: Optional[Vocabulary] = None
    training_metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    file_sha256: str = CHECKSUM_PLACEHOLDER
    format_version: int = MANIFEST_FORMAT_VERSION

    def __post_init__(self):
        if self.format_version != MANIFEST_FORMAT_VERSION:
            raise ManifestError(
                f"manifest format {self.format_version} is not supported (this runtime reads "
                f"format {MANIFEST_FORMAT_VERSION}); convert the model again with this kit"
            )
        unknown = [key for key in self.signatures if key not in contract.SIGNATURES]
        if unknown or contract.STRINGS not in self.signatures:
            raise ManifestError(f"the manifest lists signatures {list(self.signatures)}; convert the model again")
        if not isinstance(self.training_metrics, Mapping):
            raise ManifestError("the manifest's training_metrics is not a JSON object; convert the model again")
        if len(self.file_sha256) != CHECKSUM_HEX_DIGITS or any(c not in "0123456789abcdef" for c in self.file_sha256):
            raise ManifestError("the manifest's file_sha256 is not 64 lowercase hex digits; convert the model again")
        for name, vocabulary, digest, count in (
            ("user", self.user_vocabulary, self.users_sha256, self.user_count),
            ("movie", self.movie_vocabulary, self.movies_sha256, self.movie_count),
        ):
            if vocabulary is not None and (vocabulary.sha256 != digest or vocabulary.count != count):
                raise ManifestError(f"the {name} vocabulary does not match the manifest; convert the model again")
        personalized = [key for key in self.signatures if key in contract.PERSONALIZED_SIGNATURES]
        dimension = self.state_dimension
        if personalized and (isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1):
            raise ManifestError(
                f"the manifest lists the personalized signatures {personalized} but no state_dimension "
                f"(found {dimension!r}); convert the model again"
            )

    @classmethod
    def create(
        cls, *, users: Sequence[str], movies: Sequence[str], embed_vocabularies: bool = True, **fields
    ) -> "Manifest":
        """Builds a manifest for vocabularies given as id lists (the converter's way).

        Args:
            users, movies: the vocabularies in row order.
            embed_vocabularies: store the ids themselves (else only their hashes).
            **fields: every other field of `Manifest`.
        """
        user_vocabulary, movie_vocabulary = Vocabulary.from_ids(users), Vocabulary.from_ids(movies)
        return cls(
            users_sha256=user_vocabulary.sha256,
            movies_sha256=movie_vocabulary.sha256,
            user_count=user_vocabulary.count,
            movie_count=movie_vocabulary.count,
            user_vocabulary=user_vocabulary if embed_vocabularies else None,
            movie_vocabulary=movie_vocabulary if embed_vocabularies else None,
            **fields,
        )

    @property
    def users(self) -> Optional[tuple[str, ...]]:
        """The user ids in row order, or None when not embedded."""
        return None if self.user_vocabulary is None else self.user_vocabulary.ids

    @property
    def movies(self) -> Optional[tuple[str, ...]]:
        """The movie titles in row order, or None when not embedded."""
        return None if self.movie_vocabulary is None else self.movie_vocabulary.ids

    def has(self, signature_key: str) -> bool:
        """True when the file answers that contract signature."""
        return signature_key in self.signatures

    def to_json_bytes(self) -> bytes:
        """Serialises the manifest (without the vocabularies) as UTF-8 JSON, its checksum first."""
        left_out = ("user_vocabulary", "movie_vocabulary", CHECKSUM_FIELD)
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in left_out}
        data["signature"] = self.signature.to_dict()
        data["signatures"] = list(self.signatures)
        data["vocabularies_embedded"] = self.user_vocabulary is not None
        data["training_metrics"] = dict(self.training_metrics)
        rest = json.dumps(data, ensure_ascii=False, sort_keys=True)
        return CHECKSUM_PREFIX + self.file_sha256.encode("ascii") + b'", ' + rest[1:].encode("utf-8")

    def vocabulary_bytes(self) -> dict[str, bytes]:
        """Metadata name -> bytes of each embedded vocabulary."""
        if self.user_vocabulary is None or self.movie_vocabulary is None:
            return {}
        return {USERS_METADATA_NAME: self.user_vocabulary.text, MOVIES_METADATA_NAME: self.movie_vocabulary.text}

    @classmethod
    def from_json_bytes(cls, payload: bytes, vocabularies: Optional[Mapping[str, bytes]] = None) -> "Manifest":
        """Parses `to_json_bytes` output (and the vocabularies' metadata); ManifestError when malformed."""
        try:
            data = json.loads(bytes(payload).rstrip(b"\x00").decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("format_version") != MANIFEST_FORMAT_VERSION:
                raise ManifestError(
                    f"manifest format {data.get('format_version')!r} is not supported (this runtime reads format "
                    f"{MANIFEST_FORMAT_VERSION}); convert the model again with this kit"
                )
            embedded = data.pop("vocabularies_embedded")
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = set(data) - fields
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            data["signature"] = SignatureMapping.from_dict(data["signature"])
            data["signatures"] = tuple(str(key) for key in data["signatures"])
            if embedded:
                for name, field, digest, count in (
                    (USERS_METADATA_NAME, "user_vocabulary", data["users_sha256"], data["user_count"]),
                    (MOVIES_METADATA_NAME, "movie_vocabulary", data["movies_sha256"], data["movie_count"]),
                ):
                    if name not in (vocabularies or {}):
                        raise ValueError(f"the vocabulary {name!r} is missing")
                    data[field] = Vocabulary(text=bytes(vocabularies[name]), count=int(count), sha256=str(digest))
            return cls(**data)
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as error:  # e.g. int(inf), [[[...]]]
            raise ManifestError(f"the embedded manifest is malformed ({error}); convert the model again") from None

    def summary(self) -> dict:
        """A JSON-ready view without the (long) vocabularies."""
        data = json.loads(self.to_json_bytes())
        data["users"] = self.user_count if self.user_vocabulary is not None else None
        data["movies"] = self.movie_count if self.movie_vocabulary is not None else None
        return data


def read_manifest(model: FlatbufferModel) -> Optional[Manifest]:
    """Returns the embedded manifest, or None for a model without one.

    Raises:
        ManifestError: the manifest is there but malformed.
    """
    payload = model.metadata.get(MANIFEST_METADATA_NAME)
    if payload is None:
        return None
    names = (USERS_METADATA_NAME, MOVIES_METADATA_NAME)
    vocabularies = {name: model.metadata[name] for name in names if name in model.metadata}
    return Manifest.from_json_bytes(payload, vocabularies)

"""`Ranker`: scores and ranks candidate movies for a user with one interpreter call.

Everything that can be decided once is decided at load time: the file is read
and parsed once, the signature is resolved by name once, the tensors to feed
are located once, and the interpreter is invoked once before the Ranker is
returned (so a delegate that cannot run the model is noticed there, not at the
first request). A call then validates its ids, and runs one invocation per
`MAX_BATCH` pairs under a lock, re-allocating tensors only when the batch size
changes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from device_runtime.backends import (
    Backend,
    Delegates,
    LoadedInterpreter,
    fallback_message,
    is_delegate_failure,
    open_interpreter,
    parse_backend,
)
from device_runtime.errors import BackendError, ManifestError, ModelLoadError, UnknownIdError, one_line
from device_runtime.flatbuffer import FlatbufferModel, read_flatbuffer
from device_runtime.manifest import Manifest, read_manifest
from device_runtime.signature import SIGNATURE_KEY, SignatureMapping, resolve_signature, signatures_from_interpreter

logger = logging.getLogger(__name__)

# Pairs per interpreter invocation; larger calls are split so memory stays bounded.
MAX_BATCH = 4096
# How many unknown ids an UnknownIdError message lists before "and N more".
MAX_IDS_IN_MESSAGE = 5

Id = Union[str, bytes, int]


@dataclasses.dataclass(frozen=True)
class RankerInfo:
    """What a Ranker runs and how (see `Ranker.info`).

    Attributes:
        model_path: the model file.
        model_size_bytes: its size.
        backend: the interpreter package ("ai_edge_litert", "tflite_runtime", "tensorflow").
        backend_version: that package's version.
        numpy_version: the numpy in use.
        num_threads: the threads asked for; None means the backend's default.
        delegates: "default" (the backend's default delegates, XNNPACK on LiteRT) or "none".
        delegate_fallback: why default delegates were turned off, if they were.
        signature: the resolved signature mapping.
        operators: the model's operators as "NAME vVERSION".
        manifest: the embedded manifest without its vocabularies, or None.
        max_batch: pairs per interpreter invocation.
    """

    model_path: str
    model_size_bytes: int
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
        return data


class Ranker:
    """Scores (user, movie) pairs with a converted ranking model.

    A Ranker may be shared between threads: calls are serialised on one
    interpreter (interpreters are not thread-safe). For parallel throughput,
    give each thread its own Ranker.

    Example:
        ranker = Ranker("model.tflite")
        ranker.rank("42", ranker.manifest.movies, k=10)
    """

    def __init__(
        self,
        model_path: Union[str, os.PathLike],
        num_threads: Optional[int] = None,
        backend: Union[str, Backend] = "auto",
        strict: bool = False,
        user_input: Optional[str] = None,
        item_input: Optional[str] = None,
    ):
        """Loads the model, resolves its signature and runs it once.

        Args:
            model_path: the .tflite file.
            num_threads: interpreter threads (>= 1); None keeps the backend's default.
            backend: "auto", "ai_edge_litert", "tflite_runtime" or "tensorflow".
            strict: raise UnknownIdError for ids outside the model's vocabularies
                instead of scoring them with the out-of-vocabulary row; needs a
                model converted with its manifest.
            user_input: the signature input holding user ids, when it is not
                the manifest's (or the kit's default `user_id`).
            item_input: the signature input holding movie titles, likewise.

        Raises:
            TypeError / ValueError: an argument has the wrong type or value.
            ModelLoadError: the file is missing, unreadable, not a TFLite model,
                truncated, or no installed backend can load it.
            BackendError: the backend is unknown or not installed.
            SignatureError: the model has no (user, item) -> score signature.
            ManifestError: the embedded manifest is malformed, or strict=True
                for a model without vocabularies.
        """
        if num_threads is not None and (
            isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1
        ):
            raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        for name, value in (("user_input", user_input), ("item_input", item_input)):
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a non-empty signature input name or None, got {value!r}")
        self._requested_backend = parse_backend(backend)
        self._path = _as_path(model_path)
        self._num_threads = None if num_threads is None else int(num_threads)
        self._strict = strict
        self._content = _read_model(self._path)
        self._flatbuffer: FlatbufferModel = read_flatbuffer(self._content, source=str(self._path))
        self._manifest: Optional[Manifest] = read_manifest(self._flatbuffer)

        manifest_signature = self._manifest.signature if self._manifest else None
        self._user_name = user_input or (manifest_signature.user_input if manifest_signature else None)
        self._item_name = item_input or (manifest_signature.item_input if manifest_signature else None)
        self._signature_key = manifest_signature.signature_key if manifest_signature else SIGNATURE_KEY

        self._known_users = _vocabulary(self._manifest, "users")
        self._known_movies = _vocabulary(self._manifest, "movies")
        if strict and (self._known_users is None or self._known_movies is None):
            raise ManifestError(
                f"strict=True needs the user and movie vocabularies embedded in the model, and {self._path} "
                "has none; convert it with `python -m convert` or use strict=False"
            )

        self._lock = threading.Lock()
        self._loaded, self._session = self._open(self._requested_backend, Delegates.DEFAULT)
        logger.info(
            "loaded %s with %s %s (delegates: %s)",
            self._path,
            self._loaded.backend.value,
            self._loaded.version,
            self._loaded.delegates.value,
        )

    # ----------------------------------------------------------------- public API

    @property
    def manifest(self) -> Optional[Manifest]:
        """The manifest embedded by the converter, or None."""
        return self._manifest

    @property
    def signature(self) -> SignatureMapping:
        """The resolved signature mapping."""
        return self._session.signature

    @property
    def has_vocabularies(self) -> bool:
        """True when the model carries its user and movie vocabularies."""
        return self._known_users is not None and self._known_movies is not None

    def score(self, user_id: Id, candidates: Sequence[Id]) -> np.ndarray:
        """Scores candidate movies for one user.

        Args:
            user_id: a str, UTF-8 bytes or int (42 and "42" are the same user).
            candidates: a list, tuple or 1-D numpy array of movie titles.
                Duplicates are scored each time.

        Returns:
            float32 array, one score per candidate, in input order.

        Raises:
            TypeError / ValueError: a bad id; the message names its position.
            UnknownIdError: strict mode and an id outside the vocabularies.
            BackendError: the interpreter failed.
        """
        return self._score_user(user_id, candidates)[1]

    def rank(self, user_id: Id, candidates: Sequence[Id], k: Optional[int] = 10) -> list[tuple[str, float]]:
        """Ranks candidate movies for one user, best first.

        Args:
            user_id: as for `score`.
            candidates: as for `score`.
            k: how many to return (the best k); None returns all.

        Returns:
            (movie_title, score) pairs, best first; ties keep input order.

        Raises:
            as `score`; ValueError when k is not a positive integer or None.
        """
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ValueError(f"k must be a positive integer or None, got {k!r}")
        titles, scores = self._score_user(user_id, candidates)
        order = np.argsort(-scores, kind="stable")
        if k is not None:
            order = order[:k]
        return [(titles[i], float(scores[i])) for i in order]

    def score_pairs(self, user_ids: Sequence[Id], movie_titles: Sequence[Id]) -> np.ndarray:
        """Scores aligned (user, movie) pairs.

        Args:
            user_ids: a list, tuple or 1-D array of user ids.
            movie_titles: the same length of movie titles.

        Returns:
            float32 array, one score per pair, in input order.

        Raises:
            TypeError / ValueError: a bad id (named by position) or different lengths.
            UnknownIdError: strict mode and an id outside the vocabularies.
            BackendError: the interpreter failed.
        """
        users = _as_list(user_ids, "user_ids")
        movies = _as_list(movie_titles, "movie_titles")
        if len(users) != len(movies):
            raise ValueError(
                f"user_ids has {len(users)} elements but movie_titles has {len(movies)}; pass one movie per user"
            )
        user_texts, user_data = _encode_all(users, "user_ids")
        for position, text in enumerate(user_texts):
            if not text:
                raise ValueError(f"user_ids[{position}] is empty; pass a user id")
        movie_texts, movie_data = _encode_all(movies, "movie_titles")
        if self._strict:
            self._check_known(user_texts, self._known_users, "user ids", len(users))
            self._check_known(movie_texts, self._known_movies, "movie titles", len(movies))
        return self._run(user_data, movie_data)

    def is_known_user(self, user_id: Id) -> bool:
        """True when the user id is in the model's vocabulary.

        Raises:
            ManifestError: the model carries no vocabularies (convert it with the kit).
        """
        text = _to_text(user_id, "user_id")
        return text in self._require_vocabulary(self._known_users, "user")

    def is_known_movie(self, movie_title: Id) -> bool:
        """True when the movie title is in the model's vocabulary.

        Raises:
            ManifestError: the model carries no vocabularies (convert it with the kit).
        """
        text = _to_text(movie_title, "movie_title")
        return text in self._require_vocabulary(self._known_movies, "movie")

    def info(self) -> RankerInfo:
        """Describes the backend, versions, signature, threads and manifest."""
        loaded = self._loaded
        return RankerInfo(
            model_path=str(self._path),
            model_size_bytes=len(self._content),
            backend=loaded.backend.value,
            backend_version=loaded.version,
            numpy_version=np.__version__,
            num_threads=self._num_threads,
            delegates=loaded.delegates.value,
            delegate_fallback=loaded.fallback_reason,
            signature=self._session.signature,
            operators=tuple(f"{code.name} v{code.version}" for code in self._flatbuffer.operator_codes),
            manifest=None if self._manifest is None else self._manifest.summary(),
            max_batch=MAX_BATCH,
        )

    def __repr__(self) -> str:
        return f"Ranker({str(self._path)!r}, backend={self._loaded.backend.value!r})"

    # ----------------------------------------------------------------- internals

    def _open(self, backend: Backend, delegates: Delegates) -> tuple[LoadedInterpreter, "_Session"]:
        return open_interpreter(
            self._content,
            self._flatbuffer,
            str(self._path),
            self._prepare,
            backend=backend,
            num_threads=self._num_threads,
            delegates=delegates,
        )

    def _prepare(self, interpreter: Any) -> "_Session":
        signature = resolve_signature(
            signatures_from_interpreter(interpreter, self._signature_key),
            user_input=self._user_name,
            item_input=self._item_name,
            signature_key=self._signature_key,
        )
        session = _Session(interpreter, signature)
        blank = np.array([b""], dtype=object)
        session.run(blank, blank)  # a delegate that cannot run the model fails here
        return session

    def _score_user(self, user_id: Id, candidates: Sequence[Id]) -> tuple[Sequence[str], np.ndarray]:
        user_text = _to_text(user_id, "user_id")
        if not user_text:
            raise ValueError("user_id is empty; pass a user id such as '42'")
        movies = _as_list(candidates, "candidates")
        movie_texts, movie_data = _encode_all(movies, "candidates")
        if self._strict:
            self._check_known([user_text], self._known_users, "user ids", 1)
            self._check_known(movie_texts, self._known_movies, "movie titles", len(movies))
        users = np.empty(len(movie_data), dtype=object)
        users.fill(user_text.encode("utf-8"))
        return movie_texts, self._run(users, movie_data)

    def _run(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        count = len(users)
        scores = np.empty(count, dtype=np.float32)
        with self._lock:
            for start in range(0, count, MAX_BATCH):
                stop = min(start + MAX_BATCH, count)
                scores[start:stop] = self._run_chunk(users[start:stop], movies[start:stop])
        return scores

    def _run_chunk(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        try:
            return self._session.run(users, movies)
        except (RuntimeError, ValueError) as error:
            self._session.forget_size()
            reason = one_line(error)
            if self._loaded.delegates is not Delegates.DEFAULT or not is_delegate_failure(error):
                raise self._call_failed(len(users), reason) from None
        # A delegate that prepared at load time refused this batch size: replace
        # the interpreter by one without default delegates, for good.
        self._loaded, self._session = self._open(self._loaded.backend, Delegates.NONE)
        self._loaded = dataclasses.replace(self._loaded, fallback_reason=reason)
        logger.warning(fallback_message(str(self._path), reason))
        try:
            return self._session.run(users, movies)
        except (RuntimeError, ValueError) as error:
            self._session.forget_size()
            raise self._call_failed(len(users), one_line(error)) from None

    def _call_failed(self, count: int, reason: str) -> BackendError:
        return BackendError(
            f"{self._loaded.backend.value} {self._loaded.version} failed to score {count} pairs "
            f"with {self._path}: {reason}"
        )

    def _check_known(self, texts: Sequence[str], known: frozenset, what: str, total: int) -> None:
        unknown = [text for text in texts if text not in known]
        if unknown:
            shown = ", ".join(repr(text) for text in unknown[:MAX_IDS_IN_MESSAGE])
            more = f" and {len(unknown) - MAX_IDS_IN_MESSAGE} more" if len(unknown) > MAX_IDS_IN_MESSAGE else ""
            raise UnknownIdError(
                f"unknown {what} ({len(unknown)} of {total}): {shown}{more}; the model would score them with its "
                "out-of-vocabulary row, so strict mode refuses; pass known ids or use strict=False"
            )

    def _require_vocabulary(self, known: Optional[frozenset], what: str) -> frozenset:
        if known is None:
            raise ManifestError(
                f"{self._path} carries no {what} vocabulary, so the runtime cannot tell known ids from unknown "
                "ones; convert the model with `python -m convert` to embed it"
            )
        return known


class _Session:
    """One prepared interpreter: where to feed the pairs and the allocated batch size."""

    def __init__(self, interpreter: Any, signature: SignatureMapping):
        self.interpreter = interpreter
        self.signature = signature
        runner = interpreter.get_signature_runner(signature.signature_key)
        inputs = runner.get_input_details()
        outputs = runner.get_output_details()
        self._user_index = int(inputs[signature.user_input]["index"])
        self._item_index = int(inputs[signature.item_input]["index"])
        self._output_index = int(outputs[signature.output]["index"])
        # The interpreter's own input/output calls address the first subgraph; use
        # them (no per-call resize and allocate) when that subgraph is this
        # signature, and the signature runner otherwise.
        self._direct = _is_first_subgraph(interpreter, inputs, outputs)
        self._runner = None if self._direct else runner
        self._size = -1

    def forget_size(self) -> None:
        """Forces a resize and allocation at the next run (after a failure)."""
        self._size = -1

    def run(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        count = len(users)
        if self._direct:
            interpreter = self.interpreter
            if count != self._size:
                self._size = -1
                interpreter.resize_tensor_input(self._user_index, [count])
                interpreter.resize_tensor_input(self._item_index, [count])
                interpreter.allocate_tensors()
                self._size = count
            interpreter.set_tensor(self._user_index, users)
            interpreter.set_tensor(self._item_index, movies)
            interpreter.invoke()
            scores = interpreter.get_tensor(self._output_index)
        else:
            signature = self.signature
            result = self._runner(**{signature.user_input: users, signature.item_input: movies})
            scores = result[signature.output]
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if scores.shape[0] != count:
            raise BackendError(f"the model returned {scores.shape[0]} scores for {count} pairs")
        return scores


# --------------------------------------------------------------------- helpers


def _is_first_subgraph(interpreter: Any, inputs: dict, outputs: dict) -> bool:
    """True when the signature's tensors are exactly the first subgraph's inputs and outputs."""

    def tensors(details) -> set:
        return {(int(d["index"]), d["name"]) for d in details}

    return tensors(interpreter.get_input_details()) == tensors(inputs.values()) and tensors(
        interpreter.get_output_details()
    ) == tensors(outputs.values())


def _as_path(model_path) -> Path:
    try:
        return Path(os.fspath(model_path))
    except TypeError:
        raise TypeError(f"model_path must be a path to a .tflite file, got {type(model_path).__name__}") from None


def _read_model(path: Path) -> bytes:
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist; pass the .tflite written by `python -m convert`")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder, not a model file; pass the .tflite file inside it")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"cannot read {path}: {error.strerror or error}") from None


def _vocabulary(manifest: Optional[Manifest], name: str) -> Optional[frozenset]:
    ids = None if manifest is None else getattr(manifest, name)
    return None if ids is None else frozenset(ids)


def _as_list(values, what: str) -> Sequence:
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"{what} must be a list, tuple or 1-D numpy array of ids, got a single {type(values).__name__}; "
            "wrap it in a list"
        )
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got an array of shape {values.shape}")
        return values.tolist()
    if isinstance(values, (list, tuple)):
        return values
    if isinstance(values, Sequence):
        return list(values)
    raise TypeError(f"{what} must be a list, tuple or 1-D numpy array of ids, got {type(values).__name__}")


def _encode_all(values: Sequence, what: str) -> tuple[Sequence[str], np.ndarray]:
    """Returns the ids as text and as a numpy object array of UTF-8 bytes."""
    try:
        data = [value.encode("utf-8") for value in values]  # the common case: all str
        texts = values
    except (AttributeError, TypeError, UnicodeEncodeError):
        texts = [_to_text(value, f"{what}[{position}]") for position, value in enumerate(values)]
        data = [text.encode("utf-8") for text in texts]
    array = np.empty(len(data), dtype=object)
    array[:] = data
    return texts, array


def _to_text(value, what: str) -> str:
    """Validates one id and returns it as text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{what} is not valid Unicode text ({error.reason}); pass a proper string") from None
        return str(value)
    if isinstance(value, bytes):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} is bytes that are not UTF-8; pass text or UTF-8 bytes") from None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be a str, bytes or int, got bool {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        raise TypeError(f"{what} must be a str, bytes or int, got float {value!r}; ids are text, e.g. '42'")
    if isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{what} must be a str, bytes or int, got a nested {type(value).__name__}; pass a flat list")
    raise TypeError(f"{what} must be a str, bytes or int, got {type(value).__name__}")

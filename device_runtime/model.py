"""One loaded model: a verified file, its interpreter, and every signature the runtime calls.

A `LoadedModel` is what a `Ranker` serves from, and what `Ranker.reload` swaps
whole. Everything that can be decided once is decided when it is built:

1. the file is read once and its own checksum verified before any byte reaches
   an interpreter (`device_runtime.integrity`);
2. the manifest is parsed (its vocabularies stay unparsed text until a call
   needs them, unless a reload asks to check them at once);
3. the interpreter is created, each signature the runtime uses is resolved by
   name, checked against `device_runtime.contract` and invoked once, so a
   delegate that cannot run the model fails here, not at the first request.

Its identity (path, checksum, manifest, signatures) never changes. Its
interpreter is not thread-safe, so every call runs under the model's own lock;
when a delegate refuses a later batch size the interpreter is replaced, under
that lock, by one without default delegates (see `backends`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import numpy as np

from device_runtime import contract
from device_runtime._log import Logger
from device_runtime.backends import Backend, Delegates, LoadedInterpreter, fallback_message, is_delegate_failure
from device_runtime.backends import open_interpreter
from device_runtime.errors import ArgumentTypeError, BackendError, ManifestError, ModelLoadError, SignatureError, one_line
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.integrity import GOOD_FILE_HINT, verify
from device_runtime.manifest import Manifest, Vocabulary, read_manifest
from device_runtime.prepared import CandidateSet, read_only
from device_runtime.signature import (
    SIGNATURE_KEY,
    SignatureMapping,
    check_contract_signature,
    resolve_signature,
    signatures_from_interpreter,
)

logger = Logger(__name__)

T = TypeVar("T")

# Pairs (or rows) per interpreter invocation; larger calls are split so memory stays bounded.
MAX_BATCH = 4096
# The contract signatures the runtime calls, when the model has them (score_history is
# for apps in other languages; the runtime folds a history once with user_state instead).
USED_SIGNATURES = (
    contract.SCORE_ROWS,
    contract.TOP_K,
    contract.USER_STATE,
    contract.SCORE_ROWS_FOR_STATE,
    contract.TOP_K_FOR_STATE,
)


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: fewer generated methods to compile at start-up
class LoadOptions:
    """How a Ranker loads every model it serves (checked by the Ranker)."""

    backend: Backend
    num_threads: Optional[int]
    strict: bool
    user_input: Optional[str]
    item_input: Optional[str]
    require_checksum: bool


class LoadedModel:
    """A model file verified, loaded and warmed up; see the module's docstring.

    Attributes:
        path: the model file.
        content: its bytes (the interpreter reads them in place).
        checksum: the verified file checksum, or None for a file without one.
        manifest: the embedded manifest, or None.
        signatures: the contract signature keys the file answers (the strings one first).
        serves_rows: True when candidates are scored as rows (index signatures and vocabularies).
        loaded_at: when loading finished (seconds since the epoch).
        load_seconds: how long loading took, from reading the file to the last warm-up.
        lock: serialises every use of the interpreter.
    """

    def __init__(self, path: Path, options: LoadOptions, check_vocabularies: bool = False):
        """Loads and checks the model.

        Args:
            path: the .tflite file.
            options: the Ranker's loading options.
            check_vocabularies: parse and check the embedded vocabularies now
                (a reload does, so a damaged one fails before the swap).

        Raises:
            ModelLoadError: the file is missing, unreadable, corrupt, modified, carries
                no checksum while one is required, or no backend can run it.
            BackendError: a forced backend is not installed.
            SignatureError: the strings signature cannot be mapped, or a signature
                the manifest lists is missing or differs from the contract.
            ManifestError: the manifest is malformed, a vocabulary is damaged, or
                strict mode without vocabularies.
        """
        began = time.perf_counter()
        self.path = path
        self.options = options
        self.content = _read_model(path)
        self._flatbuffer = read_flatbuffer(self.content, source=str(path))
        self.checksum = verify(self.content, self._flatbuffer, str(path)).checksum
        if self.checksum is None:
            if options.require_checksum:
                raise ModelLoadError(
                    f"{path} carries no checksum (it was not converted by this kit), and require_checksum=True "
                    "refuses such files; convert it with `python -m convert`"
                )
            logger.warning(
                "%s carries no checksum (it was not converted by this kit), so the runtime cannot tell a damaged "
                "copy from a good one; convert it with `python -m convert` to get one",
                path,
            )
        self.manifest: Optional[Manifest] = read_manifest(self._flatbuffer)
        manifest = self.manifest
        self.signatures: tuple[str, ...] = manifest.signatures if manifest else (contract.STRINGS,)
        self._users = manifest.user_vocabulary if manifest else None
        self._movies = manifest.movie_vocabulary if manifest else None
        if options.strict and not self.has_vocabularies:
            raise ManifestError(
                f"strict=True needs the user and movie vocabularies embedded in the model, and {path} "
                "has none; convert it with `python -m convert` or use strict=False"
            )
        if check_vocabularies and manifest is not None:
            for vocabulary in (manifest.user_vocabulary, manifest.movie_vocabulary):
                if vocabulary is not None:
                    vocabulary.rows  # parses, checks the hash and the count
        # Candidates are scored as rows when the model has the index signatures and its vocabularies.
        self.serves_rows = self.has(contract.SCORE_ROWS, contract.TOP_K) and self.has_vocabularies
        self.lock = threading.Lock()
        self._row = np.zeros(1, dtype=np.int32)  # prepared one-element inputs, used under the lock
        self._k = np.zeros(1, dtype=np.int32)
        self._loaded, self._prepared = self._open(options.backend, Delegates.DEFAULT)
        self.loaded_at = time.time()
        self.load_seconds = time.perf_counter() - began
        logger.info(
            "loaded %s (checksum %s) with %s %s (delegates: %s) in %.1f ms",
            path,
            self.checksum or "none",
            self._loaded.backend.value,
            self._loaded.version,
            self._loaded.delegates.value,
            self.load_seconds * 1e3,
        )

    # ----------------------------------------------------------------- what it is

    @property
    def interpreter(self) -> LoadedInterpreter:
        """The interpreter package and delegates in use."""
        return self._loaded

    @property
    def strings_signature(self) -> SignatureMapping:
        """The resolved strings signature."""
        return self._prepared.strings.signature

    @property
    def operators(self) -> tuple[str, ...]:
        """The model's operators as "NAME vVERSION"."""
        return tuple(f"{code.name} v{code.version}" for code in self._flatbuffer.operator_codes)

    @property
    def max_batch(self) -> int:
        """Pairs (or rows) per interpreter invocation."""
        return MAX_BATCH

    def has(self, *keys: str) -> bool:
        """True when the file answers every one of these contract signatures."""
        return all(key in self.signatures for key in keys)

    @property
    def has_vocabularies(self) -> bool:
        """True when the model carries its user and movie vocabularies."""
        return self._users is not None and self._movies is not None

    def user_vocabulary(self) -> Vocabulary:
        """The embedded user vocabulary; ManifestError when the model carries none."""
        return self._users or self._no_vocabulary("user")

    def movie_vocabulary(self) -> Vocabulary:
        """The embedded movie vocabulary; ManifestError when the model carries none."""
        return self._movies or self._no_vocabulary("movie")

    def _no_vocabulary(self, what: str):
        raise ManifestError(
            f"{self.path} carries no {what} vocabulary, so the runtime cannot tell known ids from unknown "
            "ones; convert the model with `python -m convert` to embed it"
        )

    @functools.cached_property
    def catalog(self) -> CandidateSet:
        """Every movie of the vocabulary, in row order, as one candidate set (for models without top_k)."""
        vocabulary = self.movie_vocabulary()
        rows = read_only(np.arange(1, vocabulary.count + 1, dtype=np.int32))
        return CandidateSet(vocabulary.ids, (), vocabulary.sha256, rows)

    # ----------------------------------------------------------------- calls (each under the lock)

    def score_strings(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """Scores aligned (user, movie) string pairs through the strings signature."""
        return self._chunked(len(users), lambda p, a, b: p.strings.run(users[a:b], movies[a:b]))

    def score_rows(self, user_row: int, rows: np.ndarray) -> np.ndarray:
        """Scores movie rows for one user row (`score_rows`)."""

        def run(prepared, start, stop):
            self._row[0] = user_row
            result = prepared.runners[contract.SCORE_ROWS](user_row=self._row, item_rows=rows[start:stop])
            return result[contract.RATING]

        return self._chunked(len(rows), run)

    def score_rows_for_state(self, vector: np.ndarray, bias: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scores movie rows for a user state (`score_rows_for_state`)."""

        def run(prepared, start, stop):
            runner = prepared.runners[contract.SCORE_ROWS_FOR_STATE]
            return runner(user_vector=vector, user_bias=bias, item_rows=rows[start:stop])[contract.RATING]

        return self._chunked(len(rows), run)

    def top_k(self, user_row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best catalog rows for a user row and their scores, best first (`top_k`)."""

        def run(prepared):
            self._row[0] = user_row
            self._k[0] = k
            result = prepared.runners[contract.TOP_K](user_row=self._row, k=self._k)
            return result[contract.ITEM_ROWS], result[contract.RATING]

        with self.lock:
            return self._run(run, "rank the top {} movies", k)

    def top_k_for_state(self, vector: np.ndarray, bias: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best catalog rows for a user state and their scores, best first (`top_k_for_state`)."""

        def run(prepared):
            self._k[0] = k
            result = prepared.runners[contract.TOP_K_FOR_STATE](user_vector=vector, user_bias=bias, k=self._k)
            return result[contract.ITEM_ROWS], result[contract.RATING]

        with self.lock:
            return self._run(run, "rank the top {} movies", k)

    def user_state(self, titles: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Folds a history (UTF-8 titles, float32 ratings) into a user state (`user_state`)."""

        def run(prepared):
            result = prepared.runners[contract.USER_STATE](history_titles=titles, history_ratings=ratings)
            vector = np.asarray(result[contract.USER_VECTOR], dtype=np.float32).reshape(-1)
            bias = np.asarray(result[contract.USER_BIAS], dtype=np.float32).reshape(-1)
            return vector, bias

        with self.lock:
            return self._run(run, "fold a history of {} ratings", len(titles))

    # ----------------------------------------------------------------- internals

    def _chunked(self, count: int, run: Callable[[Any, int, int], np.ndarray]) -> np.ndarray:
        scores = np.empty(count, dtype=np.float32)
        with self.lock:
            for start in range(0, count, MAX_BATCH):
                stop = min(start + MAX_BATCH, count)
                chunk = self._run(lambda prepared: run(prepared, start, stop), "score {} pairs", stop - start)
                chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
                if chunk.shape[0] != stop - start:
                    raise BackendError(f"the model returned {chunk.shape[0]} scores for {stop - start} pairs")
                scores[start:stop] = chunk
        return scores

    def _run(self, call: Callable[["_Prepared"], T], what: str, count: int) -> T:
        """Runs `call` on the prepared interpreter (lock held), falling back once from a failing delegate.

        `what.format(count)` names the call in an error message (formatted only on failure).
        """
        try:
            return call(self._prepared)
        except (RuntimeError, ValueError) as error:
            self._prepared.strings.forget_size()
            reason = one_line(error)
            if self._loaded.delegates is not Delegates.DEFAULT or not is_delegate_failure(error):
                raise self._call_failed(what.format(count), reason) from None
        # A delegate that prepared at load time refused this call: replace the
        # interpreter by one without default delegates, for good.
        self._loaded, self._prepared = self._open(self._loaded.backend, Delegates.NONE)
        self._loaded = dataclasses.replace(self._loaded, fallback_reason=reason)
        logger.warning(fallback_message(str(self.path), reason))
        try:
            return call(self._prepared)
        except (RuntimeError, ValueError) as error:
            self._prepared.strings.forget_size()
            raise self._call_failed(what.format(count), one_line(error)) from None

    def _call_failed(self, what: str, reason: str) -> BackendError:
        loaded = self._loaded
        return BackendError(f"{loaded.backend.value} {loaded.version} failed to {what} with {self.path}: {reason}")

    def _open(self, backend: Backend, delegates: Delegates) -> tuple[LoadedInterpreter, "_Prepared"]:
        return open_interpreter(
            self.content,
            self._flatbuffer,
            str(self.path),
            self._prepare,
            backend=backend,
            num_threads=self.options.num_threads,
            delegates=delegates,
        )

    def _prepare(self, interpreter: Any) -> "_Prepared":
        manifest_signature = self.manifest.signature if self.manifest else None
        key = manifest_signature.signature_key if manifest_signature else SIGNATURE_KEY
        strings = resolve_signature(
            signatures_from_interpreter(interpreter, key),
            user_input=self.options.user_input or (manifest_signature.user_input if manifest_signature else None),
            item_input=self.options.item_input or (manifest_signature.item_input if manifest_signature else None),
            signature_key=key,
        )
        available = set(interpreter.get_signature_list())
        missing = [k for k in self.signatures if k != contract.STRINGS and k not in available]
        if missing:
            raise SignatureError(
                f"{self.path}: its manifest lists the signatures {missing}, which the file lacks; "
                f"the file is not the one the manifest describes; {GOOD_FILE_HINT}"
            )
        state_dimension = self.manifest.state_dimension if self.manifest else None
        runners = {}
        for signature in self.signatures:
            if signature == contract.STRINGS:
                continue
            runner = interpreter.get_signature_runner(signature)
            check_contract_signature(signature, runner, state_dimension, str(self.path))
            if signature in USED_SIGNATURES:
                runners[signature] = runner
        prepared = _Prepared(_StringsSession(interpreter, strings), runners)
        prepared.warm_up(state_dimension)  # a delegate that cannot run the model fails here
        return prepared


class _Prepared:
    """One interpreter's prepared calls: the strings session and the contract signatures' runners."""

    def __init__(self, strings: "_StringsSession", runners: dict):
        self.strings = strings
        self.runners = runners

    def warm_up(self, state_dimension: Optional[int]) -> None:
        """Invokes every signature once, with inputs that need no vocabulary."""
        blank = np.array([b""], dtype=object)
        self.strings.run(blank, blank)
        row, one = np.zeros(1, dtype=np.int32), np.ones(1, dtype=np.int32)
        inputs = {contract.SCORE_ROWS: {"user_row": row, "item_rows": row}, contract.TOP_K: {"user_row": row, "k": one}}
        if state_dimension is not None:
            vector, bias = np.zeros(state_dimension, dtype=np.float32), np.zeros(1, dtype=np.float32)
            inputs[contract.USER_STATE] = {
                "history_titles": blank,
                "history_ratings": np.full(1, contract.MAX_RATING, dtype=np.float32),
            }
            inputs[contract.SCORE_ROWS_FOR_STATE] = {"user_vector": vector, "user_bias": bias, "item_rows": row}
            inputs[contract.TOP_K_FOR_STATE] = {"user_vector": vector, "user_bias": bias, "k": one}
        for key, runner in self.runners.items():
            runner(**inputs[key])


class _StringsSession:
    """The strings signature: where to feed the pairs and the allocated batch size."""

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
        if not self._direct:
            signature = self.signature
            return self._runner(**{signature.user_input: users, signature.item_input: movies})[signature.output]
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
        return interpreter.get_tensor(self._output_index)


def _is_first_subgraph(interpreter: Any, inputs: dict, outputs: dict) -> bool:
    """True when the signature's tensors are exactly the first subgraph's inputs and outputs."""

    def tensors(details) -> set:
        return {(int(d["index"]), d["name"]) for d in details}

    return tensors(interpreter.get_input_details()) == tensors(inputs.values()) and tensors(
        interpreter.get_output_details()
    ) == tensors(outputs.values())


def _read_model(path: Path) -> bytes:
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist; pass the .tflite written by `python -m convert`")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder, not a model file; pass the .tflite file inside it")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"cannot read {path}: {error.strerror or error}") from None


def as_path(model_path) -> Path:
    """A model path argument as a Path; TypeError for anything that is not a path."""
    try:
        return Path(os.fspath(model_path))
    except TypeError:
        raise ArgumentTypeError(f"model_path must be a path to a .tflite file, got {type(model_path).__name__}") from None

"""The things timed: one loaded model, ready to rank a fixed candidate list per call.

Each loader builds its own interpreter (never shared between configurations,
so every one keeps its tensors allocated for its own batch size) and returns a
`Subject`: `run()` is the timed call, `scores()` returns the candidates' scores
for the harness's self-check.

- rank, rank_prepared, rank_strings, rank_catalog, personalize_rank,
  rank_personalized: the public `device_runtime.Ranker`.
- invoke / invoke_top_k / loop / signature_loop: a plain interpreter opened through
  `device_runtime.backends.open_interpreter` with the backend and delegate
  choice the Ranker made, called once for all candidates (invoke) or once per
  candidate as the original tutorial does (loop, signature_loop).
- saved_model: TensorFlow, imported only here and only when asked.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from benchmarks.config import HISTORY_LENGTH, PERSONALIZED_METHODS, TOP_K, Method
from benchmarks.errors import BenchmarkError
from device_runtime import Ranker, contract
from device_runtime.backends import Backend, Delegates, open_interpreter
from device_runtime.errors import one_line
from device_runtime.ranker import best_first
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.signature import (
    ITEM_INPUT,
    SIGNATURE_KEY,
    USER_INPUT,
    SignatureMapping,
    resolve_signature,
    signatures_from_interpreter,
)

SAVED_MODEL_BACKEND = "tensorflow"


class Subject(Protocol):
    def run(self) -> None:
        """One timed call: score (and for rank, sort) every candidate."""

    def scores(self) -> np.ndarray:
        """The candidates' scores in input order (not timed)."""


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A subject with what loading it took and what runs it.

    Attributes:
        subject: the loaded subject.
        init_ns: wall time of loading (file read, interpreter creation, tensor
            allocation and the runtime's own preparation).
        backend / backend_version: the package that runs it.
        delegate: "default" (XNNPACK on LiteRT) or "none"; None for TensorFlow.
        delegate_fallback: why default delegates were turned off, if they were.
        threads: the threads really in force (None: the backend's default).
    """

    subject: Subject
    init_ns: int
    backend: str
    backend_version: str
    delegate: Optional[str]
    delegate_fallback: Optional[str]
    threads: Optional[int]


def _as_object_array(values: Sequence[str]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = [value.encode("utf-8") for value in values]
    return array


class _RankerSubject:
    """A Ranker call with its inputs prepared before timing (see `Method` for what each method calls)."""

    def __init__(
        self, ranker: Ranker, method: Method, user: str, candidates: Sequence[str], history: Sequence[tuple[str, float]]
    ):
        self._ranker = ranker
        self._method = method
        self._user = user
        self._candidates = list(candidates)
        self._history = list(history)
        self._users = [user] * len(self._candidates)
        self._prepared = ranker.candidates(self._candidates) if method is Method.RANK_PREPARED else None
        self._me = ranker.personalize(self._history) if method is Method.RANK_PERSONALIZED else None
        self.run = getattr(self, f"_{method.value}")  # the timed call, looked up once

    def _rank(self) -> None:
        self._ranker.rank(self._user, self._candidates, k=TOP_K)

    def _rank_prepared(self) -> None:
        self._ranker.rank(self._user, self._prepared, k=TOP_K)

    def _rank_strings(self) -> list:
        scores = self._ranker.score_pairs(self._users, self._candidates)
        return [(self._candidates[i], float(scores[i])) for i in best_first(scores, TOP_K).tolist()]

    def _rank_catalog(self) -> None:
        self._ranker.rank(self._user, k=TOP_K)

    def _personalize_rank(self) -> None:
        self._ranker.rank(self._ranker.personalize(self._history), k=TOP_K)

    def _rank_personalized(self) -> None:
        self._ranker.rank(self._me, k=TOP_K)

    def scores(self) -> np.ndarray:
        """The candidates' scores in input order: for the whole-catalog methods, every title's."""
        ranker, method = self._ranker, self._method
        if method in (Method.RANK_CATALOG, Method.PERSONALIZE_RANK, Method.RANK_PERSONALIZED):
            user = ranker.personalize(self._history) if method in PERSONALIZED_METHODS else self._user
            by_title = dict(ranker.rank(user, k=None))
            return np.array([by_title[title] for title in self._candidates], dtype=np.float32)
        if method is Method.RANK_STRINGS:
            return ranker.score_pairs(self._users, self._candidates)
        return ranker.score(self._user, self._prepared if self._prepared is not None else self._candidates)


def load_ranker(
    method: Method,
    model: Path,
    backend: str,
    threads: int,
    user: str,
    candidates: Sequence[str],
    history: Sequence[tuple[str, float]] = (),
    user_input: Optional[str] = None,
    item_input: Optional[str] = None,
) -> Loaded:
    """Loads a Ranker for one of the Ranker methods (`Method`); inputs are prepared before timing.

    Args:
        method: RANK, RANK_PREPARED, RANK_STRINGS, RANK_CATALOG, PERSONALIZE_RANK or RANK_PERSONALIZED.
        model / backend / threads: what to load and how.
        user: the user id ranked for (all but the personalized methods).
        candidates: the titles (for the whole-catalog methods: every title of the vocabulary, in row order).
        history: the (title, rating) pairs the personalized methods fold in.
        user_input / item_input: the strings signature's input names, for models without a manifest.

    Raises:
        DeviceRuntimeError: the Ranker cannot load the model with this backend, or cannot call it this way.
    """
    start = time.perf_counter_ns()
    ranker = Ranker(model, num_threads=threads, backend=backend, user_input=user_input, item_input=item_input)
    init_ns = time.perf_counter_ns() - start
    info = ranker.info()
    return Loaded(
        subject=_RankerSubject(ranker, method, user, candidates, history),
        init_ns=init_ns,
        backend=info.backend,
        backend_version=info.backend_version,
        delegate=info.delegates,
        delegate_fallback=info.delegate_fallback,
        threads=info.num_threads,
    )


def benchmark_history(titles: Sequence[str], length: int = HISTORY_LENGTH) -> tuple[tuple[str, float], ...]:
    """The history the personalized methods fold in: `length` titles spread evenly over `titles`.

    The ratings go 1, 2, 3, 4, 5, 1, 2, ... in that order, so the history is
    the same for a model on any machine.
    """
    count = min(length, len(titles))
    positions = np.unique(np.linspace(0, len(titles) - 1, count).round().astype(int)) if count else []
    return tuple((titles[position], float(1 + index % 5)) for index, position in enumerate(positions))


@dataclasses.dataclass(frozen=True)
class _Tensors:
    """Where one prepared interpreter takes its inputs and gives its output."""

    signature: SignatureMapping
    user_index: int
    item_index: int
    output_index: int
    runner: Any = None  # the signature's runner when it is not the first subgraph (set_tensor cannot reach it)


def _tensor_set(details) -> set:
    return {(int(detail["index"]), detail["name"]) for detail in details}


class _InvokeSubject:
    """One invocation for all candidates on the bare interpreter, inputs encoded beforehand.

    When the strings signature is not the model's first subgraph (a kit model
    with several signatures), `set_tensor` cannot reach its tensors, and its
    SignatureRunner is called instead (which resizes only when the size changes).
    """

    def __init__(self, interpreter: Any, tensors: _Tensors, user: str, candidates: Sequence[str]):
        self._interpreter = interpreter
        self._tensors = tensors
        self._users = _as_object_array([user] * len(candidates))
        self._items = _as_object_array(candidates)
        self._scores = np.empty(len(candidates), dtype=np.float32)

    def run(self) -> None:
        interpreter, tensors = self._interpreter, self._tensors
        if tensors.runner is not None:
            signature = tensors.signature
            result = tensors.runner(**{signature.user_input: self._users, signature.item_input: self._items})
            self._scores[:] = result[signature.output].reshape(-1)
            return
        interpreter.set_tensor(tensors.user_index, self._users)
        interpreter.set_tensor(tensors.item_index, self._items)
        interpreter.invoke()
        self._scores[:] = interpreter.get_tensor(tensors.output_index).reshape(-1)

    def scores(self) -> np.ndarray:
        self.run()
        return self._scores.copy()


class _TutorialLoopSubject:
    """One invocation per candidate: set_tensor by tensor index, invoke, get_tensor.

    The tensors are resized to one pair and allocated once; the per-candidate
    input arrays are built before timing, so the loop times only what the
    interpreter API costs per call.
    """

    def __init__(self, interpreter: Any, tensors: _Tensors, user: str, candidates: Sequence[str]):
        self._interpreter = interpreter
        self._tensors = tensors
        self._user = _as_object_array([user])
        self._items = [_as_object_array([title]) for title in candidates]
        self._scores = np.empty(len(candidates), dtype=np.float32)

    def run(self) -> None:
        interpreter, tensors, user, scores = self._interpreter, self._tensors, self._user, self._scores
        for position, item in enumerate(self._items):
            interpreter.set_tensor(tensors.user_index, user)
            interpreter.set_tensor(tensors.item_index, item)
            interpreter.invoke()
            scores[position] = interpreter.get_tensor(tensors.output_index).item(0)

    def scores(self) -> np.ndarray:
        self.run()
        return self._scores.copy()


class _SignatureLoopSubject:
    """One `SignatureRunner` call per candidate, inputs passed by name."""

    def __init__(self, interpreter: Any, signature: SignatureMapping, user: str, candidates: Sequence[str]):
        self._interpreter = interpreter  # the runner needs it alive
        self._runner = interpreter.get_signature_runner(signature.signature_key)
        self._signature = signature
        self._user = _as_object_array([user])
        self._items = [_as_object_array([title]) for title in candidates]
        self._scores = np.empty(len(candidates), dtype=np.float32)

    def run(self) -> None:
        runner, user, scores = self._runner, self._user, self._scores
        user_name, item_name, output_name = (
            self._signature.user_input,
            self._signature.item_input,
            self._signature.output,
        )
        for position, item in enumerate(self._items):
            scores[position] = runner(**{user_name: user, item_name: item})[output_name].item(0)

    def scores(self) -> np.ndarray:
        self.run()
        return self._scores.copy()


class _TopKSubject:
    """The `top_k` signature runner called for one user row, k=TOP_K (the floor under `rank(user)`)."""

    def __init__(self, interpreter: Any, user_row: int, catalog: int):
        self._interpreter = interpreter  # the runner needs it alive
        self._runner = interpreter.get_signature_runner(contract.TOP_K)
        self._row = np.array([user_row], dtype=np.int32)
        self._k = np.array([TOP_K], dtype=np.int32)
        self._catalog = catalog

    def run(self) -> None:
        self._runner(user_row=self._row, k=self._k)

    def scores(self) -> np.ndarray:
        """Every catalog movie's score in row order (the whole catalog asked for)."""
        result = self._runner(user_row=self._row, k=np.array([self._catalog], dtype=np.int32))
        scores = np.empty(self._catalog, dtype=np.float32)
        scores[np.asarray(result[contract.ITEM_ROWS]) - 1] = result[contract.RATING]
        return scores


def _prepare_top_k(interpreter: Any) -> None:
    """The `prepare` callback for open_interpreter: one top_k call (a delegate that cannot run it fails here)."""
    interpreter.get_signature_runner(contract.TOP_K)(
        user_row=np.zeros(1, dtype=np.int32), k=np.ones(1, dtype=np.int32)
    )


def _prepare_batch(signature_key: str, user_input: Optional[str], item_input: Optional[str], size: int):
    """Returns the `prepare` callback for open_interpreter: `size` pairs, allocated, invoked once."""

    def prepare(interpreter: Any) -> _Tensors:
        signature = resolve_signature(
            signatures_from_interpreter(interpreter, signature_key),
            user_input=user_input,
            item_input=item_input,
            signature_key=signature_key,
        )
        runner = interpreter.get_signature_runner(signature_key)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        first = _tensor_set(interpreter.get_input_details()) == _tensor_set(inputs.values()) and _tensor_set(
            interpreter.get_output_details()
        ) == _tensor_set(outputs.values())
        tensors = _Tensors(
            signature=signature,
            user_index=int(inputs[signature.user_input]["index"]),
            item_index=int(inputs[signature.item_input]["index"]),
            output_index=int(outputs[signature.output]["index"]),
            runner=None if first else runner,
        )
        blank = np.array([b""] * size, dtype=object)
        if not first:  # one of several signatures: only its runner reaches its tensors
            runner(**{signature.user_input: blank, signature.item_input: blank})
            return tensors
        del runner  # a live runner forbids resizing the interpreter's tensors
        interpreter.resize_tensor_input(tensors.user_index, [size])
        interpreter.resize_tensor_input(tensors.item_index, [size])
        interpreter.allocate_tensors()
        interpreter.set_tensor(tensors.user_index, blank)
        interpreter.set_tensor(tensors.item_index, blank)
        interpreter.invoke()  # a delegate that cannot run the model fails here, as in the Ranker
        return tensors

    return prepare


def load_interpreter(
    method: Method,
    model: Path,
    backend: str,
    delegate: str,
    threads: int,
    user: str,
    candidates: Sequence[str],
    signature_key: str = SIGNATURE_KEY,
    user_input: Optional[str] = None,
    item_input: Optional[str] = None,
    user_row: int = contract.OOV_ROW,
) -> Loaded:
    """Loads a plain interpreter for the invoke methods or one of the per-candidate loops.

    Args:
        method: Method.INVOKE, Method.INVOKE_TOP_K, Method.LOOP or Method.SIGNATURE_LOOP.
        model: the .tflite file.
        backend: the concrete backend the Ranker chose for this model.
        delegate: the delegate choice the Ranker ended with ("default" or "none").
        threads: interpreter threads.
        user: the user id.
        candidates: the titles.
        signature_key / user_input / item_input: the strings signature to drive.
        user_row: the user's row, for INVOKE_TOP_K (whose candidates are the whole catalog).

    Raises:
        DeviceRuntimeError: the interpreter cannot load or prepare the model.
    """
    start = time.perf_counter_ns()
    content = Path(model).read_bytes()
    flatbuffer = read_flatbuffer(content, source=str(model))
    if method is Method.INVOKE_TOP_K:
        prepare = _prepare_top_k
    else:
        size = len(candidates) if method is Method.INVOKE else 1
        prepare = _prepare_batch(signature_key, user_input, item_input, size)
    loaded, tensors = open_interpreter(
        content, flatbuffer, str(model), prepare, backend=Backend(backend), num_threads=threads,
        delegates=Delegates(delegate),
    )
    init_ns = time.perf_counter_ns() - start
    if method is Method.LOOP and tensors.runner is not None:
        raise BenchmarkError(
            f"the tutorial's loop sets the tensors of the first subgraph, and the strings signature of {model} "
            "is not it (the model has several signatures); time signature_loop instead"
        )
    if method is Method.INVOKE_TOP_K:
        subject: Subject = _TopKSubject(loaded.interpreter, user_row, len(candidates))
    elif method is Method.INVOKE:
        subject = _InvokeSubject(loaded.interpreter, tensors, user, candidates)
    elif method is Method.LOOP:
        subject = _TutorialLoopSubject(loaded.interpreter, tensors, user, candidates)
    else:
        subject = _SignatureLoopSubject(loaded.interpreter, tensors.signature, user, candidates)
    return Loaded(
        subject=subject,
        init_ns=init_ns,
        backend=loaded.backend.value,
        backend_version=loaded.version,
        delegate=loaded.delegates.value,
        delegate_fallback=loaded.fallback_reason,
        threads=threads,
    )


def tensorflow_installed() -> bool:
    """True when TensorFlow could be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


class _SavedModelSubject:
    """The serving signature called from Python on all candidates at once."""

    def __init__(self, handle: "SavedModelHandle", inputs: dict):
        self._handle = handle  # keeps the loaded object (it owns the function's variables) alive
        self._inputs = inputs

    def run(self) -> None:
        self._handle.function(**self._inputs)[self._handle.output].numpy()

    def scores(self) -> np.ndarray:
        result = self._handle.function(**self._inputs)[self._handle.output].numpy()
        return np.asarray(result, dtype=np.float32).reshape(-1)


@dataclasses.dataclass(frozen=True)
class SavedModelHandle:
    """A loaded SavedModel's serving function, shared by every candidate count.

    TensorFlow functions keep no per-batch-size state, so one load serves all
    configurations of the same SavedModel.
    """

    loaded: Any
    function: Any
    user_input: str
    item_input: str
    output: str
    init_ns: int
    version: str
    threads: Optional[int]


def open_saved_model(
    path: Path,
    threads: int,
    signature_key: str = SIGNATURE_KEY,
    user_input: Optional[str] = None,
    item_input: Optional[str] = None,
) -> SavedModelHandle:
    """Loads a SavedModel with TensorFlow (imported here, never at module import).

    Args:
        path: the SavedModel folder.
        threads: TensorFlow's intra- and inter-op threads; ignored (None in the
            result) when TensorFlow's runtime was already initialised.
        signature_key / user_input / item_input: the signature to call.

    Raises:
        BenchmarkError: TensorFlow is missing, or the SavedModel cannot be
            loaded or lacks the signature or the input names.
    """
    if not tensorflow_installed():
        raise BenchmarkError("the SavedModel reference needs TensorFlow; install it or pass --no-saved-model")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the kit's models are tf_keras (Keras 2) models
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    threads_in_force: Optional[int] = threads
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow's runtime is already initialised in this process
        threads_in_force = None
    start = time.perf_counter_ns()
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, RuntimeError, tf.errors.OpError) as error:
        raise BenchmarkError(f"TensorFlow cannot load the SavedModel {path}: {one_line(error)}") from None
    if signature_key not in loaded.signatures:
        found = ", ".join(loaded.signatures) or "none"
        raise BenchmarkError(f"the SavedModel {path} has no signature {signature_key!r} (found: {found})")
    function = loaded.signatures[signature_key]
    init_ns = time.perf_counter_ns() - start
    input_names = set(function.structured_input_signature[1])
    user_name, item_name = user_input or USER_INPUT, item_input or ITEM_INPUT
    if {user_name, item_name} != input_names:
        raise BenchmarkError(
            f"the SavedModel {path} takes inputs {sorted(input_names)}, not {user_name!r} and {item_name!r}; "
            "pass --user-input and --item-input"
        )
    outputs = list(function.structured_outputs)
    if len(outputs) != 1:
        raise BenchmarkError(f"the SavedModel {path} must have one output, found {outputs}")
    return SavedModelHandle(loaded, function, user_name, item_name, outputs[0], init_ns, tf.__version__, threads_in_force)


def load_saved_model(handle: SavedModelHandle, user: str, candidates: Sequence[str]) -> Loaded:
    """A subject calling the SavedModel on `candidates`; the tf.string inputs are built before timing.

    Its init time is the (shared) SavedModel load time.
    """
    import tensorflow as tf

    inputs = {
        handle.user_input: tf.constant([user] * len(candidates), dtype=tf.string),
        handle.item_input: tf.constant(list(candidates), dtype=tf.string),
    }
    return Loaded(
        subject=_SavedModelSubject(handle, inputs),
        init_ns=handle.init_ns,
        backend=SAVED_MODEL_BACKEND,
        backend_version=handle.version,
        delegate=None,
        delegate_fallback=None,
        threads=handle.threads,
    )

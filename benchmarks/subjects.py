"""The things timed: one loaded model, ready to rank a fixed candidate list per call.

Each loader builds its own interpreter (never shared between configurations,
so every one keeps its tensors allocated for its own batch size) and returns a
`Subject`: `run()` is the timed call, `scores()` returns the candidates' scores
for the harness's self-check.

- rank: the public `device_runtime.Ranker`.
- invoke / loop / signature_loop: a plain interpreter opened through
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

from benchmarks.config import TOP_K, Method
from benchmarks.errors import BenchmarkError
from device_runtime import Ranker
from device_runtime.backends import Backend, Delegates, open_interpreter
from device_runtime.errors import one_line
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


class _RankSubject:
    def __init__(self, ranker: Ranker, user: str, candidates: Sequence[str]):
        self._ranker = ranker
        self._user = user
        self._candidates = list(candidates)

    def run(self) -> None:
        self._ranker.rank(self._user, self._candidates, k=TOP_K)

    def scores(self) -> np.ndarray:
        return self._ranker.score(self._user, self._candidates)


def load_rank(
    model: Path,
    backend: str,
    threads: int,
    user: str,
    candidates: Sequence[str],
    user_input: Optional[str] = None,
    item_input: Optional[str] = None,
) -> Loaded:
    """Loads a Ranker; the timed call is `ranker.rank(user, candidates, k=TOP_K)`.

    Raises:
        DeviceRuntimeError: the Ranker cannot load the model with this backend.
    """
    start = time.perf_counter_ns()
    ranker = Ranker(model, num_threads=threads, backend=backend, user_input=user_input, item_input=item_input)
    init_ns = time.perf_counter_ns() - start
    info = ranker.info()
    return Loaded(
        subject=_RankSubject(ranker, user, candidates),
        init_ns=init_ns,
        backend=info.backend,
        backend_version=info.backend_version,
        delegate=info.delegates,
        delegate_fallback=info.delegate_fallback,
        threads=info.num_threads,
    )


@dataclasses.dataclass(frozen=True)
class _Tensors:
    """Where one prepared interpreter takes its inputs and gives its output."""

    signature: SignatureMapping
    user_index: int
    item_index: int
    output_index: int


class _InvokeSubject:
    """One invocation for all candidates on the bare interpreter, inputs encoded beforehand."""

    def __init__(self, interpreter: Any, tensors: _Tensors, user: str, candidates: Sequence[str]):
        self._interpreter = interpreter
        self._tensors = tensors
        self._users = _as_object_array([user] * len(candidates))
        self._items = _as_object_array(candidates)
        self._scores = np.empty(len(candidates), dtype=np.float32)

    def run(self) -> None:
        interpreter, tensors = self._interpreter, self._tensors
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
        del runner  # a live runner forbids resizing the interpreter's tensors
        tensors = _Tensors(
            signature=signature,
            user_index=int(inputs[signature.user_input]["index"]),
            item_index=int(inputs[signature.item_input]["index"]),
            output_index=int(outputs[signature.output]["index"]),
        )
        interpreter.resize_tensor_input(tensors.user_index, [size])
        interpreter.resize_tensor_input(tensors.item_index, [size])
        interpreter.allocate_tensors()
        blank = np.array([b""] * size, dtype=object)
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
) -> Loaded:
    """Loads a plain interpreter for the invoke method or one of the per-candidate loops.

    Args:
        method: Method.INVOKE, Method.LOOP or Method.SIGNATURE_LOOP.
        model: the .tflite file.
        backend: the concrete backend the Ranker chose for this model.
        delegate: the delegate choice the Ranker ended with ("default" or "none").
        threads: interpreter threads.
        user: the user id.
        candidates: the titles.
        signature_key / user_input / item_input: the signature to drive.

    Raises:
        DeviceRuntimeError: the interpreter cannot load or prepare the model.
    """
    start = time.perf_counter_ns()
    content = Path(model).read_bytes()
    flatbuffer = read_flatbuffer(content, source=str(model))
    loaded, tensors = open_interpreter(
        content,
        flatbuffer,
        str(model),
        _prepare_batch(signature_key, user_input, item_input, len(candidates) if method is Method.INVOKE else 1),
        backend=Backend(backend),
        num_threads=threads,
        delegates=Delegates(delegate),
    )
    init_ns = time.perf_counter_ns() - start
    if method is Method.INVOKE:
        subject: Subject = _InvokeSubject(loaded.interpreter, tensors, user, candidates)
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

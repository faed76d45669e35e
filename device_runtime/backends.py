"""Interpreter backends: which package runs the model, and why loading failed.

Three packages offer the same `Interpreter` API. With `Backend.AUTO` they are
tried in this order:

1. `ai_edge_litert` (LiteRT): maintained, numpy 2, XNNPACK on by default.
2. `tflite_runtime`: its last release (2.14.0) is the only choice on armv7l
   boards and Python <= 3.11; it needs numpy<2 and lacks newer op versions.
3. `tensorflow` (`tf.lite.Interpreter`): a last resort; importing TensorFlow is
   slow and heavy, so it is only imported when it is chosen.

Nothing here is imported at module import time, so `import device_runtime`
never pulls in TensorFlow.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import os
import re
import warnings
from typing import Any, Callable, Optional, TypeVar, Union

import numpy as np

from device_runtime._log import Logger
from device_runtime.errors import BackendError, DeviceRuntimeError, ModelLoadError, one_line
from device_runtime.flatbuffer import FlatbufferModel

logger = Logger(__name__)

T = TypeVar("T")

INSTALL_HINT = 'pip install ai-edge-litert (or, where LiteRT has no wheel, pip install tflite-runtime "numpy<2")'

# What turning the default delegate off costs, measured on x86_64
# with a dynamic-range int8 model (see docs/device-runtime.md, "Backends").
DELEGATE_FALLBACK_COST = "3x to 6.5x slower on the kit's MovieLens model (measured on x86_64)"

# Compiled on first use (a load failure), not at import: start-up time matters on a device.
_OP_VERSION_PATTERN = r"Didn't find op for builtin opcode '(?P<op>\w+)' version '(?P<version>\d+)'"
_CUSTOM_OP_PATTERN = r"Didn't find (?:custom op for name|op for custom opcode) '(?P<op>[^']+)'"
_DELEGATE_FAILURE_MARKERS = ("xnnpack", "delegate")
# A model with Flex ops fails naming "the Flex delegate", which no fallback provides.
_FLEX_FAILURE_MARKER = "select tensorflow op"
# tf.lite.Interpreter warns on every creation that LiteRT replaces it; the kit knows.
_TF_LITE_DEPRECATION = r".*tf\.lite\.Interpreter is deprecated"


class Backend(str, enum.Enum):
    """Which interpreter package runs the model."""

    AUTO = "auto"
    LITERT = "ai_edge_litert"
    TFLITE_RUNTIME = "tflite_runtime"
    TENSORFLOW = "tensorflow"


AUTO_ORDER = (Backend.LITERT, Backend.TFLITE_RUNTIME, Backend.TENSORFLOW)


class Delegates(str, enum.Enum):
    """Whether the backend may apply its default delegates (XNNPACK on LiteRT)."""

    DEFAULT = "default"
    NONE = "none"


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: fewer generated methods to compile at start-up
class BackendPackage:
    """An importable interpreter package."""

    backend: Backend
    version: str
    interpreter_class: Any
    op_resolver_type: Any  # the package's OpResolverType enum


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: fewer generated methods to compile at start-up
class LoadedInterpreter:
    """An interpreter that loaded the model and passed its preparation.

    Attributes:
        backend: the package that runs it.
        version: that package's version.
        interpreter: the package's Interpreter object.
        delegates: whether default delegates are allowed.
        fallback_reason: why default delegates were turned off, if they were.
    """

    backend: Backend
    version: str
    interpreter: Any
    delegates: Delegates
    fallback_reason: Optional[str] = None


# Short names accepted besides the package names.
BACKEND_ALIASES = {"litert": "ai_edge_litert"}


def parse_backend(value) -> Backend:
    """Returns the Backend named by `value` (a Backend or its string value).

    Raises:
        BackendError: the name is not one of the known backends.
    """
    if isinstance(value, Backend):
        return value
    name = str(value).strip().lower()
    try:
        return Backend(BACKEND_ALIASES.get(name, name))
    except ValueError:
        names = ", ".join(b.value for b in Backend)
        raise BackendError(f"unknown backend {value!r}; choose one of: {names}") from None


def import_backend(backend: Backend) -> BackendPackage:
    """Imports one interpreter package.

    Args:
        backend: a concrete backend (not AUTO).

    Returns:
        The package's interpreter class, resolver enum and version.

    Raises:
        BackendError: the package is not installed or fails to import.
    """
    try:
        if backend is Backend.LITERT:
            module = importlib.import_module("ai_edge_litert.interpreter")
            version = getattr(importlib.import_module("ai_edge_litert"), "__version__", "unknown")
            return BackendPackage(backend, version, module.Interpreter, module.OpResolverType)
        if backend is Backend.TFLITE_RUNTIME:
            module = importlib.import_module("tflite_runtime.interpreter")
            version = getattr(importlib.import_module("tflite_runtime"), "__version__", "unknown")
            return BackendPackage(backend, version, module.Interpreter, module.OpResolverType)
        if backend is Backend.TENSORFLOW:
            tf = importlib.import_module("tensorflow")
            return BackendPackage(backend, tf.__version__, tf.lite.Interpreter, tf.lite.experimental.OpResolverType)
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError):
            reason = "is not installed"
        else:
            reason = f"is installed but fails to import ({error})"
        raise BackendError(f"backend {backend.value!r} {reason}; {INSTALL_HINT}") from None
    raise BackendError(f"backend {backend.value!r} is not a concrete interpreter package")


def create_interpreter(
    package: BackendPackage,
    *,
    model_path: Union[str, os.PathLike, None] = None,
    model_content: Optional[bytes] = None,
    num_threads: Optional[int] = None,
    delegates: Delegates = Delegates.DEFAULT,
) -> Any:
    """Creates `package`'s Interpreter for a model file or its bytes: the kit's one way to open one.

    Args:
        package: the interpreter package (see `import_backend`).
        model_path / model_content: the model, as a path or as bytes (exactly one).
        num_threads: interpreter threads; None keeps the package's default.
        delegates: NONE builds the interpreter with builtin kernels only
            (`BUILTIN_WITHOUT_DEFAULT_DELEGATES`); DEFAULT lets the package apply
            its default delegates (XNNPACK on LiteRT).

    Returns:
        The package's Interpreter, not yet allocated.

    Raises:
        ValueError, RuntimeError, SystemError: whatever the package raises when it
            refuses the model; each caller words that for its own users.
    """
    if (model_path is None) == (model_content is None):
        raise TypeError("give exactly one of model_path and model_content")
    options: dict[str, Any] = {}
    if model_path is not None:
        options["model_path"] = os.fspath(model_path)
    else:
        options["model_content"] = model_content
    if num_threads is not None:
        options["num_threads"] = num_threads
    if delegates is Delegates.NONE:
        options["experimental_op_resolver_type"] = package.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TF_LITE_DEPRECATION, category=UserWarning)
        interpreter = package.interpreter_class(**options)
    _read_signatures_once(interpreter)
    return interpreter


def _read_signatures_once(interpreter: Any) -> None:
    """Makes `interpreter` read its signature definitions once, and answer every later request from that copy.

    Each `get_signature_list()` and `get_signature_runner()` of these packages
    calls the native GetSignatureDefs, which in tflite-runtime 2.14 leaks every
    dictionary it returns (about 4 KiB for the kit's seven signatures). Loading
    a model made ten such calls, so an app that reloads models grew by about
    50 KiB a reload (the soak, docs/benchmarks.md). The definitions of one
    interpreter never change; the closures below hold them, not the interpreter
    (no reference cycle: it is freed as soon as it is dropped).
    """
    read = getattr(interpreter, "_get_full_signature_list", None)
    if read is None:  # a package without the method: nothing to cache
        return
    definitions = read()

    def signature_list() -> dict:
        # get_signature_list's own form: the tensor names only, a fresh dict the caller may change.
        return {
            key: {"inputs": list(definition["inputs"]), "outputs": list(definition["outputs"])}
            for key, definition in definitions.items()
        }

    interpreter._get_full_signature_list = lambda: definitions
    interpreter.get_signature_list = signature_list


def open_interpreter(
    content: bytes,
    model: FlatbufferModel,
    source: str,
    prepare: Callable[[Any], T],
    *,
    backend: Backend = Backend.AUTO,
    num_threads: Optional[int] = None,
    delegates: Delegates = Delegates.DEFAULT,
) -> tuple[LoadedInterpreter, T]:
    """Creates an interpreter for the model and prepares it, falling back when needed.

    `prepare(interpreter)` is the caller's check that the interpreter really
    runs the model (resolve the signature, invoke once); its result is returned
    with the interpreter. When default delegates make it fail (LiteRT's
    XNNPACK cannot prepare dynamic-range int8 models), the interpreter is
    discarded and a new one without default delegates is prepared instead, so
    the caller never receives a half-prepared interpreter.

    With `Backend.AUTO`, a backend that is installed but cannot load this model
    (numpy 2 under tflite-runtime, op versions newer than the runtime) is
    skipped for the next one; if none works the first error is raised.

    Args:
        content: the model file's bytes (kept alive by the interpreter).
        model: the parsed flatbuffer, used to explain load failures.
        source: how to name the model in messages.
        prepare: called with a fresh interpreter; raises on failure.
        backend: the package to use, or AUTO.
        num_threads: threads for the interpreter; None keeps the backend's default.
        delegates: NONE turns default delegates off from the start.

    Returns:
        The loaded interpreter and what `prepare` returned.

    Raises:
        ModelLoadError: no usable backend, or the backend cannot load the model.
        BackendError: a forced backend is not installed.
        DeviceRuntimeError: whatever `prepare` raised on purpose (e.g. SignatureError).
    """
    candidates = AUTO_ORDER if backend is Backend.AUTO else (backend,)
    first_error: Optional[ModelLoadError] = None
    installed = 0
    for candidate in candidates:
        # Import lazily: the next package (perhaps TensorFlow) only when this one cannot serve.
        try:
            package = import_backend(candidate)
        except BackendError as error:
            if backend is not Backend.AUTO:
                raise
            logger.debug("skipping backend %s: %s", candidate.value, error)
            continue
        installed += 1
        try:
            opened = _open_with(package, content, model, source, prepare, num_threads, delegates)
        except _BackendCannotLoad as error:
            logger.debug("backend %s cannot load %s: %s", candidate.value, source, error)
            first_error = first_error or ModelLoadError(str(error))
            continue
        if first_error is not None:
            logger.warning("%s; using %s instead", first_error, _label(package))
        return opened
    if not installed:
        raise ModelLoadError(f"cannot load {source}: no interpreter package is installed; {INSTALL_HINT}")
    raise first_error


class _BackendCannotLoad(Exception):
    """This backend (but perhaps another) cannot load the model."""


def _open_with(package, content, model, source, prepare, num_threads, delegates):
    interpreter = _create(package, content, model, source, num_threads, delegates)
    if delegates is Delegates.NONE:
        prepared = _run_prepare(prepare, interpreter, source, package)
        return LoadedInterpreter(package.backend, package.version, interpreter, Delegates.NONE), prepared
    try:
        prepared = prepare(interpreter)
    except DeviceRuntimeError:
        raise
    except (RuntimeError, ValueError) as error:
        if not is_delegate_failure(error):
            raise ModelLoadError(f"{_label(package)} could not run {source}: {one_line(error)}") from None
        reason = one_line(error)
        del interpreter  # never hand out the half-prepared one
        interpreter = _create(package, content, model, source, num_threads, Delegates.NONE)
        prepared = _run_prepare(prepare, interpreter, source, package)
        logger.warning(fallback_message(source, reason))
        return LoadedInterpreter(package.backend, package.version, interpreter, Delegates.NONE, reason), prepared
    return LoadedInterpreter(package.backend, package.version, interpreter, Delegates.DEFAULT), prepared


def fallback_message(source: str, reason: str) -> str:
    """The one warning logged when default delegates are turned off."""
    return (
        f"the default delegate (XNNPACK) failed to prepare {source} ({reason}); running it with builtin "
        f"kernels only, {DELEGATE_FALLBACK_COST}; convert with --quantize weight-only-int8 (int8, keeps XNNPACK) "
        "or float16 instead"
    )


def is_delegate_failure(error: BaseException) -> bool:
    """True when an interpreter error comes from a delegate failing to prepare."""
    text = str(error).lower()
    return any(marker in text for marker in _DELEGATE_FAILURE_MARKERS) and _FLEX_FAILURE_MARKER not in text


def _run_prepare(prepare, interpreter, source, package):
    try:
        return prepare(interpreter)
    except DeviceRuntimeError:
        raise
    except (RuntimeError, ValueError) as error:
        raise ModelLoadError(f"{_label(package)} could not run {source}: {one_line(error)}") from None


def _create(package: BackendPackage, content, model, source, num_threads, delegates):
    if _built_for_numpy1(package) and _numpy_major() >= 2:
        # Known to fail (with numpy's long warning on stderr), so do not even try.
        raise _BackendCannotLoad(_numpy2_message(package))
    try:
        return create_interpreter(package, model_content=content, num_threads=num_threads, delegates=delegates)
    except SystemError as error:
        if package.backend is Backend.TFLITE_RUNTIME and _numpy_major() >= 2:
            raise _BackendCannotLoad(_numpy2_message(package)) from None
        raise ModelLoadError(f"{_label(package)} could not load {source}: {one_line(error)}") from None
    except (ValueError, RuntimeError) as error:
        raise _diagnose(error, package, model, source) from None


def _diagnose(error: BaseException, package: BackendPackage, model: FlatbufferModel, source: str) -> Exception:
    message = str(error)
    match = re.search(_OP_VERSION_PATTERN, message)
    if match:
        op, version = match["op"], int(match["version"])
        listed = [code for code in model.operator_codes if code.name == op and not code.is_custom]
        if listed:  # trust the file over the message
            version = max(code.version for code in listed)
        return _BackendCannotLoad(
            f"{source} needs {op} version {version}, which {_label(package)} does not support; "
            f"convert the model for that runtime (e.g. float16 or no quantization instead of dynamic-range int8) "
            f"or install ai-edge-litert"
        )
    match = re.search(_CUSTOM_OP_PATTERN, message)
    if match:
        flex = any(code.is_flex for code in model.operator_codes)
        hint = "convert with builtin ops only (no SELECT_TF_OPS)" if flex else "convert with builtin ops only"
        return ModelLoadError(f"{source} uses the custom op {match['op']!r}, which {_label(package)} lacks; {hint}")
    return ModelLoadError(f"{_label(package)} could not load {source}: {one_line(error)}")


# The last tflite-runtime release; every release up to it was built against numpy 1.
LAST_TFLITE_RUNTIME = (2, 14, 0)


def _built_for_numpy1(package: BackendPackage) -> bool:
    if package.backend is not Backend.TFLITE_RUNTIME:
        return False
    try:
        version = tuple(int(part) for part in package.version.split(".")[:3])
    except ValueError:
        return False  # an unknown build: try it, and diagnose a crash afterwards
    return version <= LAST_TFLITE_RUNTIME


def _numpy2_message(package: BackendPackage) -> str:
    return (
        f"tflite_runtime {package.version} cannot load models under numpy {np.__version__} "
        f'(it was built for numpy 1); pin "numpy<2" or install ai-edge-litert'
    )


def _label(package: BackendPackage) -> str:
    return f"{package.backend.value} {package.version}"


def _numpy_major() -> int:
    return int(np.__version__.split(".")[0])

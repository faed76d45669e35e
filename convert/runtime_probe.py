"""Loads and runs a .tflite on every interpreter package installed in this Python.

For each package (LiteRT, tflite-runtime, tf.lite) the file is run twice: with
the package's default delegates (XNNPACK) and with builtin kernels only
(`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`). Each run calls every
signature it is given through the interpreter's signature runners, inputs
mapped by name, and times each one.

Needs numpy, `device_runtime` and an interpreter; never imports TensorFlow
unless tf.lite is asked for. Other Pythons (for example a venv with
tflite-runtime and numpy<2) run it as

    python -m convert.runtime_probe REQUEST.json

which prints a JSON list of results on stdout. A request holds the model's
path and, per signature key, its inputs as `encode_inputs` writes them.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from device_runtime.backends import Backend, BackendError, Delegates, create_interpreter, import_backend
from device_runtime.errors import one_line

LATENCY_WARMUP_RUNS = 2
LATENCY_RUNS = 30
PROBE_THREADS = 1  # single-threaded, as on a small board; figures stay comparable
_ERROR_CHARS = 300
_DTYPES = {"string": object, "int32": np.int32, "float32": np.float32}


def encode_inputs(inputs: Mapping[str, np.ndarray]) -> dict:
    """A signature's numpy inputs as JSON: name -> {"dtype": "string"|"int32"|"float32", "values": [...]}."""
    encoded = {}
    for name, value in inputs.items():
        value = np.asarray(value)
        dtype = "string" if value.dtype == object or value.dtype.kind in "SU" else str(value.dtype)
        if dtype not in _DTYPES:
            raise ValueError(f"input {name!r} has dtype {dtype}; the probe takes {', '.join(_DTYPES)}")
        values = [str(v) for v in value.reshape(-1)] if dtype == "string" else value.reshape(-1).tolist()
        encoded[name] = {"dtype": dtype, "shape": list(value.shape), "values": values}
    return encoded


def _decode_inputs(encoded: Mapping[str, dict]) -> dict[str, np.ndarray]:
    inputs = {}
    for name, spec in encoded.items():
        if spec["dtype"] == "string":
            inputs[name] = encode_strings(spec["values"]).reshape(spec["shape"])
        else:
            inputs[name] = np.asarray(spec["values"], dtype=_DTYPES[spec["dtype"]]).reshape(spec["shape"])
    return inputs


def probe_backends(
    model_path: str,
    calls: Mapping[str, Mapping[str, dict]],
    backends: Sequence[Backend] = (Backend.LITERT, Backend.TFLITE_RUNTIME, Backend.TENSORFLOW),
) -> list[dict]:
    """Runs the model on every installed backend among `backends`.

    Args:
        model_path: the .tflite file.
        calls: signature key -> its inputs (`encode_inputs`); each is called and timed.
        backends: the packages to try; those not installed are left out.

    Returns:
        One dict per installed backend, in the `RuntimeCheck` layout; each run
        holds per signature its "outputs" (lists) for the caller to compare.
    """
    results = []
    for backend in backends:
        try:
            package = import_backend(backend)
        except BackendError:
            continue
        results.append(_probe_package(package, model_path, calls))
    return results


def _probe_package(package, model_path, calls) -> dict:
    runs = {}
    load_errors = []
    for key, delegates in (
        ("with_default_delegates", Delegates.DEFAULT),
        ("without_default_delegates", Delegates.NONE),
    ):
        try:
            interpreter = create_interpreter(
                package, model_path=model_path, num_threads=PROBE_THREADS, delegates=delegates
            )
        except Exception as error:  # noqa: BLE001 - any load failure is a finding to report
            load_errors.append(_first_sentence(error))
            runs[key] = None
            continue
        signatures = {signature: _timed_call(interpreter, signature, inputs) for signature, inputs in calls.items()}
        failed = next((run for run in signatures.values() if not run["runs"]), None)
        runs[key] = {"runs": failed is None, "error": failed["error"] if failed else None, "signatures": signatures}
    loads = any(run is not None for run in runs.values())
    return {
        "runtime": package.backend.value,
        "version": str(package.version),
        "python": sys.executable,
        "loads": loads,
        "load_error": None if loads else (load_errors[0] if load_errors else "unknown error"),
        **runs,
    }


def encode_strings(values: Sequence[str]) -> np.ndarray:
    """UTF-8 bytes for a string input tensor (numpy's bytes_ would encode as ASCII)."""
    return np.array(
        [value.encode("utf-8") if isinstance(value, str) else bytes(value) for value in values], dtype=object
    )


def _timed_call(interpreter, key: str, encoded: Mapping[str, dict]) -> dict:
    inputs = _decode_inputs(encoded)
    try:
        runner = interpreter.get_signature_runner(key)
        outputs = {name: np.asarray(value) for name, value in runner(**inputs).items()}
        for _ in range(LATENCY_WARMUP_RUNS):
            runner(**inputs)
        timings = []
        for _ in range(LATENCY_RUNS):
            started = time.perf_counter()
            runner(**inputs)
            timings.append((time.perf_counter() - started) * 1000.0)
    except Exception as error:  # noqa: BLE001 - e.g. XNNPACK failing to prepare
        return {"runs": False, "error": f"{key}: {_first_sentence(error)}", "latency_ms": None, "outputs": None}
    floats = [value for value in outputs.values() if value.dtype.kind == "f"]
    if not all(np.all(np.isfinite(value)) for value in floats):
        return {"runs": False, "error": f"{key}: returned non-finite values", "latency_ms": None, "outputs": None}
    return {
        "runs": True,
        "error": None,
        "latency_ms": statistics.median(timings),
        "outputs": {name: value.reshape(-1).tolist() for name, value in outputs.items()},
    }


def _first_sentence(error: BaseException) -> str:
    """The error's first sentence on one line (interpreters append advice and node dumps)."""
    text = one_line(error)
    first, separator, _ = text.partition(". ")
    return one_line(first + "." if separator else text, limit=_ERROR_CHARS)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Reads a request {model_path, calls, backends} and prints the results as JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m convert.runtime_probe REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    backends = [
        Backend(name) for name in request.get("backends", [b.value for b in (Backend.LITERT, Backend.TFLITE_RUNTIME)])
    ]
    results = probe_backends(request["model_path"], request["calls"], backends)
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

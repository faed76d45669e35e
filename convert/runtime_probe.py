"""Loads and runs a .tflite on every interpreter package installed in this Python.

For each package (LiteRT, tflite-runtime, tf.lite) the file is run twice: with
the package's default delegates (XNNPACK) and with builtin kernels only
(`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`). Each run ranks one
batch of candidates through the signature runner, inputs mapped by name.

Needs numpy, `device_runtime` and an interpreter; never imports TensorFlow
unless tf.lite is asked for. Other Pythons (for example a venv with
tflite-runtime and numpy<2) run it as

    python -m convert.runtime_probe REQUEST.json

which prints a JSON list of results on stdout.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from device_runtime.backends import Backend, BackendError, Delegates, create_interpreter, import_backend
from device_runtime.errors import one_line

LATENCY_WARMUP_RUNS = 2
LATENCY_RUNS = 30
PROBE_THREADS = 1  # single-threaded, as on a small board; figures stay comparable
_ERROR_CHARS = 300


def probe_backends(
    model_path: str,
    signature: dict,
    users: Sequence[str],
    items: Sequence[str],
    backends: Sequence[Backend] = (Backend.LITERT, Backend.TFLITE_RUNTIME, Backend.TENSORFLOW),
) -> list[dict]:
    """Runs the model on every installed backend among `backends`.

    Args:
        model_path: the .tflite file.
        signature: a `SignatureMapping.to_dict()`: which inputs take users and items.
        users / items: one batch of (user, item) pairs to score.
        backends: the packages to try; those not installed are left out.

    Returns:
        One dict per installed backend, in the `RuntimeCheck` layout, each run
        with "scores" (list of floats) for the caller to compare.
    """
    results = []
    for backend in backends:
        try:
            package = import_backend(backend)
        except BackendError:
            continue
        results.append(_probe_package(package, model_path, signature, users, items))
    return results


def _probe_package(package, model_path, signature, users, items) -> dict:
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
        runs[key] = _timed_run(interpreter, signature, users, items)
    loads = any(run is not None for run in runs.values())
    return {
        "runtime": package.backend.value,
        "version": str(package.version),
        "python": sys.executable,
        "loads": loads,
        "load_error": None if loads else (load_errors[0] if load_errors else "unknown error"),
        "candidates": len(items),
        **runs,
    }


def encode_strings(values: Sequence[str]) -> np.ndarray:
    """UTF-8 bytes for a string input tensor (numpy's bytes_ would encode as ASCII)."""
    return np.array([value.encode("utf-8") if isinstance(value, str) else bytes(value) for value in values], dtype=object)


def _timed_run(interpreter, signature: dict, users, items) -> dict:
    inputs = {signature["user_input"]: encode_strings(users), signature["item_input"]: encode_strings(items)}
    try:
        runner = interpreter.get_signature_runner(signature["signature_key"])
        outputs = runner(**inputs)
        scores = np.asarray(outputs[signature["output"]], dtype=np.float32).reshape(-1)
        for _ in range(LATENCY_WARMUP_RUNS):
            runner(**inputs)
        timings = []
        for _ in range(LATENCY_RUNS):
            started = time.perf_counter()
            runner(**inputs)
            timings.append((time.perf_counter() - started) * 1000.0)
    except Exception as error:  # noqa: BLE001 - e.g. XNNPACK failing to prepare
        return {"runs": False, "error": _first_sentence(error), "latency_ms": None, "scores": None}
    if scores.size != len(items) or not np.all(np.isfinite(scores)):
        return {
            "runs": False,
            "error": f"returned {scores.size} scores for {len(items)} candidates, or non-finite scores",
            "latency_ms": None,
            "scores": None,
        }
    return {"runs": True, "error": None, "latency_ms": statistics.median(timings), "scores": scores.tolist()}


def _first_sentence(error: BaseException) -> str:
    """The error's first sentence on one line (interpreters append advice and node dumps)."""
    text = one_line(error)
    first, separator, _ = text.partition(". ")
    return one_line(first + "." if separator else text, limit=_ERROR_CHARS)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Reads a request {model_path, signature, users, items} and prints the results as JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m convert.runtime_probe REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    backends = [Backend(name) for name in request.get("backends", [b.value for b in (Backend.LITERT, Backend.TFLITE_RUNTIME)])]
    results = probe_backends(request["model_path"], request["signature"], request["users"], request["items"], backends)
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

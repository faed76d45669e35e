"""Scores every movie for a few hundred users with one interpreter package.

Runs the same way on the x86_64 host and under aarch64 emulation, so the two
score matrices can be compared element by element:

    python -m scripts.aarch64.scores --model M.tflite --backend ai_edge_litert --users 200 --out DIR/NAME

writes DIR/NAME.npy (float32, [users, movies]) and DIR/NAME.json (which users,
which interpreter, how long). It opens the interpreter with device_runtime's
loader (the backend and delegate choice the Ranker makes; numpy and the package
only, never TensorFlow) and calls the signature runner itself, so it checks the
.tflite and the interpreter, not the Ranker, which has its own test suite.

Exit codes: 0 scored; 2 a usage or model problem; 3 this interpreter package
cannot load this model (e.g. an op version it lacks).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device_runtime.backends import Backend, Delegates, LoadedInterpreter, open_interpreter
from device_runtime.errors import DeviceRuntimeError, ModelLoadError, one_line
from device_runtime.files import write_atomically
from device_runtime.flatbuffer import FlatbufferModel, read_flatbuffer
from device_runtime.manifest import read_manifest
from device_runtime.signature import SignatureMapping, resolve_signature, signatures_from_interpreter

EXIT_USAGE = 2
EXIT_CANNOT_LOAD = 3
DEFAULT_USERS = 200
# Rows per invocation: whole users at a time, about this many (user, movie) pairs.
CHUNK_ROWS = 16384
DELEGATE_MODES = ("auto", "default", "none")


class ScoringError(Exception):
    """A usage or model problem, reported as one line (exit 2)."""


class CannotLoadError(Exception):
    """The interpreter package cannot load this model (exit 3)."""


def select_users(users: Sequence[str], count: int) -> list[str]:
    """`count` users spread evenly over the vocabulary (first and last included), in vocabulary order."""
    if count < 1:
        raise ScoringError(f"--users must be at least 1, got {count}")
    if count >= len(users):
        return list(users)
    indices = np.unique(np.round(np.linspace(0, len(users) - 1, count)).astype(int))
    return [users[i] for i in indices]


def read_vocabularies(model: FlatbufferModel, source: str, vocab_dir: Path | None) -> tuple[list[str], list[str], str]:
    """The model's users and movies and its quantization ("unknown" without a manifest).

    The embedded manifest is used when it carries the vocabularies, else
    `vocab_dir`/users.txt and movies.txt (one id per line, UTF-8).
    """
    try:
        manifest = read_manifest(model)
    except DeviceRuntimeError as error:
        raise ScoringError(one_line(error)) from None
    quantization = manifest.quantization if manifest is not None else "unknown"
    if manifest is not None and manifest.users and manifest.movies:
        return list(manifest.users), list(manifest.movies), quantization
    if vocab_dir is None:
        raise ScoringError(f"{source} embeds no vocabularies; pass --vocab-dir with users.txt and movies.txt")
    lists = []
    for name in ("users.txt", "movies.txt"):
        path = vocab_dir / name
        try:
            lists.append([line for line in path.read_text(encoding="utf-8").splitlines() if line])
        except OSError as error:
            raise ScoringError(f"cannot read {path}: {error.strerror}; check --vocab-dir") from None
    return lists[0], lists[1], quantization


class _Scorer:
    """One interpreter's serving signature, called with whole users at a time."""

    def __init__(self, interpreter: Any, mapping: SignatureMapping):
        self._runner = interpreter.get_signature_runner(mapping.signature_key)
        self._mapping = mapping

    def __call__(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        outputs = self._runner(**{self._mapping.user_input: users, self._mapping.item_input: movies})
        return np.asarray(outputs[self._mapping.output], dtype=np.float32).reshape(-1)


def load_scorer(
    content: bytes, model: FlatbufferModel, source: str, backend: str, threads: int, delegates: Delegates,
    fall_back: bool,
) -> tuple[LoadedInterpreter, _Scorer]:
    """Opens the model with `backend` (device_runtime's loader), resolves its signature and scores one pair.

    With default delegates, a delegate that cannot run the model is replaced by
    builtin kernels when `fall_back` holds, else the model counts as not loadable.

    Raises:
        ScoringError: the package is not installed, or the model has no ranking signature.
        CannotLoadError: the package cannot load or run the model.
    """

    def prepare(interpreter: Any) -> _Scorer:
        scorer = _Scorer(interpreter, resolve_signature(signatures_from_interpreter(interpreter)))
        blank = np.array([b""], dtype=object)
        scorer(blank, blank)  # a delegate that cannot run the model fails here
        return scorer

    try:
        loaded, scorer = open_interpreter(
            content, model, source, prepare, backend=Backend(backend), num_threads=threads, delegates=delegates
        )
    except ModelLoadError as error:
        raise CannotLoadError(one_line(error)) from None
    except DeviceRuntimeError as error:  # BackendError (not installed), SignatureError
        raise ScoringError(one_line(error)) from None
    if loaded.fallback_reason is not None and not fall_back:
        raise CannotLoadError(
            f"{backend} {loaded.version} cannot run {source} with its default delegates: {loaded.fallback_reason}"
        )
    return loaded, scorer


def score_matrix(scorer, users: Sequence[str], movies: Sequence[str]) -> np.ndarray:
    """Every movie for every user, float32 [len(users), len(movies)]."""
    movie_bytes = np.array([m.encode("utf-8") for m in movies], dtype=object)
    per_call = max(1, CHUNK_ROWS // max(1, len(movies)))
    scores = np.empty((len(users), len(movies)), dtype=np.float32)
    for start in range(0, len(users), per_call):
        chunk = users[start : start + per_call]
        user_column = np.repeat(np.array([u.encode("utf-8") for u in chunk], dtype=object), len(movies))
        movie_column = np.tile(movie_bytes, len(chunk))
        scores[start : start + len(chunk)] = scorer(user_column, movie_column).reshape(len(chunk), len(movies))
    return scores


def score_model(
    model: Path, backend: str, users_count: int, threads: int, delegate_mode: str, vocab_dir: Path | None
) -> tuple[np.ndarray, dict]:
    """Loads the model with `backend` and scores every movie for `users_count` users.

    Returns:
        The score matrix and a JSON-ready description of the run.

    Raises:
        ScoringError, CannotLoadError: see the module docstring's exit codes.
    """
    try:
        content = model.read_bytes()
    except OSError as error:
        raise ScoringError(f"cannot read model {model}: {error.strerror}; check the path") from None
    try:
        flatbuffer = read_flatbuffer(content, str(model))
    except DeviceRuntimeError as error:
        raise ScoringError(one_line(error)) from None
    all_users, movies, quantization = read_vocabularies(flatbuffer, str(model), vocab_dir)
    users = select_users(all_users, users_count)
    use_delegates = delegate_mode == "default" or (delegate_mode == "auto" and quantization != "dynamic-int8")
    loaded, scorer = load_scorer(
        content, flatbuffer, str(model), backend, threads, Delegates.DEFAULT if use_delegates else Delegates.NONE,
        fall_back=delegate_mode == "auto",
    )
    start = time.perf_counter()
    scores = score_matrix(scorer, users, movies)
    seconds = time.perf_counter() - start
    description = {
        "model": str(model),
        "model_sha256": hashlib.sha256(content).hexdigest(),
        "quantization": quantization,
        "backend": backend,
        "backend_version": loaded.version,
        "delegates": loaded.delegates.value,
        "delegate_fallback": loaded.fallback_reason,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": threads,
        "users": users,
        "movies": len(movies),
        "movies_sha256": hashlib.sha256("\n".join(movies).encode("utf-8")).hexdigest(),
        "seconds": round(seconds, 3),
    }
    return scores, description


def write_results(out: Path, scores: np.ndarray, description: dict) -> tuple[Path, Path]:
    """Writes OUT.npy and OUT.json atomically; returns their paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    npy, meta = out.with_name(out.name + ".npy"), out.with_name(out.name + ".json")
    matrix = io.BytesIO()
    np.save(matrix, scores)
    write_atomically(npy, matrix.getvalue())
    write_atomically(meta, json.dumps(description, indent=1, ensure_ascii=False))
    return npy, meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.aarch64.scores", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="the .tflite file")
    parser.add_argument("--backend", required=True, choices=["ai_edge_litert", "tflite_runtime"])
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help=f"users to score (default {DEFAULT_USERS})")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--delegates", choices=DELEGATE_MODES, default="auto",
                        help="auto: builtin kernels only for dynamic-range int8 or when XNNPACK fails")
    parser.add_argument("--vocab-dir", type=Path, default=None,
                        help="folder with users.txt and movies.txt, for models without a manifest")
    parser.add_argument("--out", required=True, type=Path, help="output prefix: OUT.npy and OUT.json")
    args = parser.parse_args(argv)
    try:
        scores, description = score_model(args.model, args.backend, args.users, args.threads, args.delegates,
                                          args.vocab_dir)
    except ScoringError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except CannotLoadError as error:
        print(f"cannot load: {one_line(error)}", file=sys.stderr)
        return EXIT_CANNOT_LOAD
    npy, _ = write_results(args.out, scores, description)
    print(f"scored {scores.shape[0]} users x {scores.shape[1]} movies with {args.backend} "
          f"{description['backend_version']} on {description['machine']} in {description['seconds']} s -> {npy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

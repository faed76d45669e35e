"""Scores every movie for a few hundred users with one interpreter package.

Runs the same way on the x86_64 host and under aarch64 emulation, so the two
score matrices can be compared element by element:

    python -m scripts.aarch64.scores --model M.tflite --backend ai_edge_litert --users 200 --out DIR/NAME

writes DIR/NAME.npy (float32, [users, movies]: the strings signature) and
DIR/NAME.json (which users, which interpreter, how long). For a model that
answers them, DIR/NAME.npz holds the other contract signatures' answers
(`device_runtime.contract`), keyed "SIGNATURE.TENSOR":

- index space, for `--index-users` of the scored users (default
  `DEFAULT_INDEX_USERS`, spread over them the same way: the tutorial tower costs
  as much per call as the strings signature, about 0.6 s per user for every
  movie under emulation, and `top_k` is called twice): `score_rows` over every
  movie row and 4 rows the graph maps to the OOV row, and `top_k` (k = `TOP_K`,
  and k = every movie under "top_k.catalog.TENSOR");
- personalized, for `synthetic_histories` (an empty one, then `HISTORY_COUNT`
  of 1 to `HISTORY_MAX_LENGTH` ratings drawn with `HISTORY_SEED` from the
  model's movies): `user_state`, then with that state `score_rows_for_state`
  over the same rows as `score_rows` and `top_k_for_state` (both k), and
  `score_history` over every title.

A signature the file lacks (the tutorial preset has no personalized ones) is
listed under "not_present" in the JSON. It opens the interpreter with
device_runtime's loader (the backend and delegate choice the Ranker makes;
numpy and the package only, never TensorFlow) and calls the signature runners
by their contract names itself, so it checks the .tflite and the interpreter,
not the Ranker, which has its own test suite.

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

from device_runtime import contract
from device_runtime.backends import Backend, Delegates, LoadedInterpreter, open_interpreter
from device_runtime.errors import DeviceRuntimeError, ModelLoadError, one_line
from device_runtime.files import write_atomically
from device_runtime.flatbuffer import FlatbufferModel, read_flatbuffer
from device_runtime.manifest import read_manifest
from device_runtime.signature import SignatureMapping, resolve_signature, signatures_from_interpreter

EXIT_USAGE = 2
EXIT_CANNOT_LOAD = 3
DEFAULT_USERS = 200
DEFAULT_INDEX_USERS = 50
# Rows per invocation: whole users at a time, about this many (user, movie) pairs.
CHUNK_ROWS = 16384
DELEGATE_MODES = ("auto", "default", "none")
# The other contract signatures, in the order they are called.
INDEX_SIGNATURES = contract.INDEX_SIGNATURES
PERSONALIZED_SIGNATURES = (
    contract.USER_STATE, contract.SCORE_ROWS_FOR_STATE, contract.TOP_K_FOR_STATE, contract.SCORE_HISTORY,
)
TOP_K = 10
HISTORY_COUNT = 20
HISTORY_MAX_LENGTH = 200
HISTORY_SEED = 2026
# The top-k signatures are also asked for the whole catalog (k = n), under "SIGNATURE.catalog.TENSOR":
# every row with the signature's own score, which decides ties when k = TOP_K.
CATALOG = "catalog"
# After every movie row, `score_rows` and `score_rows_for_state` get these: the OOV row and rows outside
# the table, which the graph maps to the OOV row (so no input reads outside a table); n + 1 is added at run time.
OUT_OF_RANGE_ROWS = (contract.OOV_ROW, -1, np.iinfo(np.int32).max)
# Appended to the longest history: the graph must ignore a title it does not know.
UNKNOWN_TITLE = "No Such Movie (2099)"


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
    """One interpreter's serving signature, called with whole users at a time.

    `runners` holds the runners of the other contract signatures the file answers, by key.
    """

    def __init__(self, interpreter: Any, mapping: SignatureMapping):
        self._runner = interpreter.get_signature_runner(mapping.signature_key)
        self._mapping = mapping
        present = set(interpreter.get_signature_list())
        self.runners = {
            key: interpreter.get_signature_runner(key)
            for key in INDEX_SIGNATURES + PERSONALIZED_SIGNATURES
            if key in present
        }

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
        _warm_up(scorer.runners)  # and so on every other signature
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


def _warm_up(runners: dict) -> None:
    """Invokes every signature once with inputs that need no vocabulary (row 0, an empty history)."""
    row, one = np.zeros(1, np.int32), np.ones(1, np.int32)
    empty_titles, empty_ratings = np.array([], dtype=object), np.zeros(0, np.float32)
    state = None
    if contract.USER_STATE in runners:
        state = state_of(runners[contract.USER_STATE], empty_titles, empty_ratings)
    for key, runner in runners.items():
        if key == contract.SCORE_ROWS:
            runner(**{contract.USER_ROW: row, contract.ITEM_ROWS: row})
        elif key == contract.TOP_K:
            runner(**{contract.USER_ROW: row, contract.K: one})
        elif key == contract.SCORE_HISTORY:
            runner(**{contract.HISTORY_TITLES: empty_titles, contract.HISTORY_RATINGS: empty_ratings,
                      contract.MOVIE_TITLE: np.array([b""], dtype=object)})
        elif key in (contract.SCORE_ROWS_FOR_STATE, contract.TOP_K_FOR_STATE) and state is not None:
            extra = {contract.ITEM_ROWS: row} if key == contract.SCORE_ROWS_FOR_STATE else {contract.K: one}
            runner(**{contract.USER_VECTOR: state[0], contract.USER_BIAS: state[1], **extra})


def state_of(runner, titles: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`user_state`'s answer for one history: the user vector [D] and bias [1], float32."""
    outputs = runner(**{contract.HISTORY_TITLES: titles, contract.HISTORY_RATINGS: ratings})
    vector = np.asarray(outputs[contract.USER_VECTOR], dtype=np.float32).reshape(-1)
    bias = np.asarray(outputs[contract.USER_BIAS], dtype=np.float32).reshape(-1)
    return vector, bias


def history_lengths(count: int = HISTORY_COUNT, longest: int = HISTORY_MAX_LENGTH) -> list[int]:
    """0 (the unknown user), then `count` lengths from 1 to `longest`, spaced geometrically."""
    return [0] + [int(round(length)) for length in np.geomspace(1, longest, count)]


def synthetic_histories(
    movies: Sequence[str], seed: int = HISTORY_SEED, lengths: Sequence[int] | None = None
) -> list[tuple[list[str], np.ndarray]]:
    """Deterministic histories: distinct titles of `movies` with integer ratings 1..5, one per length.

    A history longer than the catalog takes every movie. The last history ends with
    `UNKNOWN_TITLE`, which the graph ignores.

    Returns:
        (titles, ratings float32) per history, in the order of `lengths` (default `history_lengths()`).
    """
    rng = np.random.default_rng(seed)
    histories = []
    for length in history_lengths() if lengths is None else lengths:
        rows = rng.choice(len(movies), size=min(int(length), len(movies)), replace=False)
        ratings = rng.integers(int(contract.MIN_RATING), int(contract.MAX_RATING) + 1, size=len(rows))
        histories.append(([movies[row] for row in rows], ratings.astype(np.float32)))
    if histories and histories[-1][0]:
        titles, ratings = histories[-1]
        histories[-1] = (titles + [UNKNOWN_TITLE], np.append(ratings, np.float32(contract.MAX_RATING)))
    return histories


def histories_sha256(histories: Sequence[tuple[Sequence[str], np.ndarray]]) -> str:
    """A checksum of the histories, so that two sides can prove they fed the same ones."""
    text = json.dumps([[list(titles), [float(r) for r in ratings]] for titles, ratings in histories],
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def score_signatures(
    runners: dict,
    user_rows: Sequence[int],
    movies: Sequence[str],
    histories: Sequence[tuple[Sequence[str], np.ndarray]],
    k: int = TOP_K,
) -> dict[str, np.ndarray]:
    """The answers of every signature in `runners` but the strings one, as "SIGNATURE.TENSOR" arrays.

    Args:
        runners: signature key -> runner (only the keys present are called).
        user_rows: the users' rows (index space; 1..n, 0 is the OOV row).
        movies: the movie vocabulary; every movie row 1..n is scored, then `OUT_OF_RANGE_ROWS` and n + 1
            (so `score_rows` and `score_rows_for_state` answers have n + 4 columns).
        histories: (titles, ratings) per synthetic user, for the personalized signatures.
        k: how many rows the top-k signatures return (clamped to the catalog by the graph); they
            are also called with k = every movie (`CATALOG`).
    """
    catalog = len(movies)
    all_rows = np.array([*range(1, catalog + 1), *OUT_OF_RANGE_ROWS, catalog + 1], dtype=np.int32)
    k_input, catalog_k = np.array([k], np.int32), np.array([catalog], np.int32)
    arrays: dict[str, list] = {}

    def keep(key: str, tensor: str, value) -> None:
        arrays.setdefault(f"{key}.{tensor}", []).append(np.asarray(value).reshape(-1))

    def top_k(key: str, inputs: dict) -> None:
        for name, wanted in ((key, k_input), (f"{key}.{CATALOG}", catalog_k)):
            outputs = runners[key](**inputs, **{contract.K: wanted})
            keep(name, contract.ITEM_ROWS, outputs[contract.ITEM_ROWS])
            keep(name, contract.RATING, outputs[contract.RATING])

    for user_row in user_rows:
        row = np.array([user_row], np.int32)
        if contract.SCORE_ROWS in runners:
            outputs = runners[contract.SCORE_ROWS](**{contract.USER_ROW: row, contract.ITEM_ROWS: all_rows})
            keep(contract.SCORE_ROWS, contract.RATING, outputs[contract.RATING])
        if contract.TOP_K in runners:
            top_k(contract.TOP_K, {contract.USER_ROW: row})
    movie_bytes = np.array([m.encode("utf-8") for m in movies], dtype=object)
    for titles, ratings in histories:
        history = {contract.HISTORY_TITLES: np.array([t.encode("utf-8") for t in titles], dtype=object),
                   contract.HISTORY_RATINGS: np.asarray(ratings, np.float32)}
        if contract.USER_STATE in runners:
            vector, bias = state_of(
                runners[contract.USER_STATE], history[contract.HISTORY_TITLES], history[contract.HISTORY_RATINGS]
            )
            keep(contract.USER_STATE, contract.USER_VECTOR, vector)
            keep(contract.USER_STATE, contract.USER_BIAS, bias)
            state = {contract.USER_VECTOR: vector, contract.USER_BIAS: bias}
            if contract.SCORE_ROWS_FOR_STATE in runners:
                outputs = runners[contract.SCORE_ROWS_FOR_STATE](**state, **{contract.ITEM_ROWS: all_rows})
                keep(contract.SCORE_ROWS_FOR_STATE, contract.RATING, outputs[contract.RATING])
            if contract.TOP_K_FOR_STATE in runners:
                top_k(contract.TOP_K_FOR_STATE, state)
        if contract.SCORE_HISTORY in runners:
            outputs = runners[contract.SCORE_HISTORY](**history, **{contract.MOVIE_TITLE: movie_bytes})
            keep(contract.SCORE_HISTORY, contract.RATING, outputs[contract.RATING])
    return {name: np.stack(rows) for name, rows in arrays.items()}


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
    model: Path, backend: str, users_count: int, threads: int, delegate_mode: str, vocab_dir: Path | None,
    index_users_count: int = DEFAULT_INDEX_USERS,
) -> tuple[np.ndarray, dict, dict[str, np.ndarray]]:
    """Loads the model with `backend` and scores every movie for `users_count` users, on every signature.

    Returns:
        The strings signature's score matrix, a JSON-ready description of the
        run, and the other signatures' answers (`score_signatures`; empty for a
        model with the strings signature only).

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
    if index_users_count < 1:
        raise ScoringError(f"--index-users must be at least 1, got {index_users_count}")
    index_users = select_users(users, index_users_count)
    use_delegates = delegate_mode == "default" or (delegate_mode == "auto" and quantization != "dynamic-int8")
    loaded, scorer = load_scorer(
        content, flatbuffer, str(model), backend, threads, Delegates.DEFAULT if use_delegates else Delegates.NONE,
        fall_back=delegate_mode == "auto",
    )
    start = time.perf_counter()
    scores = score_matrix(scorer, users, movies)
    seconds = time.perf_counter() - start
    rows = {user: row for row, user in enumerate(all_users, start=contract.OOV_ROW + 1)}
    histories = synthetic_histories(movies) if contract.USER_STATE in scorer.runners else []
    start = time.perf_counter()
    try:
        arrays = score_signatures(scorer.runners, [rows[user] for user in index_users], movies, histories)
    except (RuntimeError, ValueError) as error:  # the interpreter refused a call
        raise CannotLoadError(f"{backend} {loaded.version} failed on a signature of {model}: {one_line(error)}") \
            from None
    signature_seconds = time.perf_counter() - start
    present = [contract.STRINGS, *scorer.runners]
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
        "signatures": present,
        "not_present": [key for key in contract.SIGNATURES if key not in present],
        "index_users": index_users if any(key in scorer.runners for key in INDEX_SIGNATURES) else [],
        "top_k": TOP_K,
        "histories": {"seed": HISTORY_SEED, "lengths": [len(titles) for titles, _ in histories],
                      "sha256": histories_sha256(histories)} if histories else None,
        "signature_seconds": round(signature_seconds, 3),
    }
    return scores, description, arrays


def write_results(
    out: Path, scores: np.ndarray, description: dict, arrays: dict[str, np.ndarray] | None = None
) -> tuple[Path, Path]:
    """Writes OUT.npy, OUT.npz (the other signatures' arrays, when there are any) and OUT.json atomically.

    Returns:
        The paths of OUT.npy and OUT.json.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    npy, npz, meta = (out.with_name(out.name + suffix) for suffix in (".npy", ".npz", ".json"))
    matrix = io.BytesIO()
    np.save(matrix, scores)
    write_atomically(npy, matrix.getvalue())
    if arrays:
        bundle = io.BytesIO()
        np.savez(bundle, **arrays)
        write_atomically(npz, bundle.getvalue())
    elif npz.exists():
        npz.unlink()  # an earlier run's answers must not pass for this model's
    write_atomically(meta, json.dumps(description, indent=1, ensure_ascii=False))
    return npy, meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.aarch64.scores", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="the .tflite file")
    parser.add_argument("--backend", required=True, choices=["ai_edge_litert", "tflite_runtime"])
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help=f"users to score (default {DEFAULT_USERS})")
    parser.add_argument("--index-users", type=int, default=DEFAULT_INDEX_USERS,
                        help=f"of those, users for the index-space signatures (default {DEFAULT_INDEX_USERS})")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--delegates", choices=DELEGATE_MODES, default="auto",
                        help="auto: builtin kernels only for dynamic-range int8 or when XNNPACK fails")
    parser.add_argument("--vocab-dir", type=Path, default=None,
                        help="folder with users.txt and movies.txt, for models without a manifest")
    parser.add_argument("--out", required=True, type=Path, help="output prefix: OUT.npy and OUT.json")
    args = parser.parse_args(argv)
    try:
        scores, description, arrays = score_model(args.model, args.backend, args.users, args.threads,
                                                  args.delegates, args.vocab_dir, args.index_users)
    except ScoringError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except CannotLoadError as error:
        print(f"cannot load: {one_line(error)}", file=sys.stderr)
        return EXIT_CANNOT_LOAD
    npy, _ = write_results(args.out, scores, description, arrays)
    histories = description["histories"]
    counts = [f"{len(description['index_users'])} users"] if description["index_users"] else []
    counts += [f"{len(histories['lengths'])} histories"] if histories else []
    also = f"; also {', '.join(description['signatures'][1:])} ({', '.join(counts)})" if arrays else ""
    print(f"scored {scores.shape[0]} users x {scores.shape[1]} movies with {args.backend} "
          f"{description['backend_version']} on {description['machine']} in {description['seconds']} s{also} -> {npy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

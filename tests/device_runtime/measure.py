"""Measures the device runtime's own costs: cold start, the fast path against a numpy floor, personalization.

Not a test (timings never go into assertions); a helper for the figures in
docs/device-runtime.md. Build a default-size model once in the main
environment, then time it in either environment, from the repository root:

    .venv/bin/python -m tests.device_runtime.measure build DIR
    .venv-device/bin/python -m tests.device_runtime.measure cold-start DIR/factor_default.tflite
    .venv/bin/python -m tests.device_runtime.measure latency DIR [--backend ai_edge_litert] [--threads 1]

`build` writes a random factor model of the default model's shapes (943 users,
1,664 movies, D = 64; `train.serving.FactorServing`, all seven signatures) and
its tables (`factor_default.npz`, for the numpy floor). `cold-start` times, in
fresh processes taking turns, "import numpy and the interpreter package"
against "that, then import the kit, load the model and rank all movies for one
user"; the kit's share is the difference of the medians (wall time: run it on
a quiet machine, other processes move it by several milliseconds). `latency` times, in
one process and interleaved, `Ranker.rank(user, k=10)` over the whole catalog
against numpy's matvec + argpartition on the same tables, and the other paths.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODEL = "factor_default.tflite"
TABLES = "factor_default.npz"
USERS, MOVIES, DIMENSION = 943, 1664, 64
TOP_K = 10
HISTORY = 50

BASELINE = "import numpy, {package}.interpreter"
KIT = (
    "import numpy, {package}.interpreter\n"
    "from device_runtime import Ranker\n"
    "Ranker({model!r}, backend={package!r}).rank('42', k=10)"
)


def build(folder: Path) -> None:
    """Writes the default-size random factor model and its tables (main environment)."""
    from tests.device_runtime.serving_fixtures import build_factor_model
    from train.serving import FactorTables

    rng = np.random.default_rng(0)

    def table(*shape, scale):
        values = rng.normal(0.0, scale, shape).astype(np.float32)
        values[0] = 0.0
        return values

    tables = FactorTables(
        global_mean=3.53,
        user_bias=table(USERS + 1, scale=0.3),
        movie_bias=table(MOVIES + 1, scale=0.3),
        user_vectors=table(USERS + 1, DIMENSION, scale=0.1),
        movie_vectors=table(MOVIES + 1, DIMENSION, scale=0.1),
        users=tuple(str(n) for n in range(1, USERS + 1)),
        movies=tuple(f"Movie number {n} (1990)" for n in range(MOVIES)),
    )
    folder.mkdir(parents=True, exist_ok=True)
    build_factor_model(tables, folder / MODEL, name="default-size random factor model")
    arrays = {name: getattr(tables, name) for name in ("user_bias", "movie_bias", "user_vectors", "movie_vectors")}
    np.savez(folder / TABLES, global_mean=tables.global_mean, **arrays)


def _timed_run(script: str, environ: dict) -> float:
    """Runs `python -c script`; returns its wall time in milliseconds."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], cwd=REPO, env=environ, check=True, capture_output=True)
    return (time.perf_counter() - began) * 1e3


def cold_start(model: Path, package: str, repeats: int) -> dict:
    """Median wall times of fresh processes, baseline and kit taking turns (see the module docstring)."""
    scripts = {
        "baseline": BASELINE.format(package=package),
        "kit": KIT.format(package=package, model=str(model)),
    }
    times: dict[str, list[float]] = {name: [] for name in scripts}
    with tempfile.TemporaryDirectory() as cache:
        # Compiled bytecode is cached, as for an installed package (pip compiles it at install);
        # a PYTHONDONTWRITEBYTECODE environment would otherwise compile the kit at every start.
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        environ["PYTHONPYCACHEPREFIX"] = cache
        for script in scripts.values():  # once untimed: bytecode and disk caches warm for both
            _timed_run(script, environ)
        for _ in range(repeats):
            for name, script in scripts.items():
                times[name].append(_timed_run(script, environ))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "package": package,
        "repeats": repeats,
        "baseline_ms": round(medians["baseline"], 1),
        "kit_ms": round(medians["kit"], 1),
        "kit_share_ms": round(medians["kit"] - medians["baseline"], 1),
    }


def latency(folder: Path, package: str, threads: int, seconds: float) -> dict:
    """Interleaved medians (microseconds) of the Ranker's paths and the numpy floor, in one process."""
    from benchmarks.latency import measure_interleaved
    from device_runtime import Ranker
    from device_runtime.flatbuffer import read_flatbuffer
    from device_runtime.integrity import verify

    tables = np.load(folder / TABLES)
    movie_vectors = np.ascontiguousarray(tables["movie_vectors"][1:])
    movie_bias = tables["movie_bias"][1:]
    user_vector, user_bias = tables["user_vectors"][42], float(tables["user_bias"][42])
    global_mean = float(tables["global_mean"])

    def numpy_floor():
        scores = movie_vectors @ user_vector + movie_bias + (global_mean + user_bias)
        best = np.argpartition(-scores, TOP_K)[:TOP_K]
        return best[np.argsort(-scores[best], kind="stable")]

    ranker = Ranker(folder / MODEL, num_threads=threads, backend=package)
    titles = list(ranker.manifest.movies)
    prepared = ranker.candidates(titles)
    history = [(titles[(n * 37) % len(titles)], float(1 + n % 5)) for n in range(HISTORY)]
    me = ranker.personalize(history)
    expected = [titles[row] for row in numpy_floor()]
    assert [title for title, _ in ranker.rank("42", k=TOP_K)] == expected, "the fast path disagrees with numpy"
    calls = {
        "rank(user, k=10), whole catalog (top_k)": lambda: ranker.rank("42", k=TOP_K),
        "numpy floor: matvec + argpartition": numpy_floor,
        "rank(user, prepared set of all movies)": lambda: ranker.rank("42", prepared, k=TOP_K),
        "rank(user, list of all movies)": lambda: ranker.rank("42", titles, k=TOP_K),
        "score_pairs over all movies (strings)": lambda: ranker.score_pairs(["42"] * len(titles), titles),
        "personalize(50 ratings)": lambda: ranker.personalize(history),
        "rank(personalized, k=10), whole catalog": lambda: ranker.rank(me, k=TOP_K),
    }
    samples, _, _ = measure_interleaved(list(calls.values()), runs=300, min_seconds=seconds)
    content = (folder / MODEL).read_bytes()
    model = read_flatbuffer(content)
    load_steps = {
        "read_flatbuffer (the kit's reader)": lambda: read_flatbuffer(content),
        "verify the checksum (sha256 of the file)": lambda: verify(content, model, MODEL),
    }
    step_samples, _, _ = measure_interleaved(list(load_steps.values()), runs=100, min_seconds=0.5)
    info = ranker.info()
    return {
        "backend": f"{info.backend} {info.backend_version}",
        "threads": threads,
        "model_bytes": info.model_size_bytes,
        "load_ms": info.load_ms,
        "median_us": {name: round(statistics.median(s) / 1e3, 1) for name, s in zip(calls, samples)},
        "load_steps_us": {name: round(statistics.median(s) / 1e3, 1) for name, s in zip(load_steps, step_samples)},
    }


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.device_runtime.measure", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build").add_argument("folder", type=Path)
    cold = commands.add_parser("cold-start")
    cold.add_argument("model", type=Path)
    cold.add_argument("--repeats", type=int, default=40)
    cold.add_argument("--backend", default=None, help="ai_edge_litert or tflite_runtime (default: the installed one)")
    timed = commands.add_parser("latency")
    timed.add_argument("folder", type=Path)
    timed.add_argument("--backend", default=None)
    timed.add_argument("--threads", type=int, default=1)
    timed.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.folder)
        print(f"wrote {args.folder / MODEL} and {args.folder / TABLES}")
        return 0
    from tests.device_runtime.device_env import installed_device_backend

    package = args.backend or installed_device_backend()
    if args.command == "cold-start":
        result = cold_start(args.model.resolve(), package, args.repeats)
    else:
        result = latency(args.folder, package, args.threads, args.seconds)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

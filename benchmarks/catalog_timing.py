"""One catalog model timed in a process of its own: load, peak memory, top-k against numpy's floor.

`time_model` (the parent's side) starts `python -m benchmarks.catalog_timing JOB RESULT`
with BLAS limited to the interpreter's thread count, so a size's memory never
piles onto the next one's and numpy's floor runs on as many threads as the
interpreter. In the child, in this order:

1. numpy, the runtime and the interpreter package are imported; the resident
   memory then is the baseline;
2. `Ranker(model)` is timed (reading and verifying the file, the interpreter,
   each signature invoked once), then the first `rank(user, k=K)`;
3. the process's peak resident memory is read: it holds the imports and this
   model alone;
4. the float32 tables are read (after the memory figure), and the Ranker's
   top K is checked against numpy's over the same tables;
5. `rank(user, k=K)` and the numpy floor (matvec, argpartition, sort of the
   top K) are timed in turns by the harness's interleaved timer.

Needs numpy, `device_runtime` and one interpreter package; never TensorFlow.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from benchmarks.timer import measure_interleaved
from benchmarks.machine import current_rss_bytes, peak_rss_bytes
from benchmarks.stats import summarize
from device_runtime import contract
from device_runtime.files import write_atomically

# The tables' file beside each size's models (numpy's savez, float32).
TABLES_FILE = "tables.npz"
TABLE_NAMES = ("global_mean", "user_bias", "movie_bias", "user_vectors", "movie_vectors")
# A child that has not finished by then is stopped (a 1M-movie model loads in seconds and times in tens).
CHILD_TIMEOUT_SECONDS = 1800
# The thread-count variables of the BLAS libraries numpy may be built with.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
MIB = 2**20
# Variants whose file holds the tables exactly (the build puts every entry on a grid float16 keeps),
# so their top k must be numpy's, title for title.
EXACT_VARIANTS = ("none", "float16")


def synthetic_title(index: int) -> str:
    """The title of catalog entry `index` (row index + 1), as the build names it; about as long as MovieLens's."""
    return f"Synthetic movie {index + 1:07d} ({1920 + index % 100})"


@dataclasses.dataclass(frozen=True)
class TimingJob:
    """What one child measures.

    Attributes:
        model: the .tflite file.
        tables: its float32 tables (`TABLES_FILE`).
        user: the user id ranked for; user_row: its row in the tables.
        k: how many of the best movies each call returns.
        backend / threads: how the interpreter runs (numpy's BLAS gets the same thread count).
        runs / min_seconds / block: the interleaved timer's stopping rules.
    """

    model: str
    tables: str
    user: str
    user_row: int
    k: int
    backend: str
    threads: int
    runs: int
    min_seconds: float
    block: int


@dataclasses.dataclass(frozen=True)
class TopCheck:
    """The Ranker's top k against numpy's over the same float32 tables.

    Attributes:
        identical: the same titles in the same order (ties in row order, as the contract says).
        overlap: the share of numpy's top k that the Ranker returned, in any order.
        max_abs_diff: the largest score difference over the titles both returned (None if none).
    """

    identical: bool
    overlap: float
    max_abs_diff: Optional[float]


def reference_top(tables, user_row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy's top k (rows 1..n, scores) of the model's formula in float64, equal scores in row order."""
    raw = (
        float(tables["global_mean"])
        + float(tables["user_bias"][user_row])
        + tables["movie_bias"][1:].astype(np.float64)
        + tables["movie_vectors"][1:].astype(np.float64) @ tables["user_vectors"][user_row].astype(np.float64)
    )
    scores = np.clip(raw, contract.MIN_RATING, contract.MAX_RATING)
    positions = np.argsort(-scores, kind="stable")[:k]
    return positions + 1, scores[positions]


def check_top(ranked: Sequence[tuple[str, float]], reference: tuple[np.ndarray, np.ndarray]) -> TopCheck:
    """Compares a ranking of (title, score) with `reference_top`'s rows and scores."""
    rows, scores = reference
    expected = {synthetic_title(int(row) - 1): float(score) for row, score in zip(rows, scores)}
    titles = [title for title, _ in ranked]
    shared = [(score, expected[title]) for title, score in ranked if title in expected]
    return TopCheck(
        identical=titles == list(expected),
        overlap=len(shared) / len(expected) if expected else 1.0,
        max_abs_diff=max((abs(ours - theirs) for ours, theirs in shared), default=None),
    )


class _Floor:
    """numpy's floor on the same float32 tables: matvec, argpartition, sort of the top k."""

    def __init__(self, movie_vectors: np.ndarray, user_vector: np.ndarray, k: int):
        self._vectors = movie_vectors[1:]  # the catalog's rows (a view), as top_k ranks them
        self._user = np.ascontiguousarray(user_vector, dtype=np.float32)
        self._k = k
        self._cut = len(self._vectors) - k

    def __call__(self) -> np.ndarray:
        scores = self._vectors @ self._user
        best = np.argpartition(scores, self._cut)[self._cut :]
        return best[np.argsort(-scores[best])]


def _figures(prefix: str, samples_ns: Sequence[int]) -> dict:
    summary = summarize(samples_ns)
    return {
        f"{prefix}_us": round(summary.median_us, 3),
        f"{prefix}_min_us": round(summary.min_us, 3),
        f"{prefix}_p90_us": round(summary.p90_us, 3),
    }


def run_job(job: TimingJob) -> dict:
    """Measures one model (in the child); returns the figures, or status "failed" with the reason.

    A model the interpreter refuses (for example dynamic-range int8 on
    tflite-runtime 2.14) is a failed result, not an exception.
    """
    from device_runtime import Ranker
    from device_runtime.backends import Backend, import_backend, parse_backend
    from device_runtime.errors import DeviceRuntimeError, one_line

    backend = parse_backend(job.backend)
    if backend is not Backend.AUTO:
        import_backend(backend)  # the import is not the model's load time
    baseline = current_rss_bytes()
    try:
        began = time.perf_counter_ns()
        ranker = Ranker(job.model, num_threads=job.threads, backend=job.backend)
        loaded = time.perf_counter_ns()
        ranked = ranker.rank(job.user, k=job.k)
        first = time.perf_counter_ns()
    except DeviceRuntimeError as error:
        return {"status": "failed", "error": one_line(error)}
    peak = peak_rss_bytes()
    info = ranker.info()
    with np.load(job.tables) as archive:
        tables = {name: archive[name] for name in TABLE_NAMES}
    check = check_top(ranked, reference_top(tables, job.user_row, job.k))
    floor = _Floor(tables["movie_vectors"], tables["user_vectors"][job.user_row], job.k)
    user, k = job.user, job.k

    def rank() -> None:
        ranker.rank(user, k=k)

    gc.collect()
    gc.disable()
    try:
        samples, rounds, _ = measure_interleaved([rank, floor], job.runs, job.min_seconds, block=job.block)
    finally:
        gc.enable()
    return {
        "status": "ok",
        "backend": info.backend,
        "backend_version": info.backend_version,
        "delegate": info.delegates,
        "threads": info.num_threads,
        "load_ms": round((loaded - began) / 1e6, 3),
        "first_rank_ms": round((first - loaded) / 1e6, 3),
        "rss_mb": round(peak / MIB, 1),
        "rss_baseline_mb": None if baseline is None else round(baseline / MIB, 1),
        **_figures("rank", samples[0]),
        **_figures("floor", samples[1]),
        "runs": len(samples[0]),
        "rounds": rounds,
        "top_k_identical": check.identical,
        "top_k_overlap": round(check.overlap, 4),
        "max_abs_score_diff": check.max_abs_diff,
    }


def child_environment(threads: int) -> dict:
    """The child's environment: BLAS on `threads` threads, and this package importable from anywhere."""
    environment = dict(os.environ)
    for name in BLAS_THREAD_VARIABLES:
        environment[name] = str(threads)
    root = str(Path(__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [environment.get("PYTHONPATH"), root]))
    return environment


def time_model(job: TimingJob, scratch: Path) -> dict:
    """Runs `run_job` in a fresh Python process; a child that dies or hangs is a failed result.

    Args:
        job: what to measure.
        scratch: a folder for the job and result files.

    Returns:
        The child's figures, or {"status": "failed", "error": why}.
    """
    job_path, result_path = scratch / "job.json", scratch / "result.json"
    result_path.unlink(missing_ok=True)
    job_path.write_text(json.dumps(dataclasses.asdict(job)), encoding="utf-8")
    command = [sys.executable, "-m", "benchmarks.catalog_timing", str(job_path), str(result_path)]
    try:
        done = subprocess.run(
            command, env=child_environment(job.threads), capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"the timing process did not finish within {CHILD_TIMEOUT_SECONDS} s"}
    if done.returncode == 0 and result_path.is_file():
        return json.loads(result_path.read_text(encoding="utf-8"))
    last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
    how = f"was killed by signal {-done.returncode}" if done.returncode < 0 else f"exited with {done.returncode}"
    return {"status": "failed", "error": f"the timing process {how}: {last.strip()}"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The child: `python -m benchmarks.catalog_timing JOB.json RESULT.json`."""
    job_path, result_path = argv if argv is not None else sys.argv[1:]
    job = TimingJob(**json.loads(Path(job_path).read_text(encoding="utf-8")))
    result = run_job(job)
    write_atomically(Path(result_path), (json.dumps(result) + "\n").encode("utf-8"))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash is reported by its signal, not a core file
    sys.exit(main())

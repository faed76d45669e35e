"""The layout of a training run's output folder: written by `train`, read by `convert`.

    DIR/saved_model/        SavedModel, signature `serving_default`
    DIR/metrics.json        figures and provenance of the run (see train.__main__)
    DIR/vocab/users.txt     one user id per line, UTF-8
    DIR/vocab/movies.txt    one movie title per line, UTF-8
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

from device_runtime.files import current_umask, write_atomically
from train.errors import OutputError

SAVED_MODEL_DIR = "saved_model"
METRICS_FILE = "metrics.json"
VOCAB_DIR = "vocab"
USERS_VOCAB = f"{VOCAB_DIR}/users.txt"
MOVIES_VOCAB = f"{VOCAB_DIR}/movies.txt"
# metrics.json names its producer so a later run knows it may replace the folder.
PRODUCER = "ranking-kit train"


def is_training_output(folder: Path) -> bool:
    """True if `folder` was written by this tool (its metrics.json says so)."""
    try:
        metrics = json.loads((Path(folder) / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and metrics.get("producer") == PRODUCER


def write_vocabulary(path: Path, ids: Sequence[str]) -> None:
    """Writes one id per line (UTF-8). Ids containing a newline cannot be stored."""
    for item in ids:
        if "\n" in item or "\r" in item:
            raise OutputError(f"id {item!r} contains a line break and cannot be written to {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, "".join(f"{item}\n" for item in ids))


def read_vocabulary(path: Path) -> list[str]:
    """Reads a vocabulary written by `write_vocabulary`."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def check_output_folder(out_dir: Path) -> None:
    """Refuses, before any work is done, a folder that this tool must not replace.

    Raises:
        OutputError: `out_dir` exists and is neither empty nor an earlier output
            of `python -m train`, or its parent folder is missing.
    """
    out_dir = Path(out_dir)
    if out_dir.parent.exists() and not out_dir.parent.is_dir():
        raise OutputError(f"the parent of --out {out_dir} is a file; choose a folder path")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputError(f"--out {out_dir} is a file; choose a folder path")
        if any(out_dir.iterdir()) and not is_training_output(out_dir):
            raise OutputError(
                f"--out {out_dir} exists and is not an output of `python -m train`; "
                "choose a new folder or remove it yourself"
            )


def make_staging_folder(out_dir: Path) -> Path:
    """A new hidden folder beside `out_dir`, with the permissions a plain mkdir would give."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    return staging


def publish_atomically(out_dir: Path, build: Callable[[Path], None]) -> None:
    """Builds the output in a temporary folder beside `out_dir`, then renames it.

    An interrupted run leaves only a hidden `.NAME.tmp-*` folder, never a
    folder at `out_dir` that looks complete. An earlier output is replaced only
    once the new one is fully written.
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_folder(out_dir)
    try:
        build(staging)
        if out_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, retired / out_dir.name)
            os.replace(staging, out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Holds an exclusive lock on `out_dir` for one run; a second run fails at once.

    The lock is an flock on a hidden file beside the folder, so it is released
    by the operating system even when the holder is killed.

    Raises:
        OutputError: another run holds the lock.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    handle = open(lock_path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise OutputError(
                f"another `python -m train` run (pid {holder}) is writing --out {out_dir}; "
                "wait for it to finish or choose another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def write_json_atomically(path: Path, data: dict) -> None:
    """Writes `data` as JSON through `device_runtime.files.write_atomically`.

    A float that is not finite (a figure with nothing to measure, such as the
    RMSE of no rows) is written as null: JSON has no NaN or Infinity.
    """
    write_atomically(path, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value

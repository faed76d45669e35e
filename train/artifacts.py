"""The layout of a training run's output folder: written by `train`, read by `convert`.

    DIR/saved_model/        SavedModel, signature `serving_default`
    DIR/metrics.json        figures and provenance of the run (see train.__main__)
    DIR/vocab/users.txt     one user id per line, UTF-8
    DIR/vocab/movies.txt    one movie title per line, UTF-8
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

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
    path.write_text("".join(f"{item}\n" for item in ids), encoding="utf-8")


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


def publish_atomically(out_dir: Path, build: Callable[[Path], None]) -> None:
    """Builds the output in a temporary folder beside `out_dir`, then renames it.

    An interrupted run leaves only a hidden `.NAME.tmp-*` folder, never a
    folder at `out_dir` that looks complete. An earlier output is replaced only
    once the new one is fully written.
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
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

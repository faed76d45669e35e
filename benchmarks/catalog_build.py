"""Synthetic catalogs built through the kit's own export and converter path (a workstation's job).

This is the one part of `benchmarks` that needs TensorFlow (and `train` and
`convert`): it is imported only by `python -m benchmarks catalog` when it
builds, never when it times models built elsewhere.

For each catalog size: seeded random tables of the default architecture's
shapes (`DIMENSION`-d vectors, a user table of `--users` rows, string
vocabularies of that many titles), exported with every contract signature by
`train.serving.FactorServing`, then for each quantization variant converted,
audited, checked by signature and sealed with its manifest by the converter's
own functions (`convert.tflite`, `convert.manifest_embedding`). No training,
and no MovieLens parity (the ids are synthetic): instead each file's top K
for the benchmark's user is checked against numpy's over the same tables.

Every table entry is a multiple of 1/`GRID` (at most 1 in size for vectors, 2
for biases) and the global mean is 3, so every score is exact in float32 and
in float16, whatever the order of summation: the float32 and float16 files
must give numpy's top K exactly, ties in row order.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import hashlib
import io
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from benchmarks.catalog_timing import EXACT_VARIANTS, TABLES_FILE, check_top, reference_top, synthetic_title
from benchmarks.errors import BenchmarkError
from device_runtime import contract
from device_runtime.errors import DeviceRuntimeError, one_line
from device_runtime.files import write_atomically

logger = logging.getLogger(__name__)

DIMENSION = 64  # the default preset's factor dimension
GRID = 256
GLOBAL_MEAN = 3.0
VECTOR_SCALE = 0.15
MOVIE_BIAS_SCALE = 0.2
USER_BIAS_SCALE = 0.1
# The fold-in's penalties do not change what is timed (top_k); the default model's are of this size.
VECTOR_RIDGE, BIAS_RIDGE = 1.0, 1.0


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """What to build.

    Attributes:
        folder: where the models go (see `benchmarks.catalog` for the layout).
        items: catalog sizes.
        variants: quantization variants (`convert.Quantization` values).
        users: rows of the user table.
        seed: the tables' seed (each size draws from (seed, items)).
        user: the user the build checks (and the timing ranks for).
        k: how many of the best movies the check compares.
    """

    folder: Path
    items: tuple[int, ...]
    variants: tuple[str, ...]
    users: int
    seed: int
    user: str
    k: int


def synthetic_tables(items: int, users: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded random factor tables on the grid; row 0 of each is the unknown row (zeros)."""
    rng = np.random.default_rng([seed, items])

    def table(shape, scale: float, limit: float) -> np.ndarray:
        values = np.clip(np.round(rng.normal(0.0, scale, shape) * GRID), -limit * GRID, limit * GRID) / GRID
        values = values.astype(np.float32)
        values[0] = 0.0
        return values

    return {
        "global_mean": np.float32(GLOBAL_MEAN),
        "user_bias": table(users + 1, USER_BIAS_SCALE, 2.0),
        "movie_bias": table(items + 1, MOVIE_BIAS_SCALE, 2.0),
        "user_vectors": table((users + 1, DIMENSION), VECTOR_SCALE, 1.0),
        "movie_vectors": table((items + 1, DIMENSION), VECTOR_SCALE, 1.0),
    }


def _write_tables(tables: dict, path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **tables)
    write_atomically(path, buffer.getvalue())


def _export(tables: dict, users: Sequence[str], movies: Sequence[str], saved_model: Path) -> None:
    from train.serving import FactorServing, FactorTables, FoldIn, export_saved_model

    factor_tables = FactorTables(
        global_mean=float(tables["global_mean"]),
        user_bias=tables["user_bias"],
        movie_bias=tables["movie_bias"],
        user_vectors=tables["user_vectors"],
        movie_vectors=tables["movie_vectors"],
        users=tuple(users),
        movies=tuple(movies),
    )
    export_saved_model(FactorServing(factor_tables, FoldIn(VECTOR_RIDGE, BIAS_RIDGE)), saved_model)


def _convert(
    saved_model: Path, variant: str, users, movies, items: int, scratch: Path
) -> tuple[bytes, tuple[str, ...]]:
    """One variant through the converter's functions: convert, audit, check the signatures, seal."""
    from convert.config import Quantization
    from convert.manifest_embedding import embed_manifest
    from convert.saved_model import import_tensorflow
    from convert.tflite import audit_ops, convert_saved_model_to_flatbuffer, flatbuffer_signatures
    from device_runtime.manifest import Manifest

    source = f"the {variant} conversion of the {items:,}-movie catalog"
    flatbuffer = convert_saved_model_to_flatbuffer(saved_model, contract.FACTOR_SIGNATURES, Quantization(variant))
    audit_ops(flatbuffer, source)
    plain = scratch / f"plain-{variant}.tflite"
    plain.write_bytes(flatbuffer)
    signatures = flatbuffer_signatures(plain, contract.STRINGS, None, None)
    plain.unlink()
    if signatures.keys != contract.FACTOR_SIGNATURES:
        raise BenchmarkError(f"{source} answers {signatures.describe()}, not every factor signature")
    manifest = Manifest.create(
        users=users,
        movies=movies,
        model_name=f"synthetic-catalog-{items}",
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorflow_version=import_tensorflow().__version__,
        quantization=variant,
        signature=signatures.strings,
        signatures=signatures.keys,
        state_dimension=signatures.state_dimension,
        training_metrics={"note": "synthetic tables on a 1/256 grid, no training (python -m benchmarks catalog)"},
    )
    sealed = embed_manifest(flatbuffer, manifest)
    ops = audit_ops(sealed, source)
    return sealed, tuple(f"{op.name} v{op.version}" for op in ops)


def _check(path: Path, tables: dict, user: str, user_row: int, k: int) -> dict:
    """The sealed file's top k through a Ranker (the workstation's interpreter) against numpy's."""
    from device_runtime import Ranker

    ranked = Ranker(path, num_threads=1).rank(user, k=k)
    check = check_top(ranked, reference_top(tables, user_row, k))
    return {
        "top_k_identical": check.identical,
        "top_k_overlap": round(check.overlap, 4),
        "max_abs_score_diff": check.max_abs_diff,
    }


def build_size(settings: BuildSettings, items: int, scratch: Path) -> dict:
    """Builds one catalog size: its tables and every variant. Returns its entry of the folder's index.

    A variant the converter refuses, or whose exact top K differs from numpy's,
    is listed as failed with the reason; the others are still built.
    """
    from convert.errors import ConvertError

    folder = settings.folder / size_folder(items)
    folder.mkdir(exist_ok=True)
    tables = synthetic_tables(items, settings.users, settings.seed)
    _write_tables(tables, folder / TABLES_FILE)
    users = [str(number) for number in range(1, settings.users + 1)]
    movies = [synthetic_title(index) for index in range(items)]
    user_row = users.index(settings.user) + 1
    began = time.perf_counter()
    saved_model = scratch / f"saved_model-{items}"
    _export(tables, users, movies, saved_model)
    logger.info("%s movies: exported every signature in %.0f s", f"{items:,}", time.perf_counter() - began)
    entries = []
    for variant in settings.variants:
        began = time.perf_counter()
        path = folder / f"model-{variant}.tflite"
        entry: dict = {"variant": variant, "file": f"{size_folder(items)}/{path.name}"}
        try:
            content, ops = _convert(saved_model, variant, users, movies, items, scratch)
            write_atomically(path, content)
            entry.update(bytes=len(content), sha256=hashlib.sha256(content).hexdigest(), ops=list(ops))
            del content
            entry.update(_check(path, tables, settings.user, user_row, settings.k))
            if variant in EXACT_VARIANTS and not entry["top_k_identical"]:
                raise BenchmarkError(
                    f"its top {settings.k} for user {settings.user} differs from numpy's over the same tables "
                    "(which it holds exactly); report this with the catalog folder"
                )
            entry["status"] = "ok"
        except (BenchmarkError, DeviceRuntimeError, ConvertError) as error:
            entry.update(status="failed", error=one_line(error))
            path.unlink(missing_ok=True)
            logger.warning("%s movies, %s: not built: %s", f"{items:,}", variant, entry["error"])
        entry["build_seconds"] = round(time.perf_counter() - began, 1)
        logger.info("%s movies, %s: %s in %.0f s", f"{items:,}", variant, entry["status"], entry["build_seconds"])
        entries.append(entry)
        gc.collect()  # a million-movie conversion holds gigabytes until collected
    shutil.rmtree(saved_model)
    return {"items": items, "tables": f"{size_folder(items)}/{TABLES_FILE}", "user_row": user_row, "variants": entries}


def size_folder(items: int) -> str:
    """The sub-folder of one catalog size."""
    return f"items-{items}"


def tensorflow_version() -> Optional[str]:
    """The TensorFlow that builds (imported here)."""
    from convert.saved_model import import_tensorflow

    return import_tensorflow().__version__


def build_catalogs(settings: BuildSettings) -> list[dict]:
    """Builds every size into `settings.folder`; returns the index entries, one per size.

    Raises:
        BenchmarkError: TensorFlow (or the kit's `train`/`convert`) cannot be imported.
    """
    try:
        import train.serving  # noqa: F401  (TensorFlow, with Keras 2 first)
    except ImportError as error:
        raise BenchmarkError(
            f"building catalogs needs TensorFlow and the kit's train and convert packages ({one_line(error)}); "
            "build on a workstation (`--build-only DIR`) and time here with `--models DIR`"
        ) from None
    with tempfile.TemporaryDirectory(prefix="catalog-build-") as work:
        return [build_size(settings, items, Path(work)) for items in settings.items]

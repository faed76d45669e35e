"""How the cost of ranking the whole catalog grows: synthetic catalogs up to a million movies.

    python -m benchmarks catalog --items 10000,100000,1000000 --out FILE.json
        [--csv F.csv] [--plot F.png] [--markdown F.md] [--variants none,float16,...] [--k 100]
        [--users 943] [--seed 0] [--user 42] [--backend NAME] [--threads 1] [--runs N] [--min-seconds S]
        [--build-only DIR | --models DIR]

Two halves, so that a board times what a workstation built:
- building (TensorFlow, `benchmarks.catalog_build`): synthetic tables of the
  default architecture's shapes through `train.serving.FactorServing` and the
  converter's functions, one `.tflite` per size and quantization variant,
  written into a models folder with an index (`INDEX_FILE`):

      DIR/catalog.json                       what was built, by whom, with which result
      DIR/items-N/tables.npz                 the float32 tables (numpy's floor and check read them)
      DIR/items-N/model-VARIANT.tflite       one sealed model per variant

- timing (numpy and one interpreter package, `benchmarks.catalog_timing`):
  each model in a fresh process of its own: load time, peak memory, and the
  median latency of `Ranker.rank(user, k=K)` over the whole catalog next to
  numpy's floor on the same tables, in interleaved turns.

`--build-only DIR` builds and stops; `--models DIR` times a folder built
before (on this machine or another); neither builds into a temporary folder
(in a separate process, so the converter's memory is gone before timing) and
times it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from benchmarks.catalog_report import CatalogRecord, CatalogReport
from benchmarks.catalog_timing import TimingJob, child_environment, time_model
from benchmarks.config import DEFAULT_BLOCK, DEFAULT_MIN_SECONDS, DEFAULT_RUNS, DEFAULT_USER
from benchmarks.errors import BenchmarkError, SettingsError
from benchmarks.latency import resolve_backends
from benchmarks.machine import describe_machine
from device_runtime.files import write_atomically

logger = logging.getLogger(__name__)

INDEX_FILE = "catalog.json"
INDEX_KIND = "ranking-kit synthetic catalogs"
INDEX_FORMAT = 1
DEFAULT_ITEMS = (10_000, 100_000, 1_000_000)
DEFAULT_K = 100
DEFAULT_USERS = 943  # MovieLens 100K's users: the default model's user table
DEFAULT_SEED = 0
# Building a million movies (four variants) peaked at 12 GB and took 4 minutes here; a .tflite is at most 2 GB.
MAX_ITEMS = 2_000_000
# Variants the converter offers that `--variants` may name (full-int8 is refused by the converter).
REFUSED_VARIANTS = ("full-int8",)
# What the report repeats of the folder's index.
BUILD_FIELDS = ("created_at", "command", "tensorflow_version", "dimension", "users", "seed")
# `--build-only` exits with this when a file was built but its exact top-k check failed.
EXIT_CHECK_FAILED = 1


def parse_variants(text: str) -> tuple[str, ...]:
    """Parses "none,float16" into ("none", "float16") (checked against a folder or the converter later)."""
    variants = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not variants:
        raise SettingsError("--variants is empty; give e.g. none,float16")
    return variants


@dataclasses.dataclass(frozen=True)
class CatalogSettings:
    """One catalog run, checked on creation.

    Attributes:
        items: catalog sizes; empty with `models` means every size in the folder.
        variants: quantization variants; empty means every one (the converter's, or the folder's).
        k: how many of the best movies each ranking returns.
        users / seed: the synthetic tables (building only).
        user: the user id ranked for (a row of the user table: "1".."users"); None: DEFAULT_USER when
            building, the folder's own (the one its build checked) when timing a folder.
        backend / threads: the interpreter (numpy's BLAS runs on as many threads).
        runs / min_seconds / block: the interleaved timer's stopping rules.
        build_only: build into this folder and stop.
        models: time the models in this folder (built before) instead of building.
    """

    items: tuple[int, ...] = DEFAULT_ITEMS
    variants: tuple[str, ...] = ()
    k: int = DEFAULT_K
    users: int = DEFAULT_USERS
    seed: int = DEFAULT_SEED
    user: Optional[str] = None
    backend: str = "auto"
    threads: int = 1
    runs: int = DEFAULT_RUNS
    min_seconds: float = DEFAULT_MIN_SECONDS
    block: int = DEFAULT_BLOCK
    build_only: Optional[Path] = None
    models: Optional[Path] = None

    def __post_init__(self):
        if self.build_only is not None and self.models is not None:
            raise SettingsError("--build-only builds models and --models times built ones; give one of them")
        if self.models is None and not self.items:
            raise SettingsError("--items is empty; give catalog sizes, e.g. 10000,100000")
        if any(count < 1 for count in self.items):
            raise SettingsError(f"catalog sizes must be at least 1, got {self.items}")
        if self.models is None and max(self.items) > MAX_ITEMS:
            raise SettingsError(
                f"--items {max(self.items):,} is more than {MAX_ITEMS:,} movies: building a million takes about 12 GB "
                "of memory, and a .tflite cannot pass 2 GB"
            )
        if self.k < 1:
            raise SettingsError(f"--k must be at least 1, got {self.k}")
        if self.models is None and self.k > min(self.items):
            raise SettingsError(f"--k {self.k} is more than the smallest catalog ({min(self.items):,} movies)")
        if self.users < 1:
            raise SettingsError(f"--users must be at least 1, got {self.users}")
        if self.models is None and not _is_user(self.building_user, self.users):
            raise SettingsError(f"--user {self.building_user!r} is not one of the synthetic users, 1 to {self.users}")
        for name, value in (("--threads", self.threads), ("--runs", self.runs), ("--block", self.block)):
            if value < 1:
                raise SettingsError(f"{name} must be at least 1, got {value}")
        if not self.min_seconds >= 0:
            raise SettingsError(f"--min-seconds must be 0 or more, got {self.min_seconds}")
        for refused in REFUSED_VARIANTS:
            if refused in self.variants:
                raise SettingsError(f"--variants {refused}: the converter refuses it for these models; leave it out")

    @property
    def building_user(self) -> str:
        return DEFAULT_USER if self.user is None else self.user

    def to_dict(self) -> dict:
        """The report's settings block."""
        data = dataclasses.asdict(self)
        data.update(
            items=list(self.items),
            variants=list(self.variants),
            build_only=None if self.build_only is None else str(self.build_only),
            models=None if self.models is None else str(self.models),
        )
        return data


def _is_user(user: str, users: int) -> bool:
    """True for "1".."users", the synthetic user ids (user "n" is row n of the user table)."""
    return user.isdigit() and 1 <= int(user) <= users


# --- the models folder ------------------------------------------------------------------------


def _converter_variants() -> tuple[str, ...]:
    from convert.config import Quantization  # TensorFlow-free; only a building run asks

    return tuple(mode.value for mode in Quantization if mode.value not in REFUSED_VARIANTS)


def build(settings: CatalogSettings, folder: Path, command: str) -> dict:
    """Builds the models into `folder` (needs TensorFlow) and writes its index; returns the index.

    Raises:
        SettingsError: the folder cannot be made, or an unknown variant.
        BenchmarkError: TensorFlow or the kit's train/convert packages are missing.
    """
    from benchmarks.catalog_build import DIMENSION, BuildSettings, build_catalogs, tensorflow_version

    offered = _converter_variants()
    unknown = [variant for variant in settings.variants if variant not in offered]
    if unknown:
        raise SettingsError(f"--variants {', '.join(unknown)} unknown; the converter offers {', '.join(offered)}")
    if not folder.parent.is_dir():
        raise SettingsError(f"the folder of --build-only {folder} does not exist ({folder.parent}); create it first")
    if folder.exists() and not folder.is_dir():
        raise SettingsError(f"--build-only {folder} is a file; give a folder")
    folder.mkdir(exist_ok=True)
    build_settings = BuildSettings(
        folder=folder,
        items=tuple(sorted(settings.items)),
        variants=settings.variants or offered,
        users=settings.users,
        seed=settings.seed,
        user=settings.building_user,
        k=settings.k,
    )
    began = time.perf_counter()
    sizes = build_catalogs(build_settings)
    index = {
        "kind": INDEX_KIND,
        "format_version": INDEX_FORMAT,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "tensorflow_version": tensorflow_version(),
        "dimension": DIMENSION,
        "users": settings.users,
        "seed": settings.seed,
        "user": settings.building_user,
        "k": settings.k,
        "seconds": round(time.perf_counter() - began, 1),
        "sizes": sizes,
    }
    write_atomically(folder / INDEX_FILE, (json.dumps(index, indent=2) + "\n").encode("utf-8"))
    return index


def read_index(folder: Path) -> dict:
    """Reads a models folder's index.

    Raises:
        SettingsError: the folder or its index is missing or unreadable.
    """
    if not folder.is_dir():
        raise SettingsError(f"--models {folder} is not a folder; build one with --build-only {folder}")
    path = folder / INDEX_FILE
    if not path.is_file():
        raise SettingsError(
            f"--models {folder} holds no {INDEX_FILE}, so it was not written by `python -m benchmarks catalog "
            "--build-only`; build it with that"
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        if index.get("kind") != INDEX_KIND or index.get("format_version") != INDEX_FORMAT:
            raise ValueError(f"kind {index.get('kind')!r}, format {index.get('format_version')!r}")
        int(index["users"])
        for size in index["sizes"]:
            int(size["items"]), str(size["tables"])
            for entry in size["variants"]:
                str(entry["variant"]), str(entry["file"]), str(entry["status"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SettingsError(f"{path} is not a readable catalog index ({error}); build the folder again") from None
    return index


def select(index: dict, settings: CatalogSettings, folder: Path) -> list[tuple[dict, dict]]:
    """(size, variant entry) pairs to time, in size order, as --items and --variants ask.

    Raises:
        SettingsError: a requested size or variant is not in the folder.
    """
    sizes = {int(size["items"]): size for size in index["sizes"]}
    wanted = settings.items if settings.items else tuple(sizes)
    missing = [f"{count:,}" for count in wanted if count not in sizes]
    if missing:
        built = ", ".join(f"{count:,}" for count in sorted(sizes)) or "none"
        raise SettingsError(f"{folder} holds no catalog of {', '.join(missing)} movies (it holds {built})")
    pairs = []
    for count in sorted(wanted):
        entries = sizes[count]["variants"]
        if settings.variants:
            found = {entry["variant"] for entry in entries}
            absent = [variant for variant in settings.variants if variant not in found]
            if absent:
                raise SettingsError(
                    f"{folder} holds no {', '.join(absent)} model of {count:,} movies (it holds {', '.join(found)})"
                )
            entries = [entry for entry in entries if entry["variant"] in settings.variants]
        pairs += [(sizes[count], entry) for entry in entries]
    return pairs


# --- timing ---------------------------------------------------------------------------------------


def time_folder(settings: CatalogSettings, folder: Path, index: dict, command: str) -> CatalogReport:
    """Times every selected model of a folder, each in a process of its own."""
    created_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    backend = resolve_backends([settings.backend])[0]
    pairs = select(index, settings, folder)
    users = int(index["users"])
    user = settings.user if settings.user is not None else str(index.get("user", DEFAULT_USER))
    if not _is_user(user, users):
        raise SettingsError(f"--user {user!r} is not one of the synthetic users of {folder}, 1 to {users}")
    k = settings.k
    smallest = min(int(size["items"]) for size, _ in pairs)
    if k > smallest:
        raise SettingsError(f"--k {k} is more than the smallest catalog timed ({smallest:,} movies)")
    machine = describe_machine({})  # before anything runs, so the load average is other people's
    records, notes = [], []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="catalog-timing-") as scratch:
        for number, (size, entry) in enumerate(pairs, 1):
            items, variant = int(size["items"]), entry["variant"]
            logger.info("timing %d/%d: %s movies, %s", number, len(pairs), f"{items:,}", variant)
            if entry["status"] != "ok":
                notes.append(f"{items:,} movies, {variant}: not built ({entry.get('error', 'failed')})")
                records.append(CatalogRecord.failed(items, variant, entry, "not built: " + entry.get("error", "")))
                continue
            job = TimingJob(
                model=str(folder / entry["file"]),
                tables=str(folder / size["tables"]),
                user=user,
                user_row=int(user),  # user "n" is row n (row 0: unknown users)
                k=k,
                backend=backend,
                threads=settings.threads,
                runs=settings.runs,
                min_seconds=settings.min_seconds,
                block=settings.block,
            )
            result = time_model(job, Path(scratch))
            record = CatalogRecord.from_result(items, variant, entry, result)
            if not record.ok:
                notes.append(f"{items:,} movies, {variant}: {record.error}")
            records.append(record)
    backends = {r.backend: r.backend_version for r in records if r.ok and r.backend and r.backend_version}
    return CatalogReport(
        created_at=created_at,
        command=command,
        machine=dataclasses.replace(machine, backends=backends),
        settings=settings,
        build={key: index.get(key) for key in BUILD_FIELDS},
        folder=str(folder),
        user=user,
        k=k,
        seconds=time.perf_counter() - began,
        records=tuple(records),
        warnings=tuple(notes),
    )


def build_in_child(settings: CatalogSettings, folder: Path, quiet: bool) -> None:
    """Runs `--build-only folder` in a separate Python process (its converter memory ends with it).

    Its progress lines pass through to stderr (unless quiet).

    Raises:
        BenchmarkError: the build failed (its one-line reason is repeated).
    """
    command = [
        sys.executable, "-m", "benchmarks", "catalog", "--build-only", str(folder),
        "--items", ",".join(str(count) for count in settings.items), "--k", str(settings.k),
        "--users", str(settings.users), "--seed", str(settings.seed), "--user", settings.building_user,
    ]
    if settings.variants:
        command += ["--variants", ",".join(settings.variants)]
    if quiet:
        command.append("-q")
    environment = child_environment(1)
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    last = "no output"
    with subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as process:
        for line in process.stderr:
            if line.strip():
                last = line.strip()
            if not quiet and line.startswith("benchmarks."):
                sys.stderr.write(line)
    if process.returncode not in (0, EXIT_CHECK_FAILED):  # a failed check is in the index, and reported
        raise BenchmarkError(f"building failed: {last.removeprefix('error: ')}")


def run_catalog(settings: CatalogSettings, command: str, quiet: bool = False) -> CatalogReport:
    """Builds (unless --models) and times; see the module's docstring.

    Raises:
        SettingsError, BenchmarkError: as `build`, `read_index` and `select`.
    """
    if settings.models is not None:
        return time_folder(settings, settings.models, read_index(settings.models), command)
    resolve_backends([settings.backend])  # before a long build
    with tempfile.TemporaryDirectory(prefix="catalog-models-") as work:
        folder = Path(work) / "models"
        build_in_child(settings, folder, quiet)
        return time_folder(settings, folder, read_index(folder), command)


def exact_check_failures(index: dict) -> list[str]:
    """The built variants whose exact top-k check failed, as "N movies, VARIANT: reason"."""
    return [
        f"{int(size['items']):,} movies, {entry['variant']}: {entry.get('error')}"
        for size in index["sizes"]
        for entry in size["variants"]
        if entry["status"] != "ok" and entry.get("top_k_identical") is False
    ]


def summarize_build(index: dict) -> list[str]:
    """One line per built file, for the command line."""
    lines = []
    for size in index["sizes"]:
        for entry in size["variants"]:
            what = f"{int(size['items']):>9,} movies  {entry['variant']:<17}"
            if entry["status"] == "ok":
                lines.append(
                    f"{what} {entry['bytes'] / 2**20:8.1f} MB  top-{index['k']} "
                    f"{'= numpy' if entry['top_k_identical'] else 'overlap ' + format(entry['top_k_overlap'], '.2f')}"
                    f"  ({entry['build_seconds']:.0f} s)"
                )
            else:
                lines.append(f"{what} not built: {entry.get('error')}")
    return lines



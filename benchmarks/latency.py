"""The latency harness: plan the configurations, load them, time them interleaved.

A configuration is one model x backend x threads x method x candidate count,
each with its own interpreter (so each keeps its tensors allocated for its own
batch size). Loading, the first inference and the warm-up happen one
configuration after the other and are reported apart. Then every configuration
is timed in turn, A B C A B C ..., a block of calls per turn after one untimed
re-warm call, until each has `runs` samples and the rounds have lasted
`min_seconds`, so a slow drift of a shared or throttling machine reaches every
configuration alike. Garbage collection is off while timing.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from benchmarks import machine as machine_info
from benchmarks.config import (
    ALL_CANDIDATES,
    CATALOG_METHODS,
    INTERPRETER_METHODS,
    LOOP_METHODS,
    PERSONALIZED_METHODS,
    LatencySettings,
    Method,
)
from benchmarks.errors import BenchmarkError, SettingsError
from benchmarks.report import STATUS_FAILED, STATUS_OK, LatencyReport, Record, finite_or_none
from benchmarks.stats import MIN_RUNS_FOR_STABLE_P99, summarize
from benchmarks.subjects import (
    SAVED_MODEL_BACKEND,
    Loaded,
    SavedModelHandle,
    benchmark_history,
    load_interpreter,
    load_ranker,
    load_saved_model,
    open_saved_model,
    tensorflow_installed,
)
from device_runtime import contract
from device_runtime.backends import AUTO_ORDER, Backend, import_backend, parse_backend
from device_runtime.errors import DeviceRuntimeError, one_line
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.manifest import read_manifest
from device_runtime.signature import SIGNATURE_KEY

logger = logging.getLogger(__name__)

# The LiteRT docs call ai_edge_litert "litert"; accept both spellings.
SAVED_MODEL_DIR = "saved_model"  # train's export layout: DIR/saved_model beside DIR/model.tflite
PARITY_SUFFIX = ".parity.json"
# A safety stop for --min-seconds with very fast configurations.
MAX_ROUNDS = 1_000_000
# Above this 1-minute load average per usable core the report says the machine was busy.
BUSY_LOAD_PER_CORE = 0.5

Clock = Callable[[], int]
# Methods timed through a Ranker (the others drive a bare interpreter or TensorFlow).
RANKER_METHODS = tuple(m for m in Method if m not in INTERPRETER_METHODS and m is not Method.SAVED_MODEL)


@dataclasses.dataclass(frozen=True)
class ModelUnderTest:
    """A .tflite file and what the benchmark knows about it before loading it.

    Attributes:
        path: the file.
        size_bytes: its size.
        quantization: from the converter's manifest, when embedded.
        parity_rmse: the .tflite's test RMSE from MODEL.parity.json, when present.
        signature_key / user_input / item_input: the signature to drive.
        pool: the titles candidate lists are taken from (first N, or all).
        saved_model: a SavedModel found for it (beside it, or named in its parity report).
        signatures: the contract signatures its manifest lists (the strings one alone without a manifest).
        catalog: True when `pool` is the model's own movie vocabulary in row order
            (the whole-catalog methods need it).
        user_row: the --user's row in the model's user vocabulary (0 = unknown or no vocabulary).
    """

    path: Path
    size_bytes: int
    quantization: Optional[str]
    parity_rmse: Optional[float]
    signature_key: str
    user_input: Optional[str]
    item_input: Optional[str]
    pool: tuple[str, ...]
    saved_model: Optional[Path]
    signatures: tuple[str, ...] = (contract.STRINGS,)
    catalog: bool = False
    user_row: int = contract.OOV_ROW


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One thing timed: a model (or its SavedModel) run one way on one candidate list."""

    model: ModelUnderTest
    backend: str
    threads: int
    method: Method
    candidates: int
    candidates_spec: str

    @property
    def label(self) -> str:
        return f"{_source(self).name} {self.backend} {self.threads}thr {self.method.value} {self.candidates}"


def _source(configuration: Configuration) -> Path:
    """The file (or SavedModel folder) a configuration runs."""
    if configuration.method is Method.SAVED_MODEL:
        return configuration.model.saved_model
    return configuration.model.path


@dataclasses.dataclass
class _Outcome:
    """What loading and priming one configuration gave (mutable while the run goes on)."""

    configuration: Configuration
    loaded: Optional[Loaded] = None
    error: Optional[str] = None
    first_ns: Optional[int] = None
    warmup_ns: Sequence[int] = ()
    rss_delta: Optional[int] = None
    peak_rss: Optional[int] = None
    samples: list = dataclasses.field(default_factory=list)
    scores: Optional[np.ndarray] = None


# --- inputs --------------------------------------------------------------------


def read_candidates_file(path: Path) -> tuple[str, ...]:
    """Reads one title per line (UTF-8); blank lines are skipped.

    Raises:
        SettingsError: unreadable, not UTF-8, or no titles.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"candidates file {path} is not UTF-8 text; save it as UTF-8, one title per line") from None
    except OSError as error:
        raise SettingsError(f"cannot read candidates file {path}: {error.strerror or error}") from None
    titles = tuple(line.rstrip("\r") for line in text.split("\n") if line.strip())
    if not titles:
        raise SettingsError(f"candidates file {path} holds no titles; write one title per line")
    return titles


def read_parity_rmse(model: Path) -> tuple[Optional[float], Optional[Path]]:
    """The .tflite's test RMSE and SavedModel path from the converter's MODEL.parity.json.

    Looks for `model.parity.json` and `model.tflite.parity.json` beside the
    model. Anything missing or malformed gives None: the report stays usable
    without the converter's files.

    Returns:
        (parity["rmse_tflite"] or None, the "saved_model" folder it names if that exists, else None).
    """
    for candidate in (model.with_suffix(PARITY_SUFFIX), model.with_name(model.name + PARITY_SUFFIX)):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        parity = data.get("parity")
        rmse = parity.get("rmse_tflite") if isinstance(parity, dict) else None
        rmse = finite_or_none(rmse) if isinstance(rmse, (int, float)) and not isinstance(rmse, bool) else None
        saved = data.get("saved_model")
        saved_path = Path(saved) if isinstance(saved, str) and (Path(saved) / "saved_model.pb").is_file() else None
        return rmse, saved_path
    return None, None


def find_saved_model(model: Path, named_in_parity: Optional[Path]) -> Optional[Path]:
    """The SavedModel that a .tflite was converted from, if it can be found.

    Looked for, in order: `saved_model/` in the model's folder (train's export
    layout), then the folder named in MODEL.parity.json.
    """
    beside = model.parent / SAVED_MODEL_DIR
    if (beside / "saved_model.pb").is_file():
        return beside
    return named_in_parity


def describe_model(path: Path, settings: LatencySettings, titles_from_file: Optional[tuple[str, ...]]) -> ModelUnderTest:
    """Reads what the benchmark needs from a .tflite without loading an interpreter.

    Raises:
        SettingsError: the model has no vocabulary and no --candidates-file was given.
        DeviceRuntimeError: the file is not a readable TFLite model.
    """
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise SettingsError(f"cannot read model {path}: {error.strerror or error}") from None
    manifest = read_manifest(read_flatbuffer(content, source=str(path)))
    if titles_from_file is not None:
        pool = titles_from_file
    elif manifest is not None and manifest.movies:
        pool = manifest.movies
    else:
        raise SettingsError(
            f"{path} carries no movie vocabulary (no manifest from `python -m convert`), so there is nothing to "
            "take candidates from; pass --candidates-file FILE with one title per line"
        )
    signature = manifest.signature if manifest is not None else None
    rmse, saved_in_parity = read_parity_rmse(path)
    users = manifest.users if manifest is not None else None
    user_row = users.index(settings.user) + 1 if users and settings.user in users else contract.OOV_ROW
    return ModelUnderTest(
        path=path,
        size_bytes=len(content),
        quantization=manifest.quantization if manifest is not None else None,
        parity_rmse=rmse,
        signature_key=signature.signature_key if signature else SIGNATURE_KEY,
        user_input=settings.user_input or (signature.user_input if signature else None),
        item_input=settings.item_input or (signature.item_input if signature else None),
        pool=tuple(pool),
        saved_model=find_saved_model(path, saved_in_parity),
        signatures=manifest.signatures if manifest is not None else (contract.STRINGS,),
        catalog=titles_from_file is None,
        user_row=user_row,
    )


def installed_backends() -> list[str]:
    """The interpreter packages that are installed, in the runtime's AUTO order (none imported)."""
    return [backend.value for backend in AUTO_ORDER if importlib.util.find_spec(backend.value) is not None]


def resolve_backends(requested: Sequence[str]) -> list[str]:
    """Checks the requested backends; none requested means every installed one.

    Raises:
        SettingsError: an unknown backend, one that is not installed, or none installed.
    """
    installed = installed_backends()
    if not requested:
        if not installed:
            raise SettingsError(
                'no interpreter package is installed; pip install ".[device]" (LiteRT) or tflite-runtime "numpy<2"'
            )
        return installed
    backends: list[str] = []
    for name in requested:
        try:
            backend = parse_backend(name)
        except DeviceRuntimeError as error:
            raise SettingsError(f"--backend: {error}") from None
        if backend is not Backend.AUTO and backend.value not in installed:
            raise SettingsError(
                f"--backend {backend.value} is not installed here (installed: {', '.join(installed) or 'none'})"
            )
        if backend.value not in backends:
            backends.append(backend.value)
    return backends


def candidate_lists(model: ModelUnderTest, counts: Sequence[Union[int, str]]) -> list[tuple[int, str]]:
    """(count, spec) per requested count: the first N titles, or all of them.

    Raises:
        SettingsError: a count larger than the titles available.
    """
    lists: list[tuple[int, str]] = []
    for spec in counts:
        count = len(model.pool) if spec == ALL_CANDIDATES else int(spec)
        if count > len(model.pool):
            raise SettingsError(
                f"--candidates {spec} is more than the {len(model.pool)} titles available for {model.path.name}; "
                "use a smaller count or 'all'"
            )
        if count not in [existing for existing, _ in lists]:
            lists.append((count, str(spec)))
    return lists


def _skipped_reason(method: Method, model: ModelUnderTest, has_all: bool) -> Optional[str]:
    """Why a method cannot be timed on a model (None when it can)."""
    if method in CATALOG_METHODS and not model.catalog:
        return "ranks the model's own catalog, and --candidates-file replaces it"
    if method is Method.LOOP and len(model.signatures) > 1:
        return "sets the tensors of the first subgraph, which is not the strings signature in a model with several"
    if method is Method.INVOKE_TOP_K and contract.TOP_K not in model.signatures:
        return f"needs the {contract.TOP_K} signature, which the model lacks"
    if method in PERSONALIZED_METHODS and contract.USER_STATE not in model.signatures:
        return f"needs the personalized signatures ({contract.USER_STATE}), which the model lacks"
    if method in CATALOG_METHODS and not has_all:
        return "ranks the whole catalog: add all to --candidates"
    return None


def plan(
    settings: LatencySettings, models: Sequence[ModelUnderTest], backends: Sequence[str], notes: list[str]
) -> list[Configuration]:
    """Every interpreter configuration to time, in load order: model, backend, threads, method, candidates.

    The loops stop at --loop-max-candidates; the whole-catalog methods run at
    the "all" count only, on models that have what they call (a note says
    what was left out and why).
    """
    configurations = []
    skipped_loops = False
    for model in models:
        lists = candidate_lists(model, settings.candidates)
        has_all = any(spec == ALL_CANDIDATES for _, spec in lists)
        methods = []
        for method in (m for m in settings.methods if m is not Method.SAVED_MODEL):
            reason = _skipped_reason(method, model, has_all)
            if reason is None:
                methods.append(method)
            else:
                notes.append(f"{method.value} was not timed on {model.path.name}: it {reason}")
        for backend in backends:
            for threads in settings.threads:
                for method in methods:
                    for count, spec in lists:
                        if method in CATALOG_METHODS and spec != ALL_CANDIDATES:
                            continue
                        if method in LOOP_METHODS and count > settings.loop_max_candidates:
                            skipped_loops = True
                            continue
                        configurations.append(Configuration(model, backend, threads, method, count, spec))
    if skipped_loops:
        notes.append(
            f"the per-candidate loops ran only up to {settings.loop_max_candidates} candidates "
            "(raise --loop-max-candidates for more)"
        )
    return configurations


def plan_saved_model(
    settings: LatencySettings, models: Sequence[ModelUnderTest], notes: list[str]
) -> list[Configuration]:
    """The SavedModel reference configurations (TensorFlow only), one per candidate count.

    The reference belongs to the first model that has a SavedModel (or to the
    first model when --saved-model is given); its records name that SavedModel.
    """
    if not settings.use_saved_model:
        return []
    explicit = settings.saved_model is not None
    owner = models[0] if explicit else next((m for m in models if m.saved_model is not None), None)
    if owner is None:
        notes.append("no SavedModel given or found beside the model; the TensorFlow reference was not run")
        return []
    if not tensorflow_installed():
        if explicit:
            raise SettingsError("--saved-model needs TensorFlow, which is not installed here; drop --saved-model")
        notes.append("TensorFlow is not installed, so the SavedModel reference was not run")
        return []
    folder = Path(settings.saved_model) if explicit else owner.saved_model
    owner = dataclasses.replace(owner, saved_model=folder)
    return [
        Configuration(owner, SAVED_MODEL_BACKEND, min(settings.threads), Method.SAVED_MODEL, count, spec)
        for count, spec in candidate_lists(owner, settings.candidates)
    ]


# --- timing --------------------------------------------------------------------


def measure_interleaved(
    calls: Sequence[Callable[[], object]],
    runs: int,
    min_seconds: float,
    block: int = 1,
    rewarm: bool = True,
    clock: Clock = time.perf_counter_ns,
) -> tuple[list[list[int]], int, int]:
    """Times the calls in interleaved rounds until both stopping rules hold.

    Each round gives every call its turn in the same order (A B C, A B C, ...);
    a turn is one untimed re-warm call (unless `rewarm` is False) and then
    `block` timed calls. The re-warm call pays for the caches the previous
    configuration evicted, so the timed calls show the latency of repeated
    calls (as LiteRT's benchmark_model does) while slow drift of the machine
    still reaches every configuration alike.

    Args:
        calls: one callable per configuration.
        runs: minimum timed samples per call.
        min_seconds: minimum wall time of all rounds together.
        block: timed calls per turn.
        rewarm: run one untimed call at the start of every turn.
        clock: nanosecond clock (injectable for tests).

    Returns:
        (samples per call in nanoseconds, rounds run, total nanoseconds).
    """
    samples: list[list[int]] = [[] for _ in calls]
    min_ns = int(min_seconds * 1e9)
    start = clock()
    rounds = 0
    while rounds < MAX_ROUNDS and (rounds * block < runs or clock() - start < min_ns):
        for call, call_samples in zip(calls, samples):
            if rewarm:
                call()
            for _ in range(block):
                begin = clock()
                call()
                call_samples.append(clock() - begin)
        rounds += 1
    return samples, rounds, clock() - start


def _prime(outcome: _Outcome, warmup: int) -> None:
    """The first inference and the warm-up runs of one loaded configuration."""
    subject = outcome.loaded.subject
    begin = time.perf_counter_ns()
    subject.run()
    outcome.first_ns = time.perf_counter_ns() - begin
    warmup_ns = []
    for _ in range(warmup):
        begin = time.perf_counter_ns()
        subject.run()
        warmup_ns.append(time.perf_counter_ns() - begin)
    outcome.warmup_ns = warmup_ns


def _load(
    configuration: Configuration,
    rank_choice: Optional[Loaded],
    saved_models: dict[Path, SavedModelHandle],
    settings: LatencySettings,
) -> Loaded:
    model, titles = configuration.model, configuration.model.pool[: configuration.candidates]
    method = configuration.method
    if method in RANKER_METHODS:
        history = benchmark_history(model.pool) if method in PERSONALIZED_METHODS else ()
        return load_ranker(
            method, model.path, configuration.backend, configuration.threads, settings.user, titles, history,
            model.user_input, model.item_input,
        )
    if configuration.method in INTERPRETER_METHODS:
        # Same backend and delegate decision as the Ranker made (open_interpreter
        # would reach the same one, but a logged fallback should not happen twice).
        backend = rank_choice.backend if rank_choice else configuration.backend
        delegate = rank_choice.delegate if rank_choice else "default"
        return load_interpreter(
            method, model.path, backend, delegate, configuration.threads, settings.user, titles,
            model.signature_key, model.user_input, model.item_input, model.user_row,
        )
    if model.saved_model not in saved_models:
        saved_models[model.saved_model] = open_saved_model(
            model.saved_model, configuration.threads, model.signature_key, model.user_input, model.item_input
        )
    return load_saved_model(saved_models[model.saved_model], settings.user, titles)


def _group(configuration: Configuration) -> tuple:
    return (configuration.model.path, configuration.backend, configuration.threads)


def _load_all(configurations: Sequence[Configuration], settings: LatencySettings, notes: list[str]) -> list[_Outcome]:
    outcomes = []
    rank_choices: dict[tuple, Loaded] = {}
    saved_models: dict[Path, SavedModelHandle] = {}
    for index, configuration in enumerate(configurations, 1):
        logger.info("loading %d/%d: %s", index, len(configurations), configuration.label)
        outcome = _Outcome(configuration)
        rss_before = machine_info.current_rss_bytes()
        try:
            outcome.loaded = _load(configuration, rank_choices.get(_group(configuration)), saved_models, settings)
            _prime(outcome, settings.warmup)
            outcome.scores = outcome.loaded.subject.scores()
        except (DeviceRuntimeError, BenchmarkError) as error:
            outcome.loaded = None
            outcome.error = one_line(error)
            # said once per model and backend: the reason is the same for all its configurations
            failure = f"{_source(configuration).name} on {configuration.backend} failed: {outcome.error}"
            notes.append(failure)
            logger.warning("%s", failure)
        rss_after = machine_info.current_rss_bytes()
        if rss_before is not None and rss_after is not None:
            outcome.rss_delta = rss_after - rss_before
        outcome.peak_rss = machine_info.peak_rss_bytes()
        if outcome.loaded is not None and configuration.method in RANKER_METHODS:
            rank_choices.setdefault(_group(configuration), outcome.loaded)
            if outcome.loaded.delegate_fallback:
                notes.append(
                    f"{configuration.model.path.name} on {outcome.loaded.backend}: default delegate off "
                    f"({outcome.loaded.delegate_fallback})"
                )
        outcomes.append(outcome)
    return outcomes


# --- records -------------------------------------------------------------------


def _rank_reference(outcome: _Outcome, outcomes: Sequence[_Outcome]) -> Optional[_Outcome]:
    """The rank() configuration a loop or SavedModel configuration is compared with."""
    configuration = outcome.configuration
    if configuration.method is Method.RANK:
        return None
    for other in outcomes:
        c = other.configuration
        if (
            c.method is Method.RANK
            and other.loaded is not None
            and c.model.path == configuration.model.path
            and c.candidates == configuration.candidates
            and c.threads == configuration.threads
            and (configuration.method is Method.SAVED_MODEL or c.backend == configuration.backend)
        ):
            return other
    return None


def _record(outcome: _Outcome, outcomes: Sequence[_Outcome]) -> Record:
    configuration, loaded = outcome.configuration, outcome.loaded
    model = configuration.model
    saved_model = configuration.method is Method.SAVED_MODEL
    source = _source(configuration)
    base = dict(
        model=str(source),
        model_file=source.name,
        model_size_bytes=_folder_size(source) if saved_model else model.size_bytes,
        quantization=None if saved_model else model.quantization,
        parity_rmse=None if saved_model else model.parity_rmse,
        backend=loaded.backend if loaded else configuration.backend,
        backend_version=loaded.backend_version if loaded else None,
        delegate=loaded.delegate if loaded else None,
        threads=loaded.threads if loaded else configuration.threads,
        method=configuration.method.value,
        candidates=configuration.candidates,
        candidates_spec=configuration.candidates_spec,
        rss_delta_bytes=outcome.rss_delta,
        peak_rss_bytes=outcome.peak_rss,
    )
    if loaded is None:
        return Record(status=STATUS_FAILED, error=outcome.error, **base)
    summary = summarize(outcome.samples)
    reference = _rank_reference(outcome, outcomes)
    slowdown = diff = None
    if reference is not None and reference.samples:
        reference_median = summarize(reference.samples).median_us
        slowdown = summary.median_us / reference_median if reference_median > 0 else None
        same_user = configuration.method not in PERSONALIZED_METHODS
        if same_user and reference.scores is not None and outcome.scores is not None:
            diff = float(np.max(np.abs(outcome.scores - reference.scores))) if len(outcome.scores) else 0.0
    warmup_us = [ns / 1000 for ns in outcome.warmup_ns]
    return Record(
        status=STATUS_OK,
        init_us=_us(loaded.init_ns / 1000),
        first_inference_us=_us(outcome.first_ns / 1000),
        warmup_runs=len(warmup_us),
        warmup_mean_us=_us(sum(warmup_us) / len(warmup_us)) if warmup_us else None,
        runs=summary.runs,
        min_us=_us(summary.min_us),
        median_us=_us(summary.median_us),
        p90_us=_us(summary.p90_us),
        p99_us=_us(summary.p99_us),
        mean_us=_us(summary.mean_us),
        std_us=_us(summary.std_us),
        p99_stable=summary.p99_stable,
        candidates_per_second=_rounded(summary.candidates_per_second(configuration.candidates), 1),
        slowdown_vs_rank=_rounded(slowdown, 3),
        max_abs_diff_vs_rank=finite_or_none(diff),
        **base,
    )


def _us(value: float) -> float:
    """Microseconds to the clock's nanosecond resolution."""
    return round(value, 3)


def _rounded(value: Optional[float], digits: int) -> Optional[float]:
    value = finite_or_none(value)
    return None if value is None else round(value, digits)


def _folder_size(folder: Path) -> Optional[int]:
    try:
        return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())
    except OSError:
        return None


# --- the run -------------------------------------------------------------------


def run_latency(settings: LatencySettings) -> LatencyReport:
    """Runs a latency benchmark.

    Args:
        settings: what to measure (validated on creation).

    Returns:
        The report with one record per configuration; configurations that could
        not be loaded are records with status "failed" and the reason.

    Raises:
        SettingsError: inputs that make the run impossible (no vocabulary to
            take candidates from, a count above it, a missing backend).
        DeviceRuntimeError: a model file that is not a readable TFLite model.
        BenchmarkError: no configuration could be loaded at all.
    """
    created_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    notes: list[str] = []
    backends = resolve_backends(settings.backends)
    _import_backends(backends)
    titles = read_candidates_file(settings.candidates_file) if settings.candidates_file else None
    models = [describe_model(path, settings, titles) for path in settings.models]
    configurations = plan(settings, models, backends, notes) + plan_saved_model(settings, models, notes)
    if not configurations:
        raise SettingsError(
            "nothing to measure: every candidate count is above --loop-max-candidates; "
            "add rank to --methods or raise --loop-max-candidates"
        )
    machine = machine_info.describe_machine({})  # before loading, so the load average is other people's

    outcomes = _load_all(configurations, settings, notes)
    live = [outcome for outcome in outcomes if outcome.loaded is not None]
    if not live:
        raise BenchmarkError("no configuration could be loaded; see the reasons above")
    machine = dataclasses.replace(machine, backends=_backend_versions(live))
    logger.info(
        "timing %d configurations interleaved (>= %d runs each, >= %g s)", len(live), settings.runs, settings.min_seconds
    )
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection inside a timed call would land on whichever configuration it hit
    try:
        samples, rounds, elapsed_ns = measure_interleaved(
            [outcome.loaded.subject.run for outcome in live],
            settings.runs,
            settings.min_seconds,
            block=settings.block,
            rewarm=not settings.cold,
        )
    finally:
        if gc_was_enabled:
            gc.enable()
    for outcome, outcome_samples in zip(live, samples):
        outcome.samples = outcome_samples
    runs = rounds * settings.block
    if runs < MIN_RUNS_FOR_STABLE_P99:
        notes.append(
            f"only {runs} runs per configuration: p99 needs at least {MIN_RUNS_FOR_STABLE_P99} to be stable "
            "(marked * in the table, p99_stable=false in JSON)"
        )
    notes.extend(_machine_notes(machine))
    records = tuple(_record(outcome, outcomes) for outcome in outcomes)
    return LatencyReport(
        created_at=created_at,
        settings=settings,
        machine=machine,
        rounds=rounds,
        measuring_seconds=elapsed_ns / 1e9,
        records=records,
        warnings=tuple(dict.fromkeys(notes)),  # one per distinct note, in order
    )


def _import_backends(backends: Sequence[str]) -> None:
    """Imports the interpreter packages up front, so no configuration's init time pays for an import."""
    for name in backends:
        backend = parse_backend(name)
        if backend is not Backend.AUTO:
            try:
                import_backend(backend)
            except DeviceRuntimeError as error:  # its configurations will fail with the reason
                logger.debug("cannot import %s: %s", name, error)


def _backend_versions(outcomes: Sequence[_Outcome]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for outcome in outcomes:
        versions.setdefault(outcome.loaded.backend, outcome.loaded.backend_version)
    return versions


def _machine_notes(machine: machine_info.Machine) -> list[str]:
    notes = []
    if machine.emulated:
        notes.append(f"emulated: {machine.emulation_evidence}; these are not the real CPU's latencies")
    cores = machine.cores_usable or machine.cores
    if machine.load_average and cores and machine.load_average[0] > BUSY_LOAD_PER_CORE * cores:
        notes.append(
            f"the machine was busy before the run (1-minute load average {machine.load_average[0]} on {cores} cores); "
            "figures may be slower and noisier than on a quiet machine"
        )
    return notes

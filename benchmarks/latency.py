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
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

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
from benchmarks.models import ModelUnderTest, candidate_lists, describe_model, read_candidates_file
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
from benchmarks.timer import measure_interleaved  # noqa: F401  (its home; re-exported for older callers)

logger = logging.getLogger(__name__)

# Above this 1-minute load average per usable core the report says the machine was busy.
BUSY_LOAD_PER_CORE = 0.5

# Methods timed through a Ranker (the others drive a bare interpreter or TensorFlow).
RANKER_METHODS = tuple(m for m in Method if m not in INTERPRETER_METHODS and m is not Method.SAVED_MODEL)


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


# --- loading -------------------------------------------------------------------


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

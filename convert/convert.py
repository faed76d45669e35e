"""SavedModel -> validated .tflite: convert, audit, embed the manifest, prove parity, try every runtime.

`convert_saved_model` reads top to bottom as the steps it takes. Expected
mistakes are refused before TensorFlow is imported where possible; every check
on the converted file is collected, and the file reaches `output` only if all
of them pass.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from convert import parity
from convert.config import DEFAULT_TOLERANCES, ConversionConfig, Quantization
from convert.errors import (
    ConversionError,
    InputError,
    ModelSignatureError,
    ParityDataError,
    ParityError,
    TargetError,
    ValidationError,
)
from convert.manifest_embedding import embed_manifest
from convert.results import CheckFailure, ConversionResult, ParityFigures
from convert.saved_model import (
    SavedModelScorer,
    find_saved_model,
    import_tensorflow,
    load_saved_model,
    resolve_saved_model_signature,
    vocabularies_from_tables,
)
from convert.runtimes import check_target, parity_interpreter, run_everywhere, runtime_disagreements
from convert.tflite import audit_ops, convert_saved_model_to_flatbuffer, flatbuffer_signature
from device_runtime.errors import DeviceRuntimeError
from device_runtime.files import write_atomically
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime import contract
from device_runtime.manifest import Manifest, read_manifest
from device_runtime.signature import SignatureMapping
from train import artifacts
from train.errors import TrainError

logger = logging.getLogger(__name__)

# The parity data must be the data the model was trained on: at least this
# share of its test pairs must have a user and a movie the model knows.
MIN_PARITY_COVERAGE = 0.95
REJECTED_INFIX = ".rejected"
REPORT_SUFFIX = ".parity.json"


@dataclasses.dataclass(frozen=True)
class _Vocabularies:
    users: list[str]
    movies: list[str]
    source: str


@dataclasses.dataclass(frozen=True)
class _ParityData:
    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray
    source: str


@dataclasses.dataclass(frozen=True)
class _Reference:
    """The SavedModel side of a comparison: the model, its contract, its vocabularies and the data."""

    saved_model_dir: Path
    export_dir: Optional[Path]
    mapping: SignatureMapping
    scorer: SavedModelScorer
    data: _ParityData
    vocabularies: _Vocabularies
    coverage: float


def report_path_for(model_path: Path) -> Path:
    """MODEL.tflite -> MODEL.parity.json."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + REPORT_SUFFIX)


def rejected_path_for(model_path: Path) -> Path:
    """MODEL.tflite -> MODEL.rejected.tflite (where a file that failed validation is kept)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + REJECTED_INFIX + (model_path.suffix or ".tflite"))


def convert_saved_model(saved_model: Path, output: Path, config: Optional[ConversionConfig] = None) -> ConversionResult:
    """Converts a SavedModel to a .tflite and proves it before writing it.

    Steps: find and load the SavedModel; check its signature by name; read the
    vocabularies (export vocab/ folder, else the model's lookup tables, else
    the parity data); load the parity data and check it matches; convert with
    builtin ops only; audit the op table; check the .tflite's signature through
    an interpreter; embed the manifest; run the file on every installed runtime;
    measure parity; check each target. All failed checks are raised together.

    Args:
        saved_model: the SavedModel folder (or a `python -m train` export folder).
        output: where the .tflite goes; MODEL.parity.json is written beside it.
        config: mode, names, tolerances, targets; defaults to float32 on LiteRT.

    Returns:
        What was written and measured.

    Raises:
        InputError: a path or option is wrong (nothing was converted).
        ModelSignatureError: the SavedModel or .tflite signature does not fit the contract.
        ParityDataError: the parity data cannot be loaded or does not match the model.
        UnsupportedOpsError: the model needs Flex or custom ops.
        ConversionError: the converter failed.
        ValidationError (ParityError, TargetError): checks failed; the file is
            kept as MODEL.rejected.tflite with MODEL.rejected.parity.json and
            nothing is written at `output`.
    """
    config = config or ConversionConfig()
    output = check_output_path(Path(output))
    _check_runtime_pythons(config.runtime_pythons)
    reference = _load_reference(Path(saved_model), config)
    saved_model_dir, vocabularies = reference.saved_model_dir, reference.vocabularies

    flatbuffer = convert_saved_model_to_flatbuffer(saved_model_dir, config.signature_key, config.quantization)
    audit_ops(flatbuffer, f"the {config.quantization.value} conversion of {saved_model_dir}")

    with tempfile.TemporaryDirectory(prefix="convert-") as work:
        plain_path = Path(work) / "plain.tflite"
        plain_path.write_bytes(flatbuffer)
        tflite_mapping = flatbuffer_signature(plain_path, config.signature_key, config.user_input, config.item_input)
        _check_same_contract(reference.mapping, tflite_mapping)

        manifest = _manifest(config, reference.export_dir, saved_model_dir, tflite_mapping, vocabularies)
        final = embed_manifest(flatbuffer, manifest)
        ops = audit_ops(final, f"the {config.quantization.value} conversion of {saved_model_dir}")
        _check_manifest_round_trip(final, manifest)
        model_path = Path(work) / "model.tflite"
        model_path.write_bytes(final)

        runtimes = run_everywhere(
            model_path, tflite_mapping, vocabularies.users, vocabularies.movies, reference.scorer, config.runtime_pythons
        )
        figures = _measure(reference, model_path, tflite_mapping, runtimes, config.ranking_users)

    targets = tuple(check_target(target, ops, runtimes) for target in config.targets)
    tolerances = config.effective_tolerances
    parity_failures = parity.failed_checks(figures.to_dict(), tolerances)
    target_failures = runtime_disagreements(runtimes) + [
        CheckFailure(check=f"target.{check.target}", message="; ".join(check.notes) or "failed")
        for check in targets
        if not check.passed
    ]
    failures = tuple(parity_failures + target_failures)
    tflite_path = output if not failures else rejected_path_for(output)
    result = ConversionResult(
        saved_model=saved_model_dir,
        tflite_path=tflite_path,
        report_path=report_path_for(tflite_path),
        accepted=not failures,
        quantization=config.quantization.value,
        size_bytes=len(final),
        manifest_bytes=len(manifest.to_json_bytes()),
        saved_model_bytes=sum(f.stat().st_size for f in saved_model_dir.rglob("*") if f.is_file()),
        ops=ops,
        signature=tflite_mapping,
        vocabulary_source=vocabularies.source,
        users=len(vocabularies.users),
        movies=len(vocabularies.movies),
        tolerances=tolerances.to_dict(),
        parity=figures,
        runtimes=runtimes,
        targets=targets,
        failures=failures,
        created_at=manifest.created_at,
        tensorflow_version=manifest.tensorflow_version,
    )
    _publish(result, final, output)
    if parity_failures and target_failures:
        raise ValidationError(failures, result)
    if failures:
        raise (ParityError if parity_failures else TargetError)(failures, result)
    return result


def check_parity(saved_model: Path, tflite_model: Path, config: Optional[ConversionConfig] = None) -> ParityFigures:
    """Measures an existing .tflite against its SavedModel, without converting.

    The tolerances are `config.tolerances`, else the defaults for the
    quantization recorded in the file's manifest (else `config.quantization`).

    Args:
        saved_model: the SavedModel folder (or export folder) the file came from.
        tflite_model: the .tflite file.
        config: names, parity data, ranking users, tolerances.

    Returns:
        The parity figures (all within the tolerances).

    Raises:
        InputError, ModelSignatureError, ParityDataError: as for `convert_saved_model`.
        ParityError: a figure is out of bounds; all failures are listed.
    """
    config = config or ConversionConfig()
    tflite_model = Path(tflite_model)
    if not tflite_model.is_file():
        raise InputError(f"{tflite_model} does not exist; pass a .tflite written by `python -m convert`")
    reference = _load_reference(Path(saved_model), config)
    tflite_mapping = flatbuffer_signature(tflite_model, config.signature_key, config.user_input, config.item_input)
    _check_same_contract(reference.mapping, tflite_mapping)
    vocabularies = reference.vocabularies
    runtimes = run_everywhere(tflite_model, tflite_mapping, vocabularies.users, vocabularies.movies, reference.scorer, ())
    figures = _measure(reference, tflite_model, tflite_mapping, runtimes, config.ranking_users)

    tolerances = config.tolerances
    if tolerances is None:
        try:
            manifest = read_manifest(read_flatbuffer(tflite_model.read_bytes(), str(tflite_model)))
        except DeviceRuntimeError as error:
            raise InputError(str(error)) from None
        mode = Quantization(manifest.quantization) if manifest else config.quantization
        tolerances = DEFAULT_TOLERANCES[mode]
    failures = parity.failed_checks(figures.to_dict(), tolerances)
    if failures:
        raise ParityError(failures)
    return figures


# --- inputs ------------------------------------------------------------------


def _load_reference(saved_model: Path, config: ConversionConfig) -> _Reference:
    """Finds and loads the SavedModel, checks its signature, reads its vocabularies and the parity data."""
    saved_model_dir = find_saved_model(saved_model)
    export_dir = _export_folder(saved_model_dir)
    loaded = load_saved_model(saved_model_dir)
    mapping = resolve_saved_model_signature(
        loaded, config.signature_key, config.user_input, config.item_input, saved_model_dir
    )
    scorer = SavedModelScorer(loaded, mapping)
    data = load_parity_data(config.parity_data)
    vocabularies = _vocabularies(export_dir, scorer, config.parity_data)
    coverage = _check_coverage(data, vocabularies)
    return _Reference(saved_model_dir, export_dir, mapping, scorer, data, vocabularies, coverage)


def check_output_path(output: Path) -> Path:
    """Refuses an output path that cannot be written, before any work is done.

    Raises:
        InputError: the folder does not exist, or the path is a folder.
    """
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"the folder of --out {output} does not exist ({parent}); create it first or choose another path")
    if output.is_dir():
        raise InputError(f"--out {output} is a folder; give a file path such as {output / 'model.tflite'}")
    return output


def _check_runtime_pythons(pythons: Sequence[str]) -> None:
    for python in pythons:
        path = Path(python)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise InputError(f"--runtime-python {python} is not an executable file; give the path of a python in a venv")


def _export_folder(saved_model_dir: Path) -> Optional[Path]:
    """The `python -m train` export that holds this SavedModel, if it is one."""
    parent = saved_model_dir.parent
    if saved_model_dir.name == artifacts.SAVED_MODEL_DIR and (
        (parent / artifacts.METRICS_FILE).is_file() or (parent / artifacts.USERS_VOCAB).is_file()
    ):
        return parent
    return None


@functools.lru_cache(maxsize=2)  # several conversions in one process share the split
def load_parity_data(source: Optional[str]) -> _ParityData:
    """The test split of `source` (the offline MovieLens 100K copy by default).

    Raises:
        ParityDataError: the source cannot be loaded or split.
    """
    from train.data import load_ratings, split_ratings

    try:
        _, test_rows = split_ratings(load_ratings(source))
    except TrainError as error:
        raise ParityDataError(f"parity data: {error}") from None
    return _ParityData(
        users=np.asarray(test_rows.user_id, dtype=object),
        movies=np.asarray(test_rows.movie_title, dtype=object),
        ratings=np.asarray(test_rows.user_rating, dtype=np.float32),
        source=test_rows.source or str(source),
    )


def _vocabularies(export_dir: Optional[Path], reference: SavedModelScorer, parity_source: Optional[str]) -> _Vocabularies:
    tables = vocabularies_from_tables(reference)
    if export_dir is not None and (export_dir / artifacts.USERS_VOCAB).is_file() and (export_dir / artifacts.MOVIES_VOCAB).is_file():
        users = artifacts.read_vocabulary(export_dir / artifacts.USERS_VOCAB)
        movies = artifacts.read_vocabulary(export_dir / artifacts.MOVIES_VOCAB)
        if tables is not None and (set(tables[0]) != set(users) or set(tables[1]) != set(movies)):
            raise InputError(
                f"{export_dir / artifacts.VOCAB_DIR} does not match the SavedModel's lookup tables "
                f"({len(users)}/{len(movies)} ids on file, {len(tables[0])}/{len(tables[1])} in the model); "
                "the export folder mixes two training runs: train again"
            )
        return _Vocabularies(users, movies, f"export folder {artifacts.VOCAB_DIR}/")
    if tables is not None:
        return _Vocabularies(tables[0], tables[1], "SavedModel lookup tables")
    from train.data import load_ratings

    logger.warning("no vocab/ folder and no readable lookup tables: taking the vocabularies from the parity data")
    try:
        ratings = load_ratings(parity_source)
    except TrainError as error:
        raise ParityDataError(f"parity data: {error}") from None
    return _Vocabularies(
        [str(u) for u in ratings.unique_users()], [str(m) for m in ratings.unique_movies()], "parity data (all ids in the ratings)"
    )


def _check_coverage(data: _ParityData, vocabularies: _Vocabularies) -> float:
    known = np.isin(data.users, np.asarray(vocabularies.users, dtype=object)) & np.isin(
        data.movies, np.asarray(vocabularies.movies, dtype=object)
    )
    coverage = float(known.mean())
    if coverage < MIN_PARITY_COVERAGE:
        raise ParityDataError(
            f"the parity data ({data.source}) does not match the model's vocabulary: only {coverage:.1%} of its "
            f"{len(known):,} test pairs have a user and a movie the model knows (need {MIN_PARITY_COVERAGE:.0%}); "
            "pass the data the model was trained on with --parity-data"
        )
    return coverage


def _check_same_contract(saved_model: SignatureMapping, tflite: SignatureMapping) -> None:
    if (saved_model.user_input, saved_model.item_input, saved_model.output) != (
        tflite.user_input,
        tflite.item_input,
        tflite.output,
    ):
        raise ModelSignatureError(
            f"the converted .tflite's signature ({tflite.user_input}, {tflite.item_input}) -> {tflite.output} "
            f"differs from the SavedModel's ({saved_model.user_input}, {saved_model.item_input}) -> {saved_model.output}"
        )


# --- manifest ----------------------------------------------------------------


def _manifest(
    config: ConversionConfig,
    export_dir: Optional[Path],
    saved_model_dir: Path,
    mapping: SignatureMapping,
    vocabularies: _Vocabularies,
) -> Manifest:
    tf = import_tensorflow()
    metrics: dict[str, Any] = {}
    if export_dir is not None and (export_dir / artifacts.METRICS_FILE).is_file():
        try:
            metrics = json.loads((export_dir / artifacts.METRICS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(f"{export_dir / artifacts.METRICS_FILE} is not readable JSON ({error}); train again") from None
    name = config.model_name or (
        f"movielens-ranking-{metrics['preset']}" if metrics.get("preset") else (export_dir or saved_model_dir).name
    )
    return Manifest.create(
        users=vocabularies.users,
        movies=vocabularies.movies,
        embed_vocabularies=config.embed_vocabularies,
        model_name=name,
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorflow_version=tf.__version__,
        quantization=config.quantization.value,
        signature=mapping,
        signatures=(contract.STRINGS,),
        state_dimension=None,
        training_metrics=metrics,
    )


def _check_manifest_round_trip(flatbuffer: bytes, manifest: Manifest) -> None:
    read_back = read_manifest(read_flatbuffer(flatbuffer, "the converted model"))
    if read_back is None or read_back != dataclasses.replace(manifest, file_sha256=read_back.file_sha256):
        raise ConversionError("the manifest read back from the .tflite differs from the one embedded; report this bug")


# --- parity ------------------------------------------------------------------


def _measure(reference: _Reference, model_path: Path, mapping: SignatureMapping, runtimes, ranking_users: int) -> ParityFigures:
    candidate, interpreter = parity_interpreter(model_path, mapping, runtimes)
    return measure_parity(
        reference.scorer, candidate, reference.data, reference.vocabularies, ranking_users, reference.coverage, interpreter
    )


def measure_parity(
    reference,
    candidate,
    data: _ParityData,
    vocabularies: _Vocabularies,
    ranking_users: int,
    coverage: float,
    interpreter: str,
) -> ParityFigures:
    """Scores the test pairs, then `ranking_users` users against every movie, with both scorers.

    The ranked users are spread evenly over the sorted known users of the test split.
    """
    pair = parity.pair_figures(reference(data.users, data.movies), candidate(data.users, data.movies), data.ratings)

    known_users = np.asarray(sorted(set(data.users) & set(vocabularies.users)), dtype=object)
    chosen = known_users[np.unique(np.linspace(0, len(known_users) - 1, min(ranking_users, len(known_users))).round().astype(int))]
    movies = np.asarray(vocabularies.movies, dtype=object)
    reference_scores = reference(np.repeat(chosen, len(movies)), np.tile(movies, len(chosen))).reshape(len(chosen), len(movies))
    candidate_scores = np.stack([candidate(np.full(len(movies), user, dtype=object), movies) for user in chosen])
    ranking = parity.ranking_figures(reference_scores, candidate_scores)
    return ParityFigures(coverage=coverage, interpreter=interpreter, **pair, **ranking)


# --- files -------------------------------------------------------------------


def _publish(result: ConversionResult, flatbuffer: bytes, output: Path) -> None:
    """Writes the report, then the model: at `output` if accepted, else under the rejected name."""
    # The report goes first: a model file at its path always has its report beside it.
    write_atomically(result.report_path, (json.dumps(result.to_dict(), indent=2) + "\n").encode("utf-8"))
    write_atomically(result.tflite_path, flatbuffer)
    if result.accepted:
        for stale in (rejected_path_for(output), report_path_for(rejected_path_for(output))):
            stale.unlink(missing_ok=True)
        logger.info("wrote %s (%d bytes) and %s", output, len(flatbuffer), result.report_path)
    else:
        logger.info("rejected: kept the file as %s", result.tflite_path)

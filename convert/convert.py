"""SavedModel -> validated .tflite: convert, audit, embed the manifest, prove parity, try every runtime.

`convert_saved_model` reads top to bottom as the steps it takes. Expected
mistakes are refused before TensorFlow is imported where possible; every check
on the converted file is collected, and the file reaches `output` only if all
of them pass.
"""

from __future__ import annotations

import dataclasses
import datetime
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
from convert.parity_data import (
    ParityData,
    Vocabularies,
    check_coverage,
    export_folder,
    held_out_users,
    load_parity_data,
    ranked_users,
    vocabularies_for,
)
from convert.results import CheckFailure, ConversionResult, ParityFigures, SignatureFigures
from convert.saved_model import (
    SavedModelScorer,
    find_saved_model,
    import_tensorflow,
    load_saved_model,
    signature_specs,
)
from convert.runtimes import check_target, parity_interpreter, run_everywhere, runtime_disagreements
from convert.signature_parity import (
    ParityContext,
    ParityUsers,
    SavedModelSignatures,
    TfliteSignatures,
    history_of,
    measure_signatures,
)
from convert.signatures import SignatureSet, check_signatures
from convert.tflite import audit_ops, convert_saved_model_to_flatbuffer, flatbuffer_signatures
from device_runtime.errors import DeviceRuntimeError
from device_runtime.files import write_atomically
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime import contract
from device_runtime.manifest import Manifest, read_manifest
from train import artifacts

logger = logging.getLogger(__name__)

REJECTED_INFIX = ".rejected"
# The runtime probe's calls: k of the top-k signatures, and the history length of the personalized ones.
PROBE_TOP_K = 10
PROBE_HISTORY_LENGTH = 50
REPORT_SUFFIX = ".parity.json"


@dataclasses.dataclass(frozen=True)
class _Reference:
    """The SavedModel side of a comparison: the model, its signatures, its vocabularies and the data."""

    saved_model_dir: Path
    export_dir: Optional[Path]
    signatures: SignatureSet
    scorer: SavedModelScorer
    functions: SavedModelSignatures
    data: ParityData
    vocabularies: Vocabularies
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
    """Converts a SavedModel to a .tflite and proves every signature of it before writing it.

    Steps: find and load the SavedModel; check each contract signature it has,
    by name (`convert.signatures`); read the vocabularies (export vocab/ folder,
    else the model's lookup tables, else the parity data); load the parity
    data and check it matches; convert every signature into one flatbuffer with
    builtin ops only; audit the op table; check each signature again in the
    .tflite through an interpreter; embed the manifest; run every signature on
    every installed runtime; measure parity per signature; check each target.
    All failed checks are raised together.

    Args:
        saved_model: the SavedModel folder (or a `python -m train` export folder).
        output: where the .tflite goes; MODEL.parity.json is written beside it.
        config: mode, names, tolerances, targets; defaults to float32 on LiteRT.

    Returns:
        What was written and measured.

    Raises:
        InputError: a path or option is wrong (nothing was converted).
        ModelSignatureError: a signature of the SavedModel or the .tflite does not fit the contract.
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
    saved_model_dir, vocabularies, signatures = reference.saved_model_dir, reference.vocabularies, reference.signatures

    flatbuffer = convert_saved_model_to_flatbuffer(saved_model_dir, signatures.model_keys, config.quantization)
    audit_ops(flatbuffer, f"the {config.quantization.value} conversion of {saved_model_dir}")

    with tempfile.TemporaryDirectory(prefix="convert-") as work:
        plain_path = Path(work) / "plain.tflite"
        plain_path.write_bytes(flatbuffer)
        _check_same_signatures(
            signatures, flatbuffer_signatures(plain_path, config.signature_key, config.user_input, config.item_input)
        )

        manifest = _manifest(config, reference)
        final = embed_manifest(flatbuffer, manifest)
        ops = audit_ops(final, f"the {config.quantization.value} conversion of {saved_model_dir}")
        _check_manifest_round_trip(final, manifest)
        model_path = Path(work) / "model.tflite"
        model_path.write_bytes(final)

        runtimes = _run_everywhere(reference, model_path, config.runtime_pythons)
        signature_parity = _measure(reference, model_path, runtimes, config.ranking_users)

    targets = tuple(check_target(target, ops, runtimes) for target in config.targets)
    tolerances = config.effective_tolerances
    parity_failures = _parity_failures(signature_parity, tolerances)
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
        signature=signatures.strings,
        signature_keys=signatures.model_keys,
        state_dimension=signatures.state_dimension,
        vocabulary_source=vocabularies.source,
        users=len(vocabularies.users),
        movies=len(vocabularies.movies),
        tolerances=tolerances.to_dict(),
        parity=signature_parity[signatures.strings.signature_key],
        signature_parity=signature_parity,
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


def check_parity(
    saved_model: Path, tflite_model: Path, config: Optional[ConversionConfig] = None
) -> dict[str, SignatureFigures]:
    """Measures every signature of an existing .tflite against its SavedModel, without converting.

    The tolerances are `config.tolerances`, else the defaults for the
    quantization recorded in the file's manifest (else `config.quantization`).

    Args:
        saved_model: the SavedModel folder (or export folder) the file came from.
        tflite_model: the .tflite file.
        config: names, parity data, ranking users, tolerances.

    Returns:
        Signature key -> its parity figures (all within the tolerances); the
        strings signature's are a `ParityFigures`.

    Raises:
        InputError, ModelSignatureError, ParityDataError: as for `convert_saved_model`.
        ParityError: a figure is out of bounds; all failures are listed.
    """
    config = config or ConversionConfig()
    tflite_model = Path(tflite_model)
    if not tflite_model.is_file():
        raise InputError(f"{tflite_model} does not exist; pass a .tflite written by `python -m convert`")
    reference = _load_reference(Path(saved_model), config)
    _check_same_signatures(
        reference.signatures,
        flatbuffer_signatures(tflite_model, config.signature_key, config.user_input, config.item_input),
    )
    runtimes = _run_everywhere(reference, tflite_model, ())
    figures = _measure(reference, tflite_model, runtimes, config.ranking_users)

    tolerances = config.tolerances
    if tolerances is None:
        try:
            manifest = read_manifest(read_flatbuffer(tflite_model.read_bytes(), str(tflite_model)))
        except DeviceRuntimeError as error:
            raise InputError(str(error)) from None
        mode = Quantization(manifest.quantization) if manifest else config.quantization
        tolerances = DEFAULT_TOLERANCES[mode]
    failures = _parity_failures(figures, tolerances)
    if failures:
        raise ParityError(failures)
    return figures


def _parity_failures(figures: dict[str, SignatureFigures], tolerances) -> list[CheckFailure]:
    return [
        failure for key, found in figures.items() for failure in parity.failed_checks(found.to_dict(), tolerances, key)
    ]


# --- inputs ------------------------------------------------------------------


def _load_reference(saved_model: Path, config: ConversionConfig) -> _Reference:
    """Finds and loads the SavedModel, checks its signature, reads its vocabularies and the parity data."""
    saved_model_dir = find_saved_model(saved_model)
    export_dir = export_folder(saved_model_dir)
    loaded = load_saved_model(saved_model_dir)
    signatures = check_signatures(
        signature_specs(loaded),
        user_input=config.user_input,
        item_input=config.item_input,
        signature_key=config.signature_key,
        source=f"SavedModel {saved_model_dir}",
    )
    _check_no_serve_endpoint(loaded, signatures, saved_model_dir)
    scorer = SavedModelScorer(loaded, signatures.strings)
    data = load_parity_data(config.parity_data)
    vocabularies = vocabularies_for(export_dir, scorer, config.parity_data)
    coverage = check_coverage(data, vocabularies, held_out_users(export_dir))
    return _Reference(
        saved_model_dir,
        export_dir,
        signatures,
        scorer,
        SavedModelSignatures(loaded, signatures),
        data,
        vocabularies,
        coverage,
    )


def _check_no_serve_endpoint(loaded, signatures: SignatureSet, saved_model_dir: Path) -> None:
    """Refuses a root `serve` attribute with several signatures: TFLite's converter would keep only serving_default.

    (`TFLiteConverter.from_saved_model` takes such a SavedModel for a Keras
    `model.export` artifact and converts its `serve` endpoint alone.)
    """
    if len(signatures.keys) > 1 and hasattr(loaded, "serve") and not hasattr(loaded, "_default_save_signature"):
        raise ModelSignatureError(
            f"SavedModel {saved_model_dir} has a root attribute named 'serve', so TFLite's converter would keep only "
            f"serving_default and drop {', '.join(signatures.model_keys[1:])}; export it with train.serving "
            "(whose methods are named score_*, never serve)"
        )


def check_output_path(output: Path) -> Path:
    """Refuses an output path that cannot be written, before any work is done.

    Raises:
        InputError: the folder does not exist, or the path is a folder.
    """
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            f"the folder of --out {output} does not exist ({parent}); create it first or choose another path"
        )
    if output.is_dir():
        raise InputError(f"--out {output} is a folder; give a file path such as {output / 'model.tflite'}")
    return output


def _check_runtime_pythons(pythons: Sequence[str]) -> None:
    for python in pythons:
        path = Path(python)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise InputError(
                f"--runtime-python {python} is not an executable file; give the path of a python in a venv"
            )


def _check_same_signatures(saved_model: SignatureSet, tflite: SignatureSet) -> None:
    """The .tflite answers exactly the SavedModel's signatures, with the same strings mapping and state size."""
    missing = [key for key in saved_model.model_keys if key not in tflite.model_keys]
    if missing:
        raise ModelSignatureError(
            f"the converted .tflite lacks the signature(s) {', '.join(missing)} that the SavedModel has "
            f"(it has {', '.join(tflite.model_keys)}); report this with the SavedModel"
        )
    if tflite.keys != saved_model.keys or tflite.state_dimension != saved_model.state_dimension:
        raise ModelSignatureError(
            f"the converted .tflite answers {tflite.describe()}, the SavedModel {saved_model.describe()}; "
            "report this with the SavedModel"
        )
    ours, theirs = saved_model.strings, tflite.strings
    if (ours.user_input, ours.item_input, ours.output) != (theirs.user_input, theirs.item_input, theirs.output):
        raise ModelSignatureError(
            f"the converted .tflite's signature ({theirs.user_input}, {theirs.item_input}) -> {theirs.output} "
            f"differs from the SavedModel's ({ours.user_input}, {ours.item_input}) -> {ours.output}"
        )


# --- manifest ----------------------------------------------------------------


def _manifest(config: ConversionConfig, reference: _Reference) -> Manifest:
    tf = import_tensorflow()
    export_dir, vocabularies, signatures = reference.export_dir, reference.vocabularies, reference.signatures
    metrics: dict[str, Any] = {}
    if export_dir is not None and (export_dir / artifacts.METRICS_FILE).is_file():
        try:
            metrics = json.loads((export_dir / artifacts.METRICS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(
                f"{export_dir / artifacts.METRICS_FILE} is not readable JSON ({error}); train again"
            ) from None
    name = config.model_name or (
        f"movielens-ranking-{metrics['preset']}"
        if metrics.get("preset")
        else (export_dir or reference.saved_model_dir).name
    )
    return Manifest.create(
        users=vocabularies.users,
        movies=vocabularies.movies,
        embed_vocabularies=config.embed_vocabularies,
        model_name=name,
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorflow_version=tf.__version__,
        quantization=config.quantization.value,
        signature=signatures.strings,
        signatures=signatures.keys,
        state_dimension=signatures.state_dimension,
        training_metrics=metrics,
    )


def _check_manifest_round_trip(flatbuffer: bytes, manifest: Manifest) -> None:
    read_back = read_manifest(read_flatbuffer(flatbuffer, "the converted model"))
    if read_back is None or read_back != dataclasses.replace(manifest, file_sha256=read_back.file_sha256):
        raise ConversionError("the manifest read back from the .tflite differs from the one embedded; report this bug")


# --- parity ------------------------------------------------------------------


def _run_everywhere(reference: _Reference, model_path: Path, pythons: Sequence[str]):
    """Calls every signature once on each runtime, with realistic inputs, against the SavedModel's outputs."""
    signatures, vocabularies = reference.signatures, reference.vocabularies
    strings = signatures.strings
    movies = np.asarray(vocabularies.movies, dtype=object)
    user = vocabularies.users[0]
    users = np.full(len(movies), user, dtype=object)
    calls = {strings.signature_key: {strings.user_input: users, strings.item_input: movies}}
    expected = {strings.signature_key: {strings.output: reference.scorer(users, movies)}}
    all_rows = np.arange(1, len(movies) + 1, dtype=np.int32)
    k = np.array([PROBE_TOP_K], np.int32)
    if contract.SCORE_ROWS in signatures.keys:
        calls[contract.SCORE_ROWS] = {contract.USER_ROW: np.array([1], np.int32), contract.ITEM_ROWS: all_rows}
        calls[contract.TOP_K] = {contract.USER_ROW: np.array([1], np.int32), contract.K: k}
    if signatures.personalized:
        titles, ratings = history_of(reference.data.train, user, PROBE_HISTORY_LENGTH, position=0)
        history = {contract.HISTORY_TITLES: titles, contract.HISTORY_RATINGS: ratings}
        calls[contract.SCORE_HISTORY] = {**history, contract.MOVIE_TITLE: movies}
        calls[contract.USER_STATE] = history
        state = {
            name: np.asarray(value, np.float32).reshape(-1)
            for name, value in reference.functions(contract.USER_STATE, **history).items()
        }
        calls[contract.SCORE_ROWS_FOR_STATE] = {**state, contract.ITEM_ROWS: all_rows}
        calls[contract.TOP_K_FOR_STATE] = {**state, contract.K: k}
    for key, inputs in calls.items():
        if key != strings.signature_key:
            expected[key] = reference.functions(key, **inputs)
    return run_everywhere(model_path, calls, expected, pythons, candidates=len(movies))


def _measure(reference: _Reference, model_path: Path, runtimes, ranking_users: int) -> dict[str, SignatureFigures]:
    """Every signature's parity figures, by key; the strings signature's first."""
    signatures = reference.signatures
    candidate, interpreter, label = parity_interpreter(model_path, signatures.strings, runtimes)
    data, vocabularies = reference.data, reference.vocabularies
    reference_pairs = reference.scorer(data.users, data.movies)
    pair = parity.pair_figures(reference_pairs, candidate(data.users, data.movies), data.ratings)

    chosen = ranked_users(data, vocabularies, ranking_users)
    movies = np.asarray(vocabularies.movies, dtype=object)
    reference_matrix = reference.scorer(np.repeat(chosen, len(movies)), np.tile(movies, len(chosen))).reshape(
        len(chosen), len(movies)
    )
    candidate_matrix = np.stack([candidate(np.full(len(movies), user, dtype=object), movies) for user in chosen])
    ranking = parity.ranking_figures(reference_matrix, candidate_matrix)
    figures: dict[str, SignatureFigures] = {
        signatures.strings.signature_key: ParityFigures(
            coverage=reference.coverage,
            interpreter=label,
            ranking_max_abs_diff=parity.max_abs_difference(reference_matrix, candidate_matrix),
            **pair,
            **ranking,
        )
    }
    if len(signatures.keys) > 1:
        context = ParityContext(
            movies=tuple(vocabularies.movies),
            user_rows={user: row for row, user in enumerate(vocabularies.users, start=1)},
            movie_rows={movie: row for row, movie in enumerate(vocabularies.movies, start=1)},
            coverage=reference.coverage,
            interpreter=label,
        )
        users = ParityUsers(chosen, context.user_rows, data.test, data.train if signatures.personalized else None)
        strings_pairs = (data.users, data.movies, data.ratings, reference_pairs)
        figures.update(
            measure_signatures(
                signatures,
                reference.functions,
                TfliteSignatures(interpreter),
                users,
                context,
                strings_pairs,
                reference_matrix,
            )
        )
    return figures


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

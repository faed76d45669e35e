"""What a conversion found: op audit, parity figures, runtime and target checks.

Everything here is a frozen dataclass with `to_dict()`; `ConversionResult`'s
dict is the MODEL.parity.json report, and `convert.summary` reads it back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from device_runtime.signature import SignatureMapping

REPORT_FORMAT_VERSION = 2


@dataclasses.dataclass(frozen=True)
class OpInfo:
    """One entry of the flatbuffer's operator table."""

    name: str
    version: int
    is_custom: bool = False

    def __str__(self) -> str:
        return f"{self.name} v{self.version}" + (" (custom)" if self.is_custom else "")


@dataclasses.dataclass(frozen=True)
class CheckFailure:
    """One failed check: which, the measured figure and the bound it broke."""

    check: str
    message: str
    figure: Optional[float] = None
    bound: Optional[float] = None

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclasses.dataclass(frozen=True)
class ParityFigures:
    """A signature that scores candidates: the .tflite against the SavedModel on the same inputs.

    Attributes:
        pairs: test pairs scored by both (for the strings and `score_rows`
            signatures all of the test split; for the personalized ones the
            ranked users' test rows).
        coverage: fraction of the test split's pairs whose user and movie the model knows.
        max_abs_diff / mean_abs_diff: |tflite - SavedModel| over the pairs.
        rmse_saved_model / rmse_tflite: each against the true ratings.
        rmse_diff: |rmse_tflite - rmse_saved_model|.
        ranking_users / ranking_movies: the users ranked, each against every movie.
        ranking_max_abs_diff: |tflite - SavedModel| over those rankings' scores.
        top10_overlap / top10_overlap_min: mean and worst share of the
            SavedModel's top 10 that the .tflite also ranks in its top 10.
        kendall_tau / kendall_tau_min: mean and worst Kendall's tau-b between
            the two full rankings.
        interpreter: which runtime produced the .tflite's scores.
        state_max_abs_diff: for `user_state`, |tflite - SavedModel| over the
            user vectors and biases themselves (the other figures are the
            scores those states give); None elsewhere.
    """

    pairs: int
    coverage: float
    max_abs_diff: float
    mean_abs_diff: float
    rmse_saved_model: float
    rmse_tflite: float
    rmse_diff: float
    ranking_users: int
    ranking_movies: int
    top10_overlap: float
    top10_overlap_min: float
    kendall_tau: float
    kendall_tau_min: float
    ranking_max_abs_diff: float
    interpreter: str
    state_max_abs_diff: Optional[float] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TopKFigures:
    """A top-k signature (`top_k`, `top_k_for_state`) against the SavedModel's, for the ranked users.

    Attributes:
        users: the users compared, each with k = 10 and k = 100.
        top10_identical / top100_identical: share of users whose k best rows are
            the SavedModel's up to near-ties: at every place, the SavedModel's score
            of the row returned equals the score of its own row at that place
            within `convert.signature_parity.TOP_K_TIE`, so rows of (nearly) equal
            scores may come in either order.
        top10_exact / top100_exact: share of users whose k best rows are exactly
            the SavedModel's, in order.
        top10_overlap / top10_overlap_min, top100_overlap / top100_overlap_min:
            mean and worst share of the SavedModel's k best rows that the .tflite also returns.
        max_abs_diff: the largest |score returned - the SavedModel's score of
            that row| over every row returned (infinite if a row lies outside the catalog).
        interpreter: which runtime produced the .tflite's results.
    """

    users: int
    top10_identical: float
    top10_exact: float
    top10_overlap: float
    top10_overlap_min: float
    top100_identical: float
    top100_exact: float
    top100_overlap: float
    top100_overlap_min: float
    max_abs_diff: float
    interpreter: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SignatureFigures = Union[ParityFigures, TopKFigures]


@dataclasses.dataclass(frozen=True)
class SignatureRun:
    """One signature called on one runtime: whether it ran, how fast, how close to the SavedModel."""

    runs: bool
    error: Optional[str] = None
    latency_ms: Optional[float] = None
    max_abs_diff: Optional[float] = None  # over its float outputs, against the SavedModel on the same inputs


@dataclasses.dataclass(frozen=True)
class DelegateRun:
    """One way of running the file on one runtime (with or without default delegates).

    Attributes:
        runs: every signature ran.
        error: the first signature's error, if one failed.
        latency_ms: the strings signature's median latency (one user, every movie).
        max_abs_diff: the largest difference from the SavedModel over every signature.
        signatures: each signature's own run, by key.
    """

    runs: bool
    error: Optional[str] = None
    latency_ms: Optional[float] = None
    max_abs_diff: Optional[float] = None
    signatures: Mapping[str, SignatureRun] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RuntimeCheck:
    """Whether one installed interpreter package loads and runs the file.

    Attributes:
        runtime: the package ("ai_edge_litert", "tflite_runtime", "tensorflow").
        version: its version.
        python: the Python executable it ran in.
        loads: an interpreter could be created (all op codes resolved).
        load_error: why not, if it could not.
        with_default_delegates: the run with the package's defaults (XNNPACK).
        without_default_delegates: the run with builtin kernels only.
        candidates: how many candidates one timed call of the strings or
            `score_rows` signature scored (every movie).
    """

    runtime: str
    version: str
    python: str
    loads: bool
    load_error: Optional[str]
    with_default_delegates: Optional[DelegateRun]
    without_default_delegates: Optional[DelegateRun]
    candidates: int

    @property
    def runs(self) -> bool:
        return any(
            run is not None and run.runs for run in (self.with_default_delegates, self.without_default_delegates)
        )

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.version}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TargetCheck:
    """Whether the file suits one target.

    Attributes:
        target: the target's name.
        op_versions_ok: every op and version is in the target's table.
        runtime_verified: True/False when the target's runtime was installed and
            tried; None when it was not available (table check only).
        notes: what was found, one line each.
    """

    target: str
    op_versions_ok: bool
    runtime_verified: Optional[bool]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.op_versions_ok and self.runtime_verified is not False

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        data["passed"] = self.passed
        return data


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """Everything one conversion produced and measured (written as MODEL.parity.json).

    Attributes:
        saved_model: the SavedModel folder converted.
        tflite_path: where the accepted file is; for a rejected one, where the
            rejected copy was kept.
        report_path: where this report was written.
        accepted: every check passed and the file is at the requested path.
        quantization: the mode's name.
        size_bytes: the .tflite's size, manifest included.
        manifest_bytes: the size of the embedded manifest.
        saved_model_bytes: the SavedModel folder's size, for comparison.
        ops: the flatbuffer's operator table.
        signature: the strings signature's mapping the flatbuffer was validated against.
        signature_keys: every signature of the file (the model's keys).
        state_dimension: the user state's length, None without personalized signatures.
        vocabulary_source: where the vocabularies in the manifest came from.
        users / movies: vocabulary sizes.
        tolerances: the bounds in force.
        parity: the strings signature's parity figures.
        signature_parity: every signature's figures, by key (the strings one included).
        runtimes: one entry per installed runtime that was tried.
        targets: one entry per requested target.
        failures: every failed check (empty when accepted).
        created_at / tensorflow_version: from the manifest.
    """

    saved_model: Path
    tflite_path: Path
    report_path: Path
    accepted: bool
    quantization: str
    size_bytes: int
    manifest_bytes: int
    saved_model_bytes: int
    ops: tuple[OpInfo, ...]
    signature: SignatureMapping
    signature_keys: tuple[str, ...]
    state_dimension: Optional[int]
    vocabulary_source: str
    users: int
    movies: int
    tolerances: dict
    parity: ParityFigures
    signature_parity: Mapping[str, SignatureFigures]
    runtimes: tuple[RuntimeCheck, ...]
    targets: tuple[TargetCheck, ...]
    failures: tuple[CheckFailure, ...]
    created_at: str
    tensorflow_version: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the MODEL.parity.json format."""
        return {
            "format_version": REPORT_FORMAT_VERSION,
            "accepted": self.accepted,
            "saved_model": str(self.saved_model),
            "tflite": str(self.tflite_path),
            "quantization": self.quantization,
            "size_bytes": self.size_bytes,
            "manifest_bytes": self.manifest_bytes,
            "saved_model_bytes": self.saved_model_bytes,
            "ops": [dataclasses.asdict(op) for op in self.ops],
            "signature": self.signature.to_dict(),
            "signature_keys": list(self.signature_keys),
            "state_dimension": self.state_dimension,
            "vocabulary_source": self.vocabulary_source,
            "vocabulary_sizes": {"users": self.users, "movies": self.movies},
            "tolerances": dict(self.tolerances),
            "parity": self.parity.to_dict(),
            "signature_parity": {key: figures.to_dict() for key, figures in self.signature_parity.items()},
            "runtimes": [runtime.to_dict() for runtime in self.runtimes],
            "targets": [target.to_dict() for target in self.targets],
            "failures": [dataclasses.asdict(failure) for failure in self.failures],
            "created_at": self.created_at,
            "tensorflow_version": self.tensorflow_version,
        }

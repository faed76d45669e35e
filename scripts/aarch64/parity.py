"""Cross-architecture parity: aarch64 scores against x86_64 scores of the same .tflite.

Float32 models must agree within `FLOAT32_MAX_ABS_DIFF` (1e-5). Quantized
variants are held to the converter's own bounds for their mode
(`convert.config.DEFAULT_TOLERANCES`), read the same way the converter reads
them: max |diff|, top-10 overlap and Kendall's tau-b as figures of the two
score matrices, and the converter's "RMSE difference" bound applied to the
root-mean-square of the score differences, which bounds |RMSE_a - RMSE_b|
against any ratings (triangle inequality), so it is the stricter reading.

Whether a variant is expected to run on an interpreter at all is also the
converter's word: its op-version tables (`convert.targets`).

The comparison also runs on its own, e.g. for scores made on a real board:

    python -m scripts.aarch64.parity REFERENCE CANDIDATE

where each is an output prefix of `python -m scripts.aarch64.scores` (PREFIX.npy
and PREFIX.json). Exit codes: 0 parity holds, 1 a bound is broken (the
figures say which), 2 a file is missing or unreadable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from train.metrics import rmse

# The kit's bound for float32 across architectures (the converter allows 1e-4
# against the SavedModel; the same file on two CPUs should agree far closer).
FLOAT32_MAX_ABS_DIFF = 1e-5
FLOAT32_QUANTIZATIONS = ("none", "unknown")


@dataclasses.dataclass(frozen=True)
class ParityResult:
    """One model on one interpreter: aarch64 against x86_64.

    Attributes:
        model: the model's file name.
        backend: the aarch64 interpreter package (the x86_64 side is LiteRT).
        quantization: the manifest's quantization ("unknown" without one).
        users / movies: the size of the compared score matrices.
        figures: max_abs_diff, mean_abs_diff, rms_diff (also as rmse_diff),
            top10_overlap(_min), kendall_tau(_min).
        bounds: the bound per checked figure.
        failures: one line per broken bound; empty when parity holds.
    """

    model: str
    backend: str
    quantization: str
    users: int
    movies: int
    figures: dict
    bounds: dict
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when every bound holds."""
        return not self.failures

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {**dataclasses.asdict(self), "failures": list(self.failures), "passed": self.passed}


def tolerances_for(quantization: str):
    """The bounds for a quantization mode, as a convert.config.Tolerances.

    Float32 (and models without a manifest) use `FLOAT32_MAX_ABS_DIFF` with the
    converter's float32 ranking bounds; quantized modes use the converter's
    defaults unchanged.

    Raises:
        ValueError: a quantization the converter does not know.
    """
    from convert.config import DEFAULT_TOLERANCES, Quantization

    if quantization in FLOAT32_QUANTIZATIONS:
        return DEFAULT_TOLERANCES[Quantization.NONE].replace({"max_abs_diff": FLOAT32_MAX_ABS_DIFF})
    return DEFAULT_TOLERANCES[Quantization(quantization)]


def difference_figures(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Element-wise figures of two equally shaped score matrices (float64 arithmetic)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"score matrices differ in shape: {reference.shape} and {candidate.shape}")
    difference = np.abs(candidate - reference)
    if not np.all(np.isfinite(difference)):
        return {"max_abs_diff": math.inf, "mean_abs_diff": math.inf, "rms_diff": math.inf, "rmse_diff": math.inf,
                "worst_user": None, "worst_movie": None}
    worst = np.unravel_index(int(np.argmax(difference)), difference.shape)
    rms = rmse(candidate, reference)
    return {
        "max_abs_diff": float(difference.max()),
        "mean_abs_diff": float(difference.mean()),
        "rms_diff": rms,
        "rmse_diff": rms,
        "worst_user": int(worst[0]),
        "worst_movie": int(worst[1]),
    }


def compare(
    model: str,
    backend: str,
    quantization: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    reference_users: Sequence[str],
    candidate_users: Sequence[str],
    tolerances=None,
) -> ParityResult:
    """Compares aarch64 scores with the x86_64 reference and holds them to the bounds.

    Args:
        model: name for messages.
        backend: the aarch64 interpreter package.
        quantization: the manifest's mode; picks the bounds.
        reference: x86_64 scores [users, movies].
        candidate: aarch64 scores, same shape.
        reference_users / candidate_users: who was scored on each side (must match).
        tolerances: a convert.config.Tolerances; None picks `tolerances_for(quantization)`.

    Returns:
        The figures and every broken bound (nothing is raised for a mismatch).
    """
    from convert.parity import failed_checks, ranking_figures

    tolerances = tolerances if tolerances is not None else tolerances_for(quantization)
    failures: list[str] = []
    if list(reference_users) != list(candidate_users):
        failures.append("the two sides scored different users; run both with the same --users")
    if np.shape(reference) != np.shape(candidate):
        failures.append(f"score matrices differ in shape: {np.shape(reference)} vs {np.shape(candidate)}")
        figures: dict = {}
    else:
        figures = {**difference_figures(reference, candidate), **ranking_figures(reference, candidate)}
        # The converter's messages end with how to loosen its own CLI's bound; that option is not ours.
        failures.extend(str(failure).split(" (loosen")[0] for failure in failed_checks(figures, tolerances))
    bounds = {name: value for name, value in dataclasses.asdict(tolerances).items() if value is not None}
    users, movies = (np.shape(candidate) + (0, 0))[:2]
    return ParityResult(model, backend, quantization, int(users), int(movies), figures, bounds, tuple(failures))


def expected_to_run(operator_codes, backend: str) -> str | None:
    """None when the converter's op-version table says `backend` loads the model, else why not.

    Args:
        operator_codes: the model's `device_runtime.flatbuffer.OperatorCode`s.
        backend: "ai_edge_litert" or "tflite_runtime".
    """
    from convert.results import OpInfo
    from convert.targets import TARGETS, Target
    from convert.tflite import target_op_problems

    target = {"ai_edge_litert": Target.LITERT, "tflite_runtime": Target.TFLITE_RUNTIME_2_14}[backend]
    ops = [OpInfo(code.name, code.version, code.is_custom) for code in operator_codes]
    problems = target_op_problems(ops, TARGETS[target])
    return "; ".join(problems) if problems else None


def format_result(result: ParityResult) -> str:
    """One line with the figures, for the log and CI output."""
    figures = result.figures
    if not figures:
        return f"{result.model} [{result.backend}]: " + "; ".join(result.failures)
    verdict = "ok" if result.passed else "MISMATCH"
    text = (
        f"{result.model} [{result.quantization}, {result.backend}] {result.users} users x {result.movies} movies: "
        f"max |diff| {figures['max_abs_diff']:.3g} (bound {result.bounds.get('max_abs_diff', 'none')}), "
        f"mean {figures['mean_abs_diff']:.3g}, rms {figures['rms_diff']:.3g}, "
        f"top-10 overlap {figures['top10_overlap']:.4f} (min {figures['top10_overlap_min']:.2f}), "
        f"Kendall tau {figures['kendall_tau']:.5f}: {verdict}"
    )
    if result.failures:
        text += " -- " + "; ".join(result.failures)
    return text


def load_scores(prefix: Path) -> tuple[np.ndarray, dict]:
    """Reads PREFIX.npy and PREFIX.json written by `scripts.aarch64.scores`.

    Raises:
        OSError, ValueError: a file is missing or malformed.
    """
    prefix = Path(prefix)
    with open(prefix.with_name(prefix.name + ".json"), encoding="utf-8") as handle:
        description = json.load(handle)
    return np.load(prefix.with_name(prefix.name + ".npy")), description


def compare_files(reference: Path, candidate: Path) -> ParityResult:
    """Compares two `scores` outputs; the reference's manifest quantization picks the bounds.

    Raises:
        OSError, ValueError: a file is missing or malformed.
    """
    reference_scores, reference_meta = load_scores(reference)
    candidate_scores, candidate_meta = load_scores(candidate)
    result = compare(
        Path(candidate_meta["model"]).name,
        candidate_meta["backend"],
        reference_meta["quantization"],
        reference_scores,
        candidate_scores,
        reference_meta["users"],
        candidate_meta["users"],
    )
    if reference_meta.get("model_sha256") != candidate_meta.get("model_sha256"):
        failures = ("the two sides scored different .tflite files (sha256 differs)",) + result.failures
        result = dataclasses.replace(result, failures=failures)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.aarch64.parity", description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="output prefix of the reference scores (e.g. x86_64)")
    parser.add_argument("candidate", type=Path, help="output prefix of the scores to check (e.g. a board's)")
    args = parser.parse_args(argv)
    try:
        result = compare_files(args.reference, args.candidate)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot read the scores ({error}); give the prefixes passed to scores --out", file=sys.stderr)
        return 2
    print(format_result(result))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""Cross-architecture parity: aarch64 scores against x86_64 scores of the same .tflite.

Float32 models must agree within `FLOAT32_MAX_ABS_DIFF` (1e-5). Quantized
variants are held to the converter's own bounds for their mode
(`convert.config.DEFAULT_TOLERANCES`), read the same way the converter reads
them: max |diff|, top-10 overlap and Kendall's tau-b as figures of the two
score matrices, and the converter's "RMSE difference" bound applied to the
root-mean-square of the score differences, which bounds |RMSE_a - RMSE_b|
against any ratings (triangle inequality), so it is the stricter reading.

The other contract signatures (`device_runtime.contract`), where the file has
them, are held to the same bounds:

- `score_rows`, `score_rows_for_state`, `score_history`: score matrices, as above;
- `top_k`, `top_k_for_state`: every returned score within `score_bound` of the
  reference's at the same place, and the same rows in the same order except
  where scores tie: a row may stand where the reference put another when the
  reference scores the two within `score_bound` (the converter's near-tie rule,
  `convert.signature_parity.top_k_figures`, with the x86_64 answers as the
  reference); for k = 10 and for the whole catalog (k = every movie), whose
  reference answer gives every row's score for the tie rule;
- `user_state`: every element of the user vector and bias within `score_bound`.

A signature the file does not have (the tutorial preset has no personalized
ones) is reported as not present, which is not a failure.

Whether a variant is expected to run on an interpreter at all is also the
converter's word: its op-version tables (`convert.targets`).

The comparison also runs on its own, e.g. for scores made on a real board:

    python -m scripts.aarch64.parity REFERENCE CANDIDATE

where each is an output prefix of `python -m scripts.aarch64.scores` (PREFIX.npy,
PREFIX.json and, for the other signatures, PREFIX.npz). Exit codes: 0 parity holds, 1 a bound is broken (the
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

from device_runtime import contract
from scripts.aarch64.scores import CATALOG
from train.metrics import rmse

# The kit's bound for float32 across architectures (the converter allows 1e-4
# against the SavedModel; the same file on two CPUs should agree far closer).
FLOAT32_MAX_ABS_DIFF = 1e-5
FLOAT32_QUANTIZATIONS = ("none", "unknown")


@dataclasses.dataclass(frozen=True)
class ParityResult:
    """One signature of one model on one interpreter: aarch64 against x86_64.

    Attributes:
        model: the model's file name.
        backend: the aarch64 interpreter package (the x86_64 side is LiteRT).
        quantization: the manifest's quantization ("unknown" without one).
        users / movies: the size of the compared score matrices (users are
            histories for the personalized signatures; movies is k for top-k
            and the state dimension for `user_state`).
        figures: for score matrices max_abs_diff, mean_abs_diff, rms_diff (also
            as rmse_diff), top10_overlap(_min), kendall_tau(_min); for top-k
            see `top_k_figures`; for `user_state` max_abs_diff, bias_max_abs_diff.
        bounds: the bound per checked figure.
        failures: one line per broken bound; empty when parity holds.
        signature: the contract signature compared.
    """

    model: str
    backend: str
    quantization: str
    users: int
    movies: int
    figures: dict
    bounds: dict
    failures: tuple[str, ...]
    signature: str = contract.STRINGS

    @property
    def passed(self) -> bool:
        """True when every bound holds."""
        return not self.failures

    @property
    def label(self) -> str:
        """The signature compared, with k for a top-k one (e.g. "top_k k=10")."""
        return f"{self.signature} k={self.movies}" if "identical" in self.figures else self.signature

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


def score_bound(tolerances) -> float:
    """The bound on a single score's (or state element's) difference for a mode's tolerances.

    The mode's max |diff| bound; the int8 modes have none (only an RMS bound),
    so their RMS-difference bound is used for single values too.
    """
    return tolerances.max_abs_diff if tolerances.max_abs_diff is not None else tolerances.rmse_diff


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
    signature: str = contract.STRINGS,
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
        signature: the contract signature that gave the scores.

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
    return ParityResult(model, backend, quantization, int(users), int(movies), figures, bounds, tuple(failures),
                        signature)


def top_k_figures(
    reference_rows: np.ndarray,
    reference_scores: np.ndarray,
    candidate_rows: np.ndarray,
    candidate_scores: np.ndarray,
    reference_full: np.ndarray,
    tie: float,
) -> dict:
    """Compares two sides' top-k answers, user by user (each argument [users, k], `reference_full` [users, n]).

    A returned row counts as the reference's when the reference scores it (in
    `reference_full`, every catalog row 1..n) within `tie` of the reference's
    own score at that place, so rows of (nearly) equal scores may come in
    either order, or swap across the k-th place.

    Returns:
        users, k; identical: share of users whose rows are the reference's up to
        ties; exact: share with exactly the same rows in order; overlap_min: the
        worst share of the reference's rows also returned; max_abs_diff: the
        largest |returned score - the reference's score at the same place|
        (infinite when a row lies outside the catalog or the shapes differ);
        first_different_user: the first user not identical, or None.
    """
    reference_rows, candidate_rows = np.asarray(reference_rows), np.asarray(candidate_rows)
    reference_scores = np.asarray(reference_scores, np.float64)
    candidate_scores = np.asarray(candidate_scores, np.float64)
    reference_full = np.asarray(reference_full, np.float64)
    users = reference_rows.shape[0]
    catalog = reference_full.shape[1] if reference_full.ndim == 2 else 0
    if not (candidate_rows.shape == reference_rows.shape == reference_scores.shape == candidate_scores.shape
            and reference_full.shape[:1] == (users,)):
        return {"users": users, "k": 0, "identical": 0.0, "exact": 0.0, "overlap_min": 0.0, "max_abs_diff": math.inf,
                "first_different_user": 0}
    identical, exact, overlaps, differences = [], [], [], []
    for user in range(users):
        found, expected = candidate_rows[user], reference_rows[user]
        exact.append(bool(np.array_equal(found, expected)))
        overlaps.append(len(np.intersect1d(found, expected)) / max(1, len(expected)))
        if not np.all((found >= 1) & (found <= catalog)):
            identical.append(False)
            differences.append(math.inf)
            continue
        ties = np.abs(reference_full[user, found - 1] - reference_scores[user]) <= tie
        identical.append(bool(np.all(ties)))
        differences.append(float(np.max(np.abs(candidate_scores[user] - reference_scores[user]), initial=0.0)))
    different = [user for user, same in enumerate(identical) if not same]
    return {
        "users": users,
        "k": int(reference_rows.shape[1]) if reference_rows.ndim == 2 else 0,
        "identical": float(np.mean(identical)) if users else 1.0,
        "exact": float(np.mean(exact)) if users else 1.0,
        "overlap_min": float(min(overlaps, default=1.0)),
        "max_abs_diff": float(max(differences, default=0.0)),
        "first_different_user": different[0] if different else None,
    }


def catalog_scores(rows: np.ndarray | None, scores: np.ndarray | None) -> np.ndarray:
    """Every catalog row's score from a whole-catalog top-k answer ([users, n] rows and scores), by row.

    Column r - 1 holds row r's score; a row the answer lacks stays NaN (never a tie).
    """
    if rows is None or scores is None or np.shape(rows) != np.shape(scores) or np.ndim(rows) != 2:
        return np.full((0, 0), np.nan)
    rows = np.asarray(rows)
    full = np.full(rows.shape, np.nan)
    inside = (rows >= 1) & (rows <= rows.shape[1])
    users = np.broadcast_to(np.arange(rows.shape[0])[:, None], rows.shape)
    full[users[inside], rows[inside] - 1] = np.asarray(scores, np.float64)[inside]
    return full


def compare_top_k(
    model: str, backend: str, quantization: str, signature: str, reference: tuple, candidate: tuple,
    reference_full: np.ndarray, tolerances=None,
) -> ParityResult:
    """Holds a top-k signature's answers on aarch64 to the x86_64 ones.

    Args:
        model, backend, quantization: as for `compare`.
        signature: `top_k` or `top_k_for_state`.
        reference / candidate: (rows [users, k], scores [users, k]) of each side.
        reference_full: the reference's score of every catalog row for the same users, which
            decides ties: its answer with k = every movie (`catalog_scores`), so the scores
            come from the same signature (dynamic-range int8 scores `top_k` and `score_rows`
            differently).
        tolerances: None picks `tolerances_for(quantization)`.

    Returns:
        The figures of `top_k_figures`; it fails when a score differs by more than
        `score_bound` or a user's rows differ other than by ties.
    """
    tolerances = tolerances if tolerances is not None else tolerances_for(quantization)
    bound = score_bound(tolerances)
    figures = top_k_figures(*reference, *candidate, reference_full, tie=bound)
    failures = []
    if not figures["max_abs_diff"] <= bound:
        failures.append(f"{signature}: max_abs_diff is {figures['max_abs_diff']:.3g}, must be <= {bound:g}")
    if figures["identical"] < 1.0:
        failures.append(
            f"{signature}: the rows differ other than by ties (within {bound:g}) for "
            f"{1 - figures['identical']:.1%} of users, first user {figures['first_different_user']}"
        )
    bounds = {"max_abs_diff": bound, "tie": bound, "identical": 1.0}
    return ParityResult(model, backend, quantization, figures["users"], figures["k"], figures, bounds,
                        tuple(failures), signature)


def compare_state(
    model: str, backend: str, quantization: str, reference: tuple, candidate: tuple, tolerances=None
) -> ParityResult:
    """Holds `user_state` answers on aarch64 to the x86_64 ones: (vectors [histories, D], biases [histories, 1]).

    Every element of the vectors and biases must agree within `score_bound`.
    """
    tolerances = tolerances if tolerances is not None else tolerances_for(quantization)
    bound = score_bound(tolerances)
    failures, figures = [], {}
    shapes = [np.shape(array) for array in (*reference, *candidate)]
    if shapes[0] != shapes[2] or shapes[1] != shapes[3]:
        failures.append(f"{contract.USER_STATE}: the states differ in shape: {shapes[:2]} vs {shapes[2:]}")
    else:
        vector_figures = difference_figures(reference[0], candidate[0])
        bias_figures = difference_figures(reference[1], candidate[1])
        figures = {"max_abs_diff": vector_figures["max_abs_diff"], "mean_abs_diff": vector_figures["mean_abs_diff"],
                   "worst_history": vector_figures["worst_user"], "bias_max_abs_diff": bias_figures["max_abs_diff"]}
        for name in ("max_abs_diff", "bias_max_abs_diff"):
            if not figures[name] <= bound:
                failures.append(f"{contract.USER_STATE}: {name} is {figures[name]:.3g}, must be <= {bound:g}")
    histories, dimension = (tuple(shapes[0]) + (0, 0))[:2]
    return ParityResult(model, backend, quantization, int(histories), int(dimension), figures,
                        {"max_abs_diff": bound, "bias_max_abs_diff": bound}, tuple(failures), contract.USER_STATE)


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
    signature = "" if result.signature == contract.STRINGS else f" {result.label}"
    if not figures:
        return f"{result.model}{signature} [{result.backend}]: " + "; ".join(result.failures)
    verdict = "ok" if result.passed else "MISMATCH"
    head = f"{result.model}{signature} [{result.quantization}, {result.backend}]"
    bound = result.bounds.get("max_abs_diff", "none")
    if "identical" in figures:
        rows = "histories" if result.signature in contract.PERSONALIZED_SIGNATURES else "users"
        text = (
            f"{head} {result.users} {rows}: max |diff| {figures['max_abs_diff']:.3g} "
            f"(bound {bound}), rows identical up to ties for {figures['identical']:.0%} of {rows} "
            f"(exactly: {figures['exact']:.0%}): {verdict}"
        )
    elif "bias_max_abs_diff" in figures:
        text = (
            f"{head} {result.users} histories, state of {result.movies}: max |diff| vector "
            f"{figures['max_abs_diff']:.3g}, bias {figures['bias_max_abs_diff']:.3g} (bound {bound}): {verdict}"
        )
    else:
        rows = "histories" if result.signature in contract.PERSONALIZED_SIGNATURES else "users"
        text = (
            f"{head} {result.users} {rows} x {result.movies} movies: "
            f"max |diff| {figures['max_abs_diff']:.3g} (bound {bound}), "
            f"mean {figures['mean_abs_diff']:.3g}, rms {figures['rms_diff']:.3g}, "
            f"top-10 overlap {figures['top10_overlap']:.4f} (min {figures['top10_overlap_min']:.2f}), "
            f"Kendall tau {figures['kendall_tau']:.5f}: {verdict}"
        )
    if result.failures:
        text += " -- " + "; ".join(result.failures)
    return text


@dataclasses.dataclass(frozen=True)
class FilesComparison:
    """Every signature of one model on one interpreter, aarch64 against x86_64.

    Attributes:
        results: one ParityResult per signature both sides answered, the strings one first.
        not_present: the contract signatures the file does not have (not a failure).
    """

    results: tuple[ParityResult, ...]
    not_present: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when every signature's comparison passed."""
        return all(result.passed for result in self.results)


def load_scores(prefix: Path) -> tuple[np.ndarray, dict, dict[str, np.ndarray]]:
    """Reads PREFIX.npy, PREFIX.json and (when present) PREFIX.npz written by `scripts.aarch64.scores`.

    Returns:
        The strings scores, the description, and the other signatures' arrays ({} without PREFIX.npz).

    Raises:
        OSError, ValueError: a file is missing or malformed.
    """
    prefix = Path(prefix)
    with open(prefix.with_name(prefix.name + ".json"), encoding="utf-8") as handle:
        description = json.load(handle)
    arrays: dict[str, np.ndarray] = {}
    bundle = prefix.with_name(prefix.name + ".npz")
    if bundle.is_file():
        with np.load(bundle) as stored:
            arrays = {name: stored[name] for name in stored.files}
    return np.load(prefix.with_name(prefix.name + ".npy")), description, arrays


def compare_signatures(
    model: str, backend: str, quantization: str, reference: tuple[dict, dict], candidate: tuple[dict, dict],
    tolerances=None,
) -> tuple[list[ParityResult], list[str]]:
    """Compares every contract signature but the strings one that the reference answered.

    Args:
        model, backend, quantization, tolerances: as for `compare`.
        reference / candidate: (description, arrays) of each side, as `load_scores` reads them.

    Returns:
        The results in the contract's order (a top-k signature twice: k = TOP_K, then the
        whole catalog), and the signatures the file does not have.
    """
    (reference_meta, reference_arrays), (candidate_meta, candidate_arrays) = reference, candidate
    present = reference_meta.get("signatures", [contract.STRINGS])
    not_present = [key for key in contract.SIGNATURES if key not in present]
    if candidate_meta.get("signatures", [contract.STRINGS]) != present:
        failure = f"the two sides answered different signatures: {present} and {candidate_meta.get('signatures')}"
        return [ParityResult(model, backend, quantization, 0, 0, {}, {}, (failure,), "signatures")], not_present
    index_users = [str(user) for user in reference_meta.get("index_users", ())]
    same_index_users = [str(user) for user in candidate_meta.get("index_users", ())] == index_users
    histories = reference_meta.get("histories") or {}
    history_labels = [f"history {n} of {length}" for n, length in enumerate(histories.get("lengths", ()))]
    same_histories = (candidate_meta.get("histories") or {}).get("sha256") == histories.get("sha256")

    def answer(arrays: dict, key: str, tensor: str = contract.RATING):
        return arrays.get(f"{key}.{tensor}")

    results = []
    for key in (k for k in contract.SIGNATURES if k in present and k != contract.STRINGS):
        missing = [side for side, arrays in (("x86_64", reference_arrays), ("aarch64", candidate_arrays))
                   if not any(name.startswith(key + ".") for name in arrays)]
        personalized = key in contract.PERSONALIZED_SIGNATURES
        if missing or not (same_histories if personalized else same_index_users):
            failure = (f"{key}: no answers from {' and '.join(missing)}" if missing else
                       f"{key}: the two sides fed different {'histories' if personalized else 'users'}; "
                       "run both with the same scripts.aarch64.scores options")
            results.append(ParityResult(model, backend, quantization, 0, 0, {}, {}, (failure,), key))
            continue
        if key in (contract.TOP_K, contract.TOP_K_FOR_STATE):
            catalog = f"{key}.{CATALOG}"
            full = catalog_scores(
                answer(reference_arrays, catalog, contract.ITEM_ROWS), answer(reference_arrays, catalog)
            )
            for name in (key, catalog):
                results.append(compare_top_k(
                    model, backend, quantization, key,
                    (answer(reference_arrays, name, contract.ITEM_ROWS), answer(reference_arrays, name)),
                    (answer(candidate_arrays, name, contract.ITEM_ROWS), answer(candidate_arrays, name)),
                    full, tolerances,
                ))
        elif key == contract.USER_STATE:
            results.append(compare_state(
                model, backend, quantization,
                tuple(answer(reference_arrays, key, name) for name in (contract.USER_VECTOR, contract.USER_BIAS)),
                tuple(answer(candidate_arrays, key, name) for name in (contract.USER_VECTOR, contract.USER_BIAS)),
                tolerances,
            ))
        else:
            labels = history_labels if personalized else index_users
            results.append(compare(model, backend, quantization, answer(reference_arrays, key),
                                   answer(candidate_arrays, key), labels, labels, tolerances, key))
    return results, not_present


def compare_files(reference: Path, candidate: Path) -> FilesComparison:
    """Compares two `scores` outputs, signature by signature; the reference's manifest quantization picks the bounds.

    Raises:
        OSError, ValueError: a file is missing or malformed.
    """
    reference_scores, reference_meta, reference_arrays = load_scores(reference)
    candidate_scores, candidate_meta, candidate_arrays = load_scores(candidate)
    model, backend, quantization = (Path(candidate_meta["model"]).name, candidate_meta["backend"],
                                    reference_meta["quantization"])
    result = compare(model, backend, quantization, reference_scores, candidate_scores, reference_meta["users"],
                     candidate_meta["users"])
    if reference_meta.get("model_sha256") != candidate_meta.get("model_sha256"):
        failures = ("the two sides scored different .tflite files (sha256 differs)",) + result.failures
        result = dataclasses.replace(result, failures=failures)
    others, not_present = compare_signatures(
        model, backend, quantization, (reference_meta, reference_arrays), (candidate_meta, candidate_arrays)
    )
    return FilesComparison((result, *others), tuple(not_present))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.aarch64.parity", description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="output prefix of the reference scores (e.g. x86_64)")
    parser.add_argument("candidate", type=Path, help="output prefix of the scores to check (e.g. a board's)")
    args = parser.parse_args(argv)
    try:
        comparison = compare_files(args.reference, args.candidate)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot read the scores ({error}); give the prefixes passed to scores --out", file=sys.stderr)
        return 2
    for result in comparison.results:
        print(format_result(result))
    if comparison.not_present:
        print(f"not present in the model (not a failure): {', '.join(comparison.not_present)}")
    return 0 if comparison.passed else 1


if __name__ == "__main__":
    sys.exit(main())

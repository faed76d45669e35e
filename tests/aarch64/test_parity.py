"""Cross-architecture comparison: figures computed by hand, bounds per quantization."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from device_runtime.flatbuffer import OperatorCode
from scripts.aarch64 import parity

USERS = ["1", "2", "3"]


def reference_matrix() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (3.0 + rng.standard_normal((3, 40))).astype(np.float32)


def test_difference_figures_by_hand():
    reference = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    candidate = np.array([[1.0, 2.5], [2.0, 4.0]], dtype=np.float32)
    figures = parity.difference_figures(reference, candidate)
    assert figures["max_abs_diff"] == 1.0
    assert figures["mean_abs_diff"] == pytest.approx((0.5 + 1.0) / 4)
    assert figures["rms_diff"] == pytest.approx(math.sqrt((0.25 + 1.0) / 4))
    assert (figures["worst_user"], figures["worst_movie"]) == (1, 0)


def test_float32_within_1e_5_passes():
    reference = reference_matrix()
    candidate = reference + np.float32(4e-6)
    result = parity.compare("m.tflite", "tflite_runtime", "none", reference, candidate, USERS, USERS)
    assert result.passed, result.failures
    assert result.figures["max_abs_diff"] == pytest.approx(4e-6, rel=0.05)
    assert result.figures["top10_overlap"] == 1.0
    candidate[1, 3] = reference[1, 3] + np.float32(1.2e-5)  # one score just past the 1e-5 bound
    just_past = parity.compare("m.tflite", "tflite_runtime", "none", reference, candidate, USERS, USERS)
    assert [failure.split(":")[0] for failure in just_past.failures] == ["parity.max_abs_diff"], just_past.failures


def test_float32_beyond_1e_5_fails_with_the_figure():
    reference = reference_matrix()
    candidate = reference.copy()
    candidate[2, 7] += np.float32(3e-5)
    result = parity.compare("m.tflite", "ai_edge_litert", "none", reference, candidate, USERS, USERS)
    assert not result.passed
    assert any("max_abs_diff is 3e-05" in failure for failure in result.failures), result.failures
    assert (result.figures["worst_user"], result.figures["worst_movie"]) == (2, 7)
    assert "MISMATCH" in parity.format_result(result)


def test_quantized_variants_are_held_to_the_converters_looser_bounds():
    reference = reference_matrix()
    candidate = reference + np.float32(1e-3)  # too much for float32, fine for float16 and int8
    for quantization, passes in (("none", False), ("float16", True), ("dynamic-int8", True)):
        result = parity.compare("m.tflite", "ai_edge_litert", quantization, reference, candidate, USERS, USERS)
        assert result.passed is passes, (quantization, result.failures)


def test_int8_scores_far_apart_fail_on_the_rms_bound():
    reference = reference_matrix()
    candidate = reference + np.float32(0.05)  # same ranking, but RMS 0.05 > the converter's 0.01
    result = parity.compare("m.tflite", "ai_edge_litert", "dynamic-int8", reference, candidate, USERS, USERS)
    assert not result.passed and any("rmse_diff" in failure for failure in result.failures)


def test_different_users_or_shapes_fail():
    reference = reference_matrix()
    result = parity.compare("m.tflite", "tflite_runtime", "none", reference, reference, USERS, ["1", "2", "4"])
    assert not result.passed and "different users" in result.failures[0]
    result = parity.compare("m.tflite", "tflite_runtime", "none", reference, reference[:, :5], USERS, USERS)
    assert not result.passed and "shape" in result.failures[0]


def test_non_finite_scores_fail():
    reference = reference_matrix()
    candidate = reference.copy()
    candidate[0, 0] = np.nan
    result = parity.compare("m.tflite", "tflite_runtime", "float16", reference, candidate, USERS, USERS)
    assert not result.passed


def test_the_converters_op_table_decides_where_a_model_is_expected_to_run():
    float_ops = [OperatorCode("FULLY_CONNECTED", 9, False), OperatorCode("HASHTABLE_FIND", 1, False)]
    int8_ops = [OperatorCode("FULLY_CONNECTED", 12, False)]
    assert parity.expected_to_run(float_ops, "tflite_runtime") is None
    assert parity.expected_to_run(float_ops, "ai_edge_litert") is None
    reason = parity.expected_to_run(int8_ops, "tflite_runtime")
    assert reason is not None and "FULLY_CONNECTED v12" in reason
    assert parity.expected_to_run(int8_ops, "ai_edge_litert") is None


def write_scores(prefix, scores, **meta):
    np.save(prefix.with_name(prefix.name + ".npy"), scores)
    description = {"model": "/x/m.tflite", "model_sha256": "aa", "backend": "ai_edge_litert", "quantization": "none",
                   "users": USERS, **meta}
    prefix.with_name(prefix.name + ".json").write_text(json.dumps(description))
    return prefix


def test_files_written_by_the_scorer_are_compared_and_must_be_the_same_model(tmp_path):
    reference = write_scores(tmp_path / "x86", reference_matrix())
    board = write_scores(tmp_path / "board", reference_matrix() + np.float32(2e-6), backend="tflite_runtime")
    comparison = parity.compare_files(reference, board)
    (result,) = comparison.results  # a model with the strings signature only
    assert result.passed and (result.model, result.backend) == ("m.tflite", "tflite_runtime")
    assert len(comparison.not_present) == 6
    other = write_scores(tmp_path / "other", reference_matrix(), model_sha256="bb")
    result = parity.compare_files(reference, other).results[0]
    assert not result.passed and "different .tflite" in result.failures[0]


def test_the_comparison_command_exits_1_on_mismatch_and_2_on_missing_files(tmp_path, capsys):
    reference = write_scores(tmp_path / "x86", reference_matrix())
    far = write_scores(tmp_path / "far", reference_matrix() + np.float32(1e-4))
    assert parity.main([str(reference), str(reference)]) == 0
    assert parity.main([str(reference), str(far)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert parity.main([str(reference), str(tmp_path / "absent")]) == 2


# ------------------------------------------------ the other contract signatures (index space, personalized)

# One user, a catalog of five rows: row r's score is FULL[r - 1]. Rows 2 and 4 tie within 1e-5 (4.0 and
# 4.000004); row 5 is 0.1 below them, far from a tie.
FULL = np.array([[3.0, 4.0, 5.0, 4.000004, 3.9]])


def test_catalog_scores_put_each_returned_score_in_its_rows_column():
    rows = np.array([[3, 4, 2, 5, 1], [1, 2, 3, 4, 9]])
    scores = np.array([[5.0, 4.000004, 4.0, 3.9, 3.0], [1.0, 2.0, 3.0, 4.0, 7.0]])
    full = parity.catalog_scores(rows, scores)
    np.testing.assert_array_equal(full[0], FULL[0])
    np.testing.assert_array_equal(full[1], [1.0, 2.0, 3.0, 4.0, np.nan])  # row 9 is outside: row 5 stays unknown
    assert parity.catalog_scores(None, scores).shape == (0, 0)


def test_top_k_rows_swapped_within_a_tie_are_identical_but_not_exact():
    reference = (np.array([[3, 4, 2]]), np.array([[5.0, 4.000004, 4.0]]))
    swapped = (np.array([[3, 2, 4]]), np.array([[5.0, 4.000003, 4.0]]))
    figures = parity.top_k_figures(*reference, *swapped, FULL, tie=1e-5)
    assert (figures["identical"], figures["exact"], figures["overlap_min"]) == (1.0, 0.0, 1.0)
    assert figures["max_abs_diff"] == pytest.approx(1e-6, rel=1e-3)
    result = parity.compare_top_k("m.tflite", "tflite_runtime", "none", "top_k", reference, swapped, FULL)
    assert result.passed, result.failures
    assert result.label == "top_k k=3" and "identical up to ties for 100% of users" in parity.format_result(result)


def test_top_k_rows_swapped_beyond_a_tie_fail():
    reference = (np.array([[3, 4, 2]]), np.array([[5.0, 4.000004, 4.0]]))
    # Row 5 (3.9) where the reference has row 2 (4.0): 0.1 apart, not a tie, though every score returned
    # is within 1e-5 of the reference's at its place (a wrong row with a right-looking score).
    wrong = (np.array([[3, 4, 5]]), np.array([[5.0, 4.000004, 4.0]]))
    result = parity.compare_top_k("m.tflite", "ai_edge_litert", "none", "top_k", reference, wrong, FULL)
    assert not result.passed
    assert result.figures["identical"] == 0.0 and result.figures["first_different_user"] == 0
    assert "rows differ other than by ties" in result.failures[0] and "MISMATCH" in parity.format_result(result)
    # The same swap is a tie under the float16 bound only if the rows score within 2e-3: 0.1 is not.
    assert not parity.compare_top_k("m.tflite", "ai_edge_litert", "float16", "top_k", reference, wrong, FULL).passed


def test_top_k_scores_beyond_the_bound_and_rows_outside_the_catalog_fail():
    reference = (np.array([[3, 4, 2]]), np.array([[5.0, 4.000004, 4.0]]))
    off = (np.array([[3, 4, 2]]), np.array([[5.0, 4.000004, 4.00003]]))  # 3e-5 from the reference
    result = parity.compare_top_k("m.tflite", "tflite_runtime", "none", "top_k", reference, off, FULL)
    assert [failure.split(":")[1].strip().split()[0] for failure in result.failures] == ["max_abs_diff"]
    assert parity.compare_top_k("m.tflite", "tflite_runtime", "float16", "top_k", reference, off, FULL).passed
    outside = (np.array([[3, 4, 6]]), np.array([[5.0, 4.000004, 4.0]]))  # row 6: the catalog has 5
    result = parity.compare_top_k("m.tflite", "tflite_runtime", "float16", "top_k", reference, outside, FULL)
    assert not result.passed and result.figures["max_abs_diff"] == math.inf
    short = (np.array([[3, 4]]), np.array([[5.0, 4.000004]]))
    assert not parity.compare_top_k("m.tflite", "tflite_runtime", "none", "top_k", reference, short, FULL).passed


def test_int8_modes_bound_single_values_by_their_rms_bound():
    from convert.config import DEFAULT_TOLERANCES, Quantization

    assert parity.score_bound(parity.tolerances_for("none")) == 1e-5
    assert parity.score_bound(parity.tolerances_for("dynamic-int8")) == DEFAULT_TOLERANCES[
        Quantization.DYNAMIC_INT8].rmse_diff


def test_user_states_within_1e_5_pass_and_beyond_fail():
    vectors = np.array([[0.5, -0.25, 1.0], [0.0, 0.0, 0.0]], np.float32)
    biases = np.array([[0.1], [0.0]], np.float32)
    close = (vectors + np.float32(3e-6), biases - np.float32(2e-6))
    result = parity.compare_state("m.tflite", "tflite_runtime", "none", (vectors, biases), close)
    assert result.passed and (result.users, result.movies) == (2, 3)
    assert result.figures["max_abs_diff"] == pytest.approx(3e-6, rel=0.05)
    far = (vectors.copy(), biases.copy())
    far[1][1, 0] = np.float32(2e-5)  # the empty history's bias moved
    result = parity.compare_state("m.tflite", "tflite_runtime", "none", (vectors, biases), far)
    assert not result.passed and "bias_max_abs_diff" in result.failures[0]
    result = parity.compare_state("m.tflite", "tflite_runtime", "none", (vectors, biases), (vectors[:1], biases[:1]))
    assert not result.passed and "shape" in result.failures[0]


HISTORIES = {"seed": 1, "lengths": [0, 2], "sha256": "h1"}


def factor_answers(shift: float = 0.0) -> dict:
    """A hand-built answer set of a model with every signature: 3 users, 2 histories, 4 movies, k = 2."""
    scores = reference_matrix()[:, :4] + np.float32(shift)
    order = np.argsort(-scores, axis=1, kind="stable") + 1
    states = (3.0 + np.arange(8, dtype=np.float32).reshape(2, 4) / 8) + np.float32(shift)
    state_order = np.argsort(-states, axis=1, kind="stable") + 1
    answers = {
        "score_rows.rating": scores,
        "score_history.rating": states,
        "user_state.user_vector": np.array([[0.0, 0.0], [0.5, -0.5]], np.float32) + np.float32(shift),
        "user_state.user_bias": np.array([[0.0], [0.25]], np.float32),
        "score_rows_for_state.rating": states.copy(),
    }
    for key, matrix, rows in (("top_k", scores, order), ("top_k_for_state", states, state_order)):
        ranked = np.take_along_axis(matrix, rows - 1, 1)
        answers[f"{key}.item_rows"], answers[f"{key}.rating"] = rows[:, :2], ranked[:, :2]
        answers[f"{key}.catalog.item_rows"], answers[f"{key}.catalog.rating"] = rows, ranked
    return answers


def write_answers(prefix, answers, signatures, **meta):
    meta = {"index_users": USERS, "histories": HISTORIES, **meta}
    write_scores(prefix, reference_matrix()[:, :4], signatures=signatures, **meta)
    np.savez(prefix.with_name(prefix.name + ".npz"), **answers)
    return prefix


def test_every_signature_of_a_factor_model_is_compared_and_a_personalized_mismatch_fails(tmp_path):
    from device_runtime import contract

    everything = list(contract.SIGNATURES)
    reference = write_answers(tmp_path / "x86", factor_answers(), everything)
    board = write_answers(tmp_path / "board", factor_answers(2e-6), everything, backend="tflite_runtime")
    comparison = parity.compare_files(reference, board)
    assert comparison.passed, [r.failures for r in comparison.results if not r.passed]
    assert comparison.not_present == ()
    assert [result.label for result in comparison.results] == [
        "serving_default", "score_rows", "top_k k=2", "top_k k=4", "score_history", "user_state",
        "score_rows_for_state", "top_k_for_state k=2", "top_k_for_state k=4",
    ]
    moved = factor_answers(2e-6)
    moved["score_rows_for_state.rating"][1, 2] += np.float32(3e-5)  # one personalized score off by 3e-5
    far = write_answers(tmp_path / "far", moved, everything)
    comparison = parity.compare_files(reference, far)
    failed = [result.signature for result in comparison.results if not result.passed]
    assert failed == ["score_rows_for_state"] and not comparison.passed
    assert parity.main([str(reference), str(far)]) == 1


def test_signatures_a_model_lacks_are_not_present_not_failures(tmp_path, capsys):
    tower = ["serving_default", "score_rows", "top_k"]
    answers = {name: array for name, array in factor_answers().items() if name.startswith(("score_rows.", "top_k."))}
    reference = write_answers(tmp_path / "x86", answers, tower)
    comparison = parity.compare_files(reference, write_answers(tmp_path / "board", answers, tower))
    assert comparison.passed and len(comparison.results) == 4
    assert comparison.not_present == ("score_history", "user_state", "score_rows_for_state", "top_k_for_state")
    assert parity.main([str(reference), str(tmp_path / "board")]) == 0
    assert "not present in the model (not a failure): score_history, user_state" in capsys.readouterr().out


def test_different_histories_or_missing_answers_fail(tmp_path):
    everything = ["serving_default", "score_rows", "top_k", "score_history", "user_state", "score_rows_for_state",
                  "top_k_for_state"]
    reference = write_answers(tmp_path / "x86", factor_answers(), everything)
    other = write_answers(tmp_path / "other", factor_answers(), everything, histories={**HISTORIES, "sha256": "h2"})
    comparison = parity.compare_files(reference, other)
    failed = {result.signature for result in comparison.results if not result.passed}
    assert failed == {"score_history", "user_state", "score_rows_for_state", "top_k_for_state"}
    assert "different histories" in parity.format_result(comparison.results[-1])
    no_answers = write_scores(tmp_path / "none", reference_matrix()[:, :4], signatures=everything,
                              histories=HISTORIES, index_users=USERS)
    comparison = parity.compare_files(reference, no_answers)
    assert sum(not result.passed for result in comparison.results) == 6  # every signature but the strings one
    fewer = write_answers(tmp_path / "fewer", factor_answers(), everything[:3])
    assert not parity.compare_files(reference, fewer).passed
    others = write_answers(tmp_path / "others", factor_answers(), everything, index_users=["1", "2", "4"])
    failed = [result for result in parity.compare_files(reference, others).results if not result.passed]
    assert [result.signature for result in failed] == ["score_rows", "top_k"]
    assert "different users" in failed[0].failures[0]

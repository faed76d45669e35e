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
    result = parity.compare_files(reference, board)
    assert result.passed and (result.model, result.backend) == ("m.tflite", "tflite_runtime")
    other = write_scores(tmp_path / "other", reference_matrix(), model_sha256="bb")
    result = parity.compare_files(reference, other)
    assert not result.passed and "different .tflite" in result.failures[0]


def test_the_comparison_command_exits_1_on_mismatch_and_2_on_missing_files(tmp_path, capsys):
    reference = write_scores(tmp_path / "x86", reference_matrix())
    far = write_scores(tmp_path / "far", reference_matrix() + np.float32(1e-4))
    assert parity.main([str(reference), str(reference)]) == 0
    assert parity.main([str(reference), str(far)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert parity.main([str(reference), str(tmp_path / "absent")]) == 2

"""The int8 modes: dynamic-range (refused where it cannot run) and weight-only (runs on XNNPACK)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from convert import TargetError
from device_runtime.flatbuffer import read_flatbuffer
from tests.convert.conftest import FEW_RANKING_USERS
from tests.convert.scoring import buffers_and_readers, independent_figures, litert_scores, litert_signature, rows

pytestmark = pytest.mark.tensorflow


def runs_with_default_delegates(model_path, movies) -> bool:
    try:
        litert_scores(model_path, ["1"] * len(movies), movies)
    except RuntimeError:
        return False
    return True


def op_versions(path) -> dict:
    return {code.name: code.version for code in read_flatbuffer(path.read_bytes()).operator_codes}


@pytest.fixture(scope="module")
def movies(tiny_export):
    return (tiny_export / "vocab" / "movies.txt").read_text(encoding="utf-8").splitlines()[:100]


def assert_holds_its_bounds(result, figures: dict) -> None:
    """The file's own figures, measured here, are within the bounds it was accepted under, and as reported."""
    assert result.accepted, getattr(result, "failures", result)
    bounds = result.tolerances
    assert figures["rmse_diff"] <= bounds["rmse_diff"], figures
    assert figures["top10_overlap"] >= bounds["top10_overlap"], figures
    assert figures["kendall_tau"] >= bounds["kendall_tau"], figures
    assert result.parity.rmse_diff == pytest.approx(figures["rmse_diff"], abs=1e-6)
    assert result.parity.max_abs_diff == pytest.approx(figures["max_abs_diff"], abs=1e-6)


class TestDynamicRangeInt8:
    def test_accepted_on_litert_within_its_bounds(self, conversions, tiny_export, test_split):
        result = conversions.get("dynamic-int8", quantization="dynamic-int8", ranking_users=FEW_RANKING_USERS)
        # LiteRT's XNNPACK cannot run int8 FULLY_CONNECTED; the converter measured it with builtin kernels too.
        figures = independent_figures(tiny_export, result.tflite_path, test_split, delegates=False)
        assert_holds_its_bounds(result, figures)
        assert op_versions(result.tflite_path)["FULLY_CONNECTED"] == 12

    def test_reported_xnnpack_verdict_is_what_litert_does(self, conversions, movies):
        result = conversions.get("dynamic-int8", quantization="dynamic-int8", ranking_users=FEW_RANKING_USERS)
        litert = next(r for r in result.runtimes if r.runtime == "ai_edge_litert")
        assert litert.with_default_delegates.runs == runs_with_default_delegates(result.tflite_path, movies)
        assert litert.without_default_delegates.runs
        target = next(t for t in result.targets if t.target == "litert")
        if not litert.with_default_delegates.runs:
            assert any("only with builtin kernels" in note for note in target.notes)

    def test_refused_for_tflite_runtime_2_14_leaving_nothing_at_out(self, conversions):
        error = conversions.get(
            "dynamic-int8-old-runtime",
            quantization="dynamic-int8",
            targets=("litert", "tflite-runtime-2.14"),
            ranking_users=FEW_RANKING_USERS,
        )
        assert isinstance(error, TargetError)
        assert [f.check for f in error.failures] == ["target.tflite-runtime-2.14"]
        assert "FULLY_CONNECTED v12 is newer than tflite-runtime-2.14 supports (v10 at most)" in str(error)
        out = conversions.folder / "dynamic-int8-old-runtime" / "model.tflite"
        assert not out.exists()
        assert error.result.tflite_path == out.with_name("model.rejected.tflite") and error.result.tflite_path.is_file()
        report = json.loads(out.with_name("model.rejected.parity.json").read_text(encoding="utf-8"))
        assert report["accepted"] is False and report["failures"][0]["check"] == "target.tflite-runtime-2.14"


@pytest.fixture(scope="module")
def weight_only(conversions):
    return conversions.get(
        "weight-only-int8",
        quantization="weight-only-int8",
        targets=("litert-xnnpack", "tflite-runtime-2.14"),
        ranking_users=FEW_RANKING_USERS,
    )


class TestWeightOnlyInt8:
    def test_accepted_within_its_bounds(self, weight_only, tiny_export, test_split):
        assert_holds_its_bounds(weight_only, independent_figures(tiny_export, weight_only.tflite_path, test_split))

    def test_int8_weights_feed_float_kernels(self, weight_only):
        versions = op_versions(weight_only.tflite_path)
        assert versions["DEQUANTIZE"] == 5  # per-channel int8 input
        assert versions["FULLY_CONNECTED"] == 1  # float kernels, loadable by tflite-runtime 2.14

    def test_runs_with_litert_default_delegates(self, weight_only, movies):
        assert runs_with_default_delegates(weight_only.tflite_path, movies)

    def test_smaller_than_float32(self, weight_only, conversions):
        float32 = conversions.get("float32")
        assert weight_only.tflite_path.stat().st_size < 0.6 * float32.tflite_path.stat().st_size


@pytest.fixture(scope="module")
def quantized(conversions, factor_saved_model, device_pythons):
    """The factor family in weight-only int8, for LiteRT with XNNPACK and tflite-runtime 2.14."""
    result = conversions.get(
        "factor-weight-only-int8",
        saved_model=factor_saved_model,
        quantization="weight-only-int8",
        targets=("litert-xnnpack", "tflite-runtime-2.14"),
        runtime_pythons=device_pythons,
        ranking_users=FEW_RANKING_USERS,
    )
    assert result.accepted, getattr(result, "failures", result)
    return result


class TestWeightOnlyInt8SharedTables:
    """The factor family reads one movie table from seven subgraphs: it is quantized once, for all of them."""

    INT8 = 9  # schema TensorType.INT8

    def test_the_movie_table_is_one_int8_buffer_read_by_every_subgraph(self, quantized, factor_tables):
        table = factor_tables.movie_vectors
        found = [
            (data, readers)
            for data, readers in buffers_and_readers(quantized.tflite_path).values()
            if len(data) == table.size
        ]
        assert len(found) == 1, "the movie table should be stored once, as int8"
        data, readers = found[0]
        assert len({subgraph for subgraph, _, _ in readers}) >= 5
        assert {tensor_type for _, tensor_type, _ in readers} == {self.INT8}
        (scales,) = {scale for _, _, scale in readers}  # one scheme for every reader
        # Symmetric int8 with one scale: the table's largest magnitude maps to 127.
        assert scales == pytest.approx((np.abs(table).max() / 127,), rel=1e-6)
        np.testing.assert_array_equal(
            np.frombuffer(data, np.int8), np.round(table.reshape(-1) / scales[0]).astype(np.int8)
        )

    def test_every_signature_computes_with_the_dequantized_tables(self, quantized, factor_tables):
        def dequantized(values):
            scale = np.abs(values).max() / 127
            return (np.round(values / scale) * scale).astype(np.float32)

        # Tables below 1,024 values (the biases) stay float32; the vector tables become int8.
        tables = dataclasses.replace(
            factor_tables,
            user_vectors=dequantized(factor_tables.user_vectors),
            movie_vectors=dequantized(factor_tables.movie_vectors),
        )
        every_movie = np.arange(1, len(tables.movies) + 1, dtype=np.int32)
        scored = litert_signature(quantized.tflite_path, "score_rows", user_row=rows(9), item_rows=every_movie)
        np.testing.assert_allclose(
            scored["rating"], tables.ratings(np.full(len(every_movie), 9), every_movie), atol=3e-6
        )
        best = litert_signature(quantized.tflite_path, "top_k", user_row=rows(9), k=rows(5))
        np.testing.assert_allclose(
            best["rating"], np.sort(tables.ratings(np.full(len(every_movie), 9), every_movie))[::-1][:5], atol=3e-6
        )

    def test_smaller_than_float32_and_loads_everywhere(self, quantized, factor_float32, device_pythons):
        assert quantized.size_bytes < factor_float32.size_bytes
        assert all(check.loads and check.runs for check in quantized.runtimes)
        assert {"tflite_runtime"} <= {check.runtime for check in quantized.runtimes} or not device_pythons
        assert all(target.passed for target in quantized.targets)

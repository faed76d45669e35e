"""A model trained in seconds, converted to float32 and float16, checked against TensorFlow and LiteRT directly."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert import ConversionConfig, ParityError, Tolerances, check_parity
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.manifest import read_manifest
from tests.convert.conftest import FEW_RANKING_USERS
from tests.convert.scoring import independent_figures, litert_scores, saved_model_scores

pytestmark = pytest.mark.tensorflow

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def float32(conversions):
    return conversions.get("float32")


@pytest.fixture(scope="module")
def float16_cli(tiny_export, tmp_path_factory):
    """The float16 variant, made through the command line as a user would."""
    out = tmp_path_factory.mktemp("cli") / "model-float16.tflite"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "convert",
            str(tiny_export),
            "--out",
            str(out),
            "--quantize",
            "float16",
            "--ranking-users",
            str(FEW_RANKING_USERS),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return out, completed


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


class TestFloat32:
    def test_only_the_model_and_its_report_are_written(self, float32):
        assert float32.accepted
        assert sorted(p.name for p in float32.tflite_path.parent.iterdir()) == ["model.parity.json", "model.tflite"]

    def test_matches_the_saved_model_on_every_test_pair(self, float32, tiny_export, test_split):
        users, items = list(test_split.user_id), list(test_split.movie_title)
        expected = saved_model_scores(tiny_export / "saved_model", users, items)
        actual = litert_scores(float32.tflite_path, users, items)
        difference = np.abs(actual - expected)
        assert len(actual) == 20_000
        assert difference.max() <= 1e-4
        report = json.loads(float32.report_path.read_text(encoding="utf-8"))["parity"]
        assert report["pairs"] == 20_000
        assert report["max_abs_diff"] == pytest.approx(float(difference.max()), abs=1e-6)
        truth = test_split.user_rating.astype(np.float64)
        assert report["rmse_saved_model"] == pytest.approx(np.sqrt(np.mean((expected - truth) ** 2)), abs=1e-6)
        assert report["rmse_tflite"] == pytest.approx(np.sqrt(np.mean((actual - truth) ** 2)), abs=1e-6)

    def test_ranking_covers_200_users_and_every_movie(self, float32, tiny_export, test_split):
        parity = float32.parity
        assert parity.ranking_users == 200
        assert parity.ranking_movies == len(read_lines(tiny_export / "vocab" / "movies.txt"))
        figures = independent_figures(tiny_export, float32.tflite_path, test_split)
        assert figures["top10_overlap"] >= 0.99 and figures["kendall_tau"] >= 0.999, figures

    def test_manifest_is_embedded_with_the_vocabularies(self, float32, tiny_export):
        manifest = read_manifest(read_flatbuffer(float32.tflite_path.read_bytes()))
        users = read_lines(tiny_export / "vocab" / "users.txt")
        movies = read_lines(tiny_export / "vocab" / "movies.txt")
        assert list(manifest.users) == users and list(manifest.movies) == movies
        assert manifest.users_sha256 == hashlib.sha256("".join(f"{u}\n" for u in users).encode("utf-8")).hexdigest()
        assert manifest.quantization == "none"
        assert (manifest.signature.user_input, manifest.signature.item_input, manifest.signature.output) == (
            "user_id",
            "movie_title",
            "rating",
        )
        metrics = json.loads((tiny_export / "metrics.json").read_text(encoding="utf-8"))
        assert manifest.training_metrics["test_rmse"] == metrics["test_rmse"]
        assert float32.vocabulary_source == "export folder vocab/"

    def test_only_builtin_ops(self, float32):
        codes = read_flatbuffer(float32.tflite_path.read_bytes()).operator_codes
        assert codes and not any(code.is_custom for code in codes)
        assert {"HASHTABLE_FIND", "GATHER", "FULLY_CONNECTED"} <= {code.name for code in codes}

    def test_runtime_report_agrees_with_a_direct_run(self, float32, tiny_export):
        litert = next(r for r in float32.runtimes if r.runtime == "ai_edge_litert")
        assert litert.loads and litert.with_default_delegates.runs and litert.with_default_delegates.latency_ms > 0
        movies = read_lines(tiny_export / "vocab" / "movies.txt")
        assert litert.candidates == len(movies)
        # The probe ranks every movie for the vocabulary's first user, against the SavedModel.
        users = [read_lines(tiny_export / "vocab" / "users.txt")[0]] * len(movies)
        direct = np.abs(
            litert_scores(float32.tflite_path, users, movies)
            - saved_model_scores(tiny_export / "saved_model", users, movies)
        )
        assert litert.with_default_delegates.max_abs_diff == pytest.approx(float(direct.max()), abs=1e-7)
        assert direct.max() <= 1e-4


class TestFloat16ThroughTheCommandLine:
    def test_accepted_with_a_summary(self, float16_cli):
        out, completed = float16_cli
        assert completed.returncode == 0, completed.stderr[-2000:]
        assert out.is_file() and out.with_name("model-float16.parity.json").is_file()
        assert completed.stdout.startswith(f"accepted: {out} (float16,")
        assert "parity on 20,000 test pairs" in completed.stdout
        assert "Traceback" not in completed.stderr and "I0000" not in completed.stderr

    def test_weights_are_float16_and_within_bounds(self, float16_cli, float32, tiny_export, test_split):
        out, _ = float16_cli
        report = json.loads(out.with_name("model-float16.parity.json").read_text(encoding="utf-8"))
        assert report["accepted"] and report["quantization"] == "float16"
        assert ("DEQUANTIZE", 3) in {(op["name"], op["version"]) for op in report["ops"]}
        figures = independent_figures(tiny_export, out, test_split)
        # float16 weights move scores, but by far less than the float16 bounds (2e-3 and 1e-3)
        assert 0 < figures["max_abs_diff"] <= 2e-3 and figures["rmse_diff"] <= 1e-3, figures
        assert report["parity"]["max_abs_diff"] == pytest.approx(figures["max_abs_diff"], abs=1e-6)
        assert report["parity"]["rmse_diff"] == pytest.approx(figures["rmse_diff"], abs=1e-6)
        assert out.stat().st_size < 0.75 * float32.tflite_path.stat().st_size

    def test_summary_table_is_built_from_the_reports(self, float16_cli, float32):
        out, _ = float16_cli
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "convert",
                "--summary-markdown",
                str(float32.report_path),
                str(out.with_name("model-float16.parity.json")),
            ],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert completed.returncode == 0
        rows = [
            line
            for line in completed.stdout.splitlines()
            if line.startswith("| none ") or line.startswith("| float16 ")
        ]
        # Per mode: size and parity, the bounds and the runtimes; then a row per other signature in the signature
        # table, and a row per signature in the latency table.
        others = len(float32.signature_keys) - 1
        assert len(rows) == 2 * (3 + others + (len(float32.signature_keys) if others else 0))
        size_kb = f"| {float32.size_bytes / 1024:.0f} KB |"
        assert size_kb in rows[0]

    def test_check_parity_reports_every_broken_bound_at_once(self, float16_cli, tiny_export):
        out, _ = float16_cli
        strict = ConversionConfig(
            tolerances=Tolerances(max_abs_diff=1e-9, rmse_diff=1e-12), ranking_users=FEW_RANKING_USERS
        )
        with pytest.raises(ParityError) as raised:
            check_parity(tiny_export, out, strict)
        checks = [f.check for f in raised.value.failures]
        # float16 moves every score a little: both bounds fail for the strings signature, and for every other one.
        assert checks[:3] == [
            "parity.serving_default.max_abs_diff",
            "parity.serving_default.ranking_max_abs_diff",
            "parity.serving_default.rmse_diff",
        ]
        signatures = read_manifest(read_flatbuffer(out.read_bytes())).signatures
        assert {check.split(".")[1] for check in checks} == set(signatures)
        assert f"{len(checks)} checks failed" in str(raised.value) and "must be <= 1e-09" in str(raised.value)

    def test_check_parity_uses_the_manifest_mode_by_default(self, float16_cli, tiny_export):
        out, _ = float16_cli
        figures = check_parity(tiny_export, out, ConversionConfig(ranking_users=FEW_RANKING_USERS))["serving_default"]
        # float16 moves scores by more than the float32 bound, so only float16's bounds let it pass
        assert figures.pairs == 20_000 and figures.max_abs_diff > 1e-4

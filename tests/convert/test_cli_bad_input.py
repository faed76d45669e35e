"""Every expected mistake: one line on stderr naming what was wrong, exit status 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.convert import models

REPOSITORY = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convert", *args],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# A report as `python -m convert` writes it, cut to what the summary tables read.
PARITY = {
    "pairs": 20000,
    "max_abs_diff": 1.4e-6,
    "mean_abs_diff": 2e-7,
    "rmse_saved_model": 0.93,
    "rmse_tflite": 0.93,
    "rmse_diff": 1e-8,
    "ranking_users": 200,
    "ranking_movies": 1664,
    "top10_overlap": 1.0,
    "top10_overlap_min": 1.0,
    "kendall_tau": 1.0,
    "kendall_tau_min": 0.9999,
    "ranking_max_abs_diff": 2e-6,
}
TOP_K = {
    "users": 200,
    "top10_identical": 1.0,
    "top10_exact": 0.99,
    "top10_overlap": 1.0,
    "top10_overlap_min": 1.0,
    "top100_identical": 0.995,
    "top100_exact": 0.98,
    "top100_overlap": 0.9999,
    "top100_overlap_min": 0.99,
    "max_abs_diff": 9.5e-7,
}
RUN = {
    "runs": True,
    "latency_ms": 1.5,
    "signatures": {
        "serving_default": {"runs": True, "latency_ms": 1.5},
        "score_rows": {"runs": True, "latency_ms": 0.25},
        "top_k": {"runs": False, "latency_ms": None},
    },
}
REPORT = {
    "quantization": "none",
    "size_bytes": 100_000,
    "accepted": True,
    "failures": [],
    "parity": PARITY,
    "signature": {"signature_key": "serving_default"},
    "signature_keys": ["serving_default", "score_rows", "top_k"],
    "signature_parity": {"serving_default": PARITY, "score_rows": {**PARITY, "max_abs_diff": 3e-6}, "top_k": TOP_K},
    "tolerances": {
        "max_abs_diff": 1e-4,
        "rmse_diff": 1e-5,
        "top10_overlap": 0.99,
        "kendall_tau": 0.999,
        "top10_identical": 1.0,
    },
    "runtimes": [
        {
            "runtime": "ai_edge_litert",
            "version": "2.3.0",
            "loads": True,
            "load_error": None,
            "candidates": 1664,
            "with_default_delegates": RUN,
            "without_default_delegates": {"runs": True, "latency_ms": 3.0, "signatures": {}},
        },
    ],
}


class TestRefusedBeforeTensorFlow:
    """Mistakes found from paths and options alone (these subprocesses never import TensorFlow)."""

    def test_missing_saved_model(self, tmp_path):
        result = run_cli(str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.tflite"))
        assert result.returncode == 2
        assert_one_line_error(result.stderr, "nowhere does not exist", "saved_model")

    def test_folder_that_is_not_a_saved_model(self, tmp_path):
        (tmp_path / "notes.txt").write_text("not a model")
        result = run_cli(str(tmp_path), "--out", str(tmp_path / "m.tflite"))
        assert result.returncode == 2
        assert_one_line_error(result.stderr, "is not a SavedModel (no saved_model.pb")

    def test_output_in_a_missing_folder(self, tmp_path):
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "saved_model.pb").write_bytes(b"")
        result = run_cli(str(tmp_path / "model"), "--out", str(tmp_path / "missing" / "m.tflite"))
        assert result.returncode == 2
        assert_one_line_error(result.stderr, "the folder of --out", "does not exist", "create it first")
        assert not (tmp_path / "missing").exists()

    @pytest.mark.parametrize(
        "options,fragments",
        [
            (["--quantize", "full-int8"], ["cannot keep the model's string inputs", "dynamic-int8"]),
            (["--quantize", "int4"], ["unknown quantization 'int4'"]),
            (["--tolerance", "max_abs_diff"], ["is not NAME=VALUE"]),
            (["--tolerance", "max_abs_diff=small"], ["'small' is not a number"]),
            (["--tolerance", "jitter=1"], ["unknown tolerance jitter"]),
            (["--target", "tflite-runtime-2.4"], ["unknown target 'tflite-runtime-2.4'"]),
            (["--user-input", "uid"], ["both --user-input and --item-input"]),
            (["--runtime-python", "/no/such/python"], ["is not an executable file"]),
        ],
    )
    def test_bad_options(self, tmp_path, options, fragments):
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "saved_model.pb").write_bytes(b"")
        result = run_cli(str(tmp_path / "model"), "--out", str(tmp_path / "m.tflite"), *options)
        assert result.returncode == 2
        assert_one_line_error(result.stderr, *fragments)

    def test_missing_out(self, tmp_path):
        result = run_cli(str(tmp_path))
        assert result.returncode == 2
        assert_one_line_error(result.stderr, "--out MODEL.tflite")

    def test_unreadable_summary_report(self, tmp_path):
        result = run_cli("--summary-markdown", str(tmp_path / "missing.parity.json"))
        assert result.returncode == 2
        assert_one_line_error(result.stderr, "cannot read report")

    @pytest.mark.parametrize(
        "change, fragment",
        [
            ({"parity": {}}, "its parity figures lack pairs, max_abs_diff, mean_abs_diff"),
            ({"parity": None}, "it has no parity figures"),
            ({"parity": {**PARITY, "kendall_tau": "high"}}, "its parity figures lack kendall_tau"),
            ({"runtimes": [{"runtime": "ai_edge_litert"}]}, "an entry of its runtimes lacks one of runtime, version"),
            ({"tolerances": None, "failures": None}, "it lacks tolerances, failures"),
            (
                {"signature_parity": {"top_k": {**TOP_K, "top100_identical": None}}},
                "the figures of its signature top_k lack one of users",
            ),
            ({"signature_parity": {"score_rows": {}}}, "the figures of its signature score_rows lack one of pairs"),
        ],
    )
    def test_malformed_summary_report(self, tmp_path, change, fragment):
        path = tmp_path / "model.parity.json"
        path.write_text(json.dumps({**REPORT, **change}), encoding="utf-8")
        result = run_cli("--summary-markdown", str(path))
        assert result.returncode == 2
        assert_one_line_error(result.stderr, f"{path} is not a report written by python -m convert ({fragment}")

    def test_summary_of_a_complete_report(self, tmp_path):
        path = tmp_path / "model.parity.json"
        path.write_text(json.dumps(REPORT), encoding="utf-8")
        result = run_cli("--summary-markdown", str(path))
        assert result.returncode == 0, result.stderr
        assert "| none | 98 KB | 1.4e-06 |" in result.stdout
        # Every other signature's parity, and every signature's latency (XNNPACK / builtin kernels).
        assert "| none | score_rows | 3.0e-06 | 1.0e-08 | 1.000 (1.0) | 1.0000 (0.9999) | - |" in result.stdout
        assert "| none | top_k | 9.5e-07 | - | 1.000 (1.0) | - | 100.0% / 99.5% (99.0% / 98.0%) |" in result.stdout
        assert "| none | score_rows | 0.250 / - |" in result.stdout and "| none | top_k | fails / - |" in result.stdout
        assert "| none | 0.0001 | 1e-05 | 0.99 | 0.999 | 1 |" in result.stdout


class TestNativeMessages:
    """TensorFlow's C++ lines stay quiet on success and are kept, and named, when the converter fails."""

    @staticmethod
    def fail_natively(*args):
        from convert import ConversionError

        os.write(2, b"I0000 00:00:1.0 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"loc(unknown): error: 'tf.Frobnicate' op is neither a custom op nor a flex op\n\n")
        raise ConversionError("the TFLite converter failed on m: failed while converting")

    def test_a_converter_failure_names_the_file_with_its_native_messages(self, tmp_path, capfd, monkeypatch):
        import convert.convert
        from convert.__main__ import main

        (tmp_path / "model").mkdir()
        monkeypatch.setattr(convert.convert, "convert_saved_model", self.fail_natively)
        status = main([str(tmp_path / "model"), "--out", str(tmp_path / "m.tflite")])
        stderr = capfd.readouterr().err
        assert status == 1
        assert_one_line_error(
            stderr,
            "failed while converting; TensorFlow said:",
            "\"loc(unknown): error: 'tf.Frobnicate' op is neither a custom op",
            "(all 1 of its native messages are in ",
        )
        kept = Path(stderr.strip().rsplit(" are in ", 1)[1].rstrip(")"))
        try:
            assert "oneDNN custom operations" in kept.read_text(encoding="utf-8")  # everything, info lines too
        finally:
            kept.unlink()

    def test_on_success_nothing_is_shown_or_kept(self, capfd):
        from convert.__main__ import _NativeOutput

        with _NativeOutput(enabled=True) as native:
            os.write(2, b"I0000 00:00:1.0 port.cc:153] oneDNN custom operations are on.\n")
            print("a Python message still shows", file=sys.stderr)
            saved = native.path
        native.discard()
        assert capfd.readouterr().err == "a Python message still shows\n"
        assert not saved.exists()


@pytest.mark.tensorflow
class TestRefusedAfterLoading:
    """Mistakes that need the SavedModel or the data loaded; run in-process to share TensorFlow."""

    @staticmethod
    def run_main(capfd, *args: str) -> tuple[int, str]:
        from convert.__main__ import main

        capfd.readouterr()  # drop what building the test model printed
        status = main(list(args))
        return status, capfd.readouterr().err

    def test_saved_model_without_serving_default(self, tmp_path, capfd):
        saved_model = models.saved_model_without_serving_default(tmp_path / "predict_only")
        status, stderr = self.run_main(capfd, str(saved_model), "--out", str(tmp_path / "m.tflite"))
        assert status == 2
        assert_one_line_error(stderr, "no signature 'serving_default'", "found: predict")
        assert not (tmp_path / "m.tflite").exists()

    def test_inputs_of_the_wrong_dtype(self, tmp_path, capfd):
        saved_model = models.saved_model_with_integer_user_ids(tmp_path / "int_ids")
        status, stderr = self.run_main(capfd, str(saved_model), "--out", str(tmp_path / "m.tflite"))
        assert status == 2
        assert_one_line_error(stderr, "input 'user_id' must be a string tensor, found int64")

    def test_other_input_names_without_a_mapping_list_what_was_found(self, tiny_export, tmp_path, capfd):
        saved_model = models.renamed_inputs_saved_model(tiny_export / "saved_model", tmp_path / "renamed")
        status, stderr = self.run_main(capfd, str(saved_model), "--out", str(tmp_path / "m.tflite"))
        assert status == 2
        assert_one_line_error(
            stderr, "found: title (string[-1]), uid (string[-1])", "--user-input NAME --item-input NAME"
        )

    def test_parity_data_that_does_not_match_the_vocabulary(self, tiny_export, tmp_path, capfd):
        folder = models.write_grouplens_folder(tmp_path / "other-ml-100k")
        status, stderr = self.run_main(
            capfd, str(tiny_export), "--out", str(tmp_path / "m.tflite"), "--parity-data", str(folder)
        )
        assert status == 2
        assert_one_line_error(
            stderr, "does not match the model's vocabulary", "0.0% of its 20,000 test pairs", "--parity-data"
        )
        assert list(tmp_path.glob("m*")) == []

    def test_parity_data_folder_that_does_not_exist(self, tiny_export, tmp_path, capfd):
        status, stderr = self.run_main(
            capfd, str(tiny_export), "--out", str(tmp_path / "m.tflite"), "--parity-data", str(tmp_path / "nothing")
        )
        assert status == 2
        assert_one_line_error(stderr, "parity data:", "is not a folder")

    @pytest.mark.parametrize(
        "defect, fragments",
        [
            (
                "partial personalized set",
                [
                    "has the personalized signature(s) score_history, user_state but not "
                    "score_rows_for_state, top_k_for_state",
                    "train.serving",
                ],
            ),
            ("partial index set", ["has the index signature(s) score_rows but not top_k"]),
            (
                "renamed index input",
                [
                    "signature 'score_rows' lacks the input(s) item_rows and has the unexpected input(s) rows",
                    "user_row (int32[1]), item_rows (int32[-1])",
                ],
            ),
            ("wrong index dtype", ["signature 'top_k' input 'k' must be int32[1], found int64[1]"]),
            ("missing personalized output", ["signature 'user_state' lacks the output(s) user_bias"]),
            ("serve endpoint", ["has a root attribute named 'serve'", "drop score_rows, top_k, score_history"]),
        ],
    )
    def test_a_contract_signature_that_does_not_fit(self, tmp_path, capfd, defect, fragments):
        saved_model = models.defective_factor_saved_model(tmp_path / "defective", defect)
        status, stderr = self.run_main(capfd, str(saved_model), "--out", str(tmp_path / "m.tflite"))
        assert status == 2
        assert_one_line_error(stderr, f"SavedModel {saved_model}", *fragments)
        assert not (tmp_path / "m.tflite").exists()

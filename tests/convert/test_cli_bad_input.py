"""Every expected mistake: one line on stderr naming what was wrong, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.convert import models

REPOSITORY = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convert", *args], cwd=REPOSITORY, capture_output=True, text=True, check=False, timeout=120
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


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
        assert_one_line_error(stderr, "found: title (string[-1]), uid (string[-1])", "--user-input NAME --item-input NAME")

    def test_parity_data_that_does_not_match_the_vocabulary(self, tiny_export, tmp_path, capfd):
        folder = models.write_grouplens_folder(tmp_path / "other-ml-100k")
        status, stderr = self.run_main(
            capfd, str(tiny_export), "--out", str(tmp_path / "m.tflite"), "--parity-data", str(folder)
        )
        assert status == 2
        assert_one_line_error(stderr, "does not match the model's vocabulary", "0.0% of its 20,000 test pairs", "--parity-data")
        assert list(tmp_path.glob("m*")) == []

    def test_parity_data_folder_that_does_not_exist(self, tiny_export, tmp_path, capfd):
        status, stderr = self.run_main(
            capfd, str(tiny_export), "--out", str(tmp_path / "m.tflite"), "--parity-data", str(tmp_path / "nothing")
        )
        assert status == 2
        assert_one_line_error(stderr, "parity data:", "is not a folder")

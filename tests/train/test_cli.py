"""`python -m train` with bad option values: one line naming the option, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from train import streaming
from train.__main__ import main

pytestmark = pytest.mark.tensorflow

REPO = Path(__file__).resolve().parents[2]


def _sharded_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    streaming.write_shards(folder, "train", ["1"], ["A (1990)"], [4], 1)
    streaming.write_shards(folder, "test", ["1"], ["A (1990)"], [4], 1)
    return folder


@pytest.mark.parametrize(
    "options, message",
    [
        (["--seed", "-1"], "seed must be between 0 and 4294967295, got -1"),
        (["--seed", str(2**32)], "seed must be between 0 and 4294967295, got 4294967296"),
        (["--max-train-rows", "0"], "--max-train-rows must be >= 1, got 0"),
        (["--max-train-rows", "-5"], "--max-train-rows must be >= 1, got -5"),
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
        (["--local-workers", "0"], "--local-workers must be >= 1, got 0"),
        (["--local-workers", "-2"], "--local-workers must be >= 1, got -2"),
        (["--worker-timeout", "-1"], "--worker-timeout must be > 0 seconds, got -1"),
        (["--worker-timeout", "0"], "--worker-timeout must be > 0 seconds, got 0"),
    ],
)
def test_bad_option_values_are_one_line_and_exit_2(tmp_path, capsys, options, message):
    out = tmp_path / "model"
    assert main(["--out", str(out), "--quiet", *options]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"train: error: {message}\n"
    assert captured.out == ""
    assert not out.exists()


def test_max_train_rows_with_sharded_data_is_refused(tmp_path, capsys):
    folder = _sharded_folder(tmp_path)
    assert main(["--out", str(tmp_path / "m"), "--data", str(folder), "--max-train-rows", "10", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"train: error: --max-train-rows applies to in-memory sources only, and --data {folder} is a sharded folder; "
        "write fewer rows into its train-*.tsv files, or drop --max-train-rows\n"
    )
    assert not (tmp_path / "m").exists()


def test_the_command_itself_prints_one_line_for_a_negative_seed(tmp_path):
    """The same through a real process: no traceback from numpy or TensorFlow."""
    result = subprocess.run(
        [sys.executable, "-m", "train", "--out", str(tmp_path / "m"), "--seed", "-1"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr == "train: error: seed must be between 0 and 4294967295, got -1\n"
    assert not (tmp_path / "m").exists()


def test_the_library_refuses_the_same_values_before_any_work(tmp_path):
    from train.config import preset_config
    from train.errors import ConfigError
    from train.pipeline import train_and_export

    with pytest.raises(ConfigError, match=r"--max-train-rows must be >= 1, got 0"):
        train_and_export(preset_config("tutorial"), tmp_path / "m", max_train_rows=0)
    with pytest.raises(ConfigError, match=r"--max-train-rows applies to in-memory sources only"):
        folder = str(_sharded_folder(tmp_path))
        train_and_export(preset_config("tutorial"), tmp_path / "m", data_source=folder, max_train_rows=5)
    with pytest.raises(ConfigError, match=r"seed must be between 0 and 4294967295, got -3"):
        preset_config("default", seed=-3)
    assert not (tmp_path / "m").exists()

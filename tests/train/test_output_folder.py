"""The output folder: atomic publication and refusal to overwrite foreign folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from train import artifacts
from train.errors import OutputError

pytestmark = pytest.mark.tensorflow

REPO = Path(__file__).resolve().parents[2]


def _fake_export(folder: Path, marker: str) -> None:
    (folder / "vocab").mkdir(parents=True)
    (folder / artifacts.METRICS_FILE).write_text(json.dumps({"producer": artifacts.PRODUCER, "marker": marker}))


def test_foreign_folder_is_refused(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(OutputError, match=r"exists and is not an output of `python -m train`"):
        artifacts.publish_atomically(foreign, lambda staging: None)
    assert (foreign / "holiday.jpg").exists()


def test_earlier_export_is_replaced_only_when_the_new_one_is_complete(tmp_path):
    out = tmp_path / "model"
    _fake_export(out, "old")

    def failing_build(staging: Path) -> None:
        (staging / "half-written").write_text("x")
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        artifacts.publish_atomically(out, failing_build)
    assert json.loads((out / artifacts.METRICS_FILE).read_text())["marker"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left behind

    artifacts.publish_atomically(out, lambda staging: _fake_export(staging, "new"))
    assert json.loads((out / artifacts.METRICS_FILE).read_text())["marker"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_missing_parent_folders_are_created(tmp_path):
    out = tmp_path / "a" / "b" / "model"
    artifacts.publish_atomically(out, lambda staging: _fake_export(staging, "x"))
    assert artifacts.is_training_output(out)


def test_cli_refuses_a_foreign_folder_with_one_line(tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "train", "--out", str(foreign), "--quiet"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("train:")]
    assert errors == [
        f"train: error: --out {foreign} exists and is not an output of `python -m train`; "
        "choose a new folder or remove it yourself"
    ]
    assert "Traceback" not in result.stderr


def test_cli_bad_data_path_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "train", "--out", str(tmp_path / "m"), "--data", str(tmp_path / "none"), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "is not a folder; pass 'recbole', 'tfds' or a folder with u.data, u.item, u.user" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m").exists()


def test_json_is_written_with_null_for_figures_that_are_not_finite(tmp_path):
    from device_runtime.files import current_umask

    path = tmp_path / "metrics.json"
    figures = {"rmse": float("nan"), "best": float("inf"), "curve": [0.9, float("-inf")], "n": 3}
    artifacts.write_json_atomically(path, figures)
    assert json.loads(path.read_text()) == {"rmse": None, "best": None, "curve": [0.9, None], "n": 3}
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

"""The scale benchmark: its training command, its reading of metrics.json, its outputs (training stood in for)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from evaluation import scale
from evaluation.__main__ import main
from evaluation.errors import StepError
from evaluation.scale import (
    RESULTS_FILE,
    TABLE_FILE,
    ScaleRecord,
    ScaleResults,
    ScaleSettings,
    format_scale_markdown,
    record_from_metrics,
)
from tests.evaluation import fakes

# What `python -m train --local-workers 2` leaves in metrics.json (train/pipeline.py and train/__main__.py), trimmed.
METRICS = {
    "preset": "tutorial",
    "test_rmse": 1.0371,
    "rows": {"train": 799_876, "test": 200_124},
    "fit_seconds": 62.8,
    "train_examples_per_second": 12_735.0,
    "distribution": {"workers": 2, "worker_peak_rss_mb": [896.4, 900.2], "launcher_wall_seconds": 95.5},
}


def test_a_run_is_read_from_its_metrics():
    record = record_from_metrics(METRICS, rows=1_000_000, workers=2, batch_size=32_768, source=Path("m.json"))
    assert record == ScaleRecord(rows=1_000_000, train_rows=799_876, workers=2, batch_size=32_768,
                                 examples_per_second=12_735.0, fit_seconds=62.8, peak_rss_mb_per_worker=(896.4, 900.2),
                                 test_rmse=1.0371, wall_seconds=95.5)


def test_metrics_without_the_launchers_figures_are_refused():
    one_process = {**METRICS, "distribution": {"workers": 1}}
    with pytest.raises(StepError, match=r"m\.json has no 'worker_peak_rss_mb'; was it written by `python -m train"):
        record_from_metrics(one_process, 1, 1, 8, Path("m.json"))
    with pytest.raises(StepError, match="malformed figure"):
        record_from_metrics({**METRICS, "fit_seconds": "slow"}, 1, 1, 8, Path("m.json"))


def test_markdown_names_the_command_machine_and_preset(tmp_path):
    settings = ScaleSettings(out=tmp_path, rows=(1_000_000,), workers=(2,), preset="adam")
    record = record_from_metrics(METRICS, 1_000_000, 2, 32_768, Path("m.json"))
    results = ScaleResults(settings, fakes.machine(), fakes.STARTED_AT, (record,))
    text = format_scale_markdown(results, "python -m evaluation scale")
    lines = text.splitlines()
    assert "Produced by `python -m evaluation scale` on 2025-01-02T03:04:05+00:00." in lines
    assert any(line.startswith("Machine: Test CPU 9000 (x86_64, 2 of 4 cores usable") for line in lines)
    assert "| 1,000,000 | 2 | 12,735 | 62.8 | 896, 900 | 1.037 |" in lines
    assert "`adam` preset, 1 epoch, global batch 32,768" in text


class FakeTraining:
    """Stands in for `python -m train --local-workers N`: writes the metrics.json a real run would."""

    def __init__(self, fail: bool = False):
        self.commands: list[list[str]] = []
        self.fail = fail

    def __call__(self, command, **options):
        self.commands.append(command)
        if self.fail:
            stderr = "starting\nerror: preset 'default' trains on in-memory data\n"
            return subprocess.CompletedProcess(command, 2, "", stderr)
        out = Path(command[command.index("--out") + 1])
        workers = int(command[command.index("--local-workers") + 1])
        out.mkdir(parents=True)
        metrics = {**METRICS, "distribution": {**METRICS["distribution"], "worker_peak_rss_mb": [500.0] * workers}}
        (out / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        return subprocess.CompletedProcess(command, 0, "", "")


def _with_training(monkeypatch, training: FakeTraining) -> FakeTraining:
    real = scale.run_scale
    monkeypatch.setattr(scale, "run_scale", lambda settings: real(settings, run=training))
    return training


def test_every_row_count_with_every_worker_count(tmp_path, monkeypatch, capsys):
    training = _with_training(monkeypatch, FakeTraining())
    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["scale", "--out", str(out), "--work-dir", str(work), "--rows", "300,600", "--workers", "1,2",
            "--users", "20", "--items", "10", "--batch-size", "64", "--preset", "adam"]
    assert main(argv) == 0
    # Each data set generated once (real synthetic shards), each run a fresh launcher, scratch exports removed.
    assert sorted(p.name for p in work.iterdir()) == ["synthetic-300-20-10", "synthetic-600-20-10"]
    runs = [(Path(c[c.index("--data") + 1]).name, c[c.index("--local-workers") + 1]) for c in training.commands]
    assert runs == [("synthetic-300-20-10", "1"), ("synthetic-300-20-10", "2"),
                    ("synthetic-600-20-10", "1"), ("synthetic-600-20-10", "2")]
    command = training.commands[0]
    assert command[1:4] == ["-m", "train", "--data"]
    assert command[command.index("--preset") + 1] == "adam" and command[command.index("--batch-size") + 1] == "64"
    assert "--epochs" in command and command[command.index("--epochs") + 1] == "1"
    document = json.loads((out / RESULTS_FILE).read_text(encoding="utf-8"))
    assert document["command"] == "python -m evaluation " + " ".join(argv)
    assert document["machine"]["cpu_model"]  # benchmarks.machine's description
    assert [(r["rows"], r["workers"], r["peak_rss_mb_per_worker"]) for r in document["records"]] == [
        (300, 1, [500.0]), (300, 2, [500.0, 500.0]), (600, 1, [500.0]), (600, 2, [500.0, 500.0]),
    ]
    table = (out / TABLE_FILE).read_text(encoding="utf-8")
    assert table == capsys.readouterr().out
    assert f"Produced by `{document['command']}`" in table


def test_a_failed_run_is_one_line(tmp_path, monkeypatch, capsys):
    _with_training(monkeypatch, FakeTraining(fail=True))
    status = main(["scale", "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--rows", "100",
                   "--workers", "1", "--users", "5", "--items", "5", "--preset", "default"])
    stderr = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert stderr[-1] == ("python -m evaluation scale: error: default on 100 rows with 1 worker(s) failed: "
                          "error: preset 'default' trains on in-memory data")
    assert not (tmp_path / "out" / RESULTS_FILE).exists()
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["synthetic-100-5-5"]  # no scratch export left


def test_mf_runs_add_the_history_and_memory_as_rows_grow(tmp_path):
    details = {"architecture_details": {"implicit_feedback": {"ratings_kept": 799_000, "max_rated_per_user": 256}}}
    small = record_from_metrics({**METRICS, **details}, 1_000_000, 2, 32_768, Path("m.json"))
    assert small.history_ratings == 799_000
    large = dataclasses.replace(small, rows=10_000_000, peak_rss_mb_per_worker=(950.0, 990.0),
                                history_ratings=7_990_000)
    settings = ScaleSettings(out=tmp_path, rows=(1_000_000, 10_000_000), workers=(2,), preset="mf")
    lines = format_scale_markdown(ScaleResults(settings, fakes.machine(), fakes.STARTED_AT, (small, large)),
                                  "python -m evaluation scale --preset mf").splitlines()
    assert "| 1,000,000 | 2 | 12,735 | 62.8 | 896, 900 | 1.037 | 799,000 |" in lines
    assert "| 10,000,000 | 2 | 12,735 | 62.8 | 950, 990 | 1.037 | 7,990,000 |" in lines
    # The largest worker: 900 MB at 1M rows, 990 MB at 10M rows: +10%.
    assert ("Memory as rows grow, 2 worker(s): 10 times the rows (1,000,000 to 10,000,000), peak RSS of the largest "
            "worker 900 to 990 MB (+10%).") in lines

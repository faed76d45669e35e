"""Multi-worker training: TF_CONFIG, the local launcher, two real workers, the output lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train import artifacts, distributed
from train.errors import ConfigError, OutputError

pytestmark = pytest.mark.tensorflow

REPO = Path(__file__).resolve().parents[2]


def _tf_config(cluster, task):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}


def test_tf_config_two_workers():
    cluster = distributed.cluster_from_environment(
        _tf_config({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 1})
    )
    assert cluster.workers == ("a:1", "b:2") and cluster.size == 2 and not cluster.is_chief
    chief = distributed.cluster_from_environment(_tf_config({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 0}))
    assert chief.is_chief


def test_tf_config_absent_or_single_worker_means_one_process():
    assert distributed.cluster_from_environment({}) is None
    assert distributed.cluster_from_environment(_tf_config({"worker": ["a:1"]}, {"type": "worker", "index": 0})) is None


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", r"TF_CONFIG is not valid JSON"),
        (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}), r'TF_CONFIG needs \{"cluster"'),
        (
            json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}),
            r"task .* is not one of the cluster's tasks",
        ),
        (
            json.dumps({"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker", "index": 0}}),
            r"parameter servers",
        ),
        (
            json.dumps({"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}),
            r"must be a list of 'host:port' strings",
        ),
    ],
)
def test_malformed_tf_config_is_refused(raw, message):
    with pytest.raises(ConfigError, match=message):
        distributed.cluster_from_environment({"TF_CONFIG": raw})


def test_cli_malformed_tf_config_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "train", "--out", str(tmp_path / "m"), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CONFIG": "{oops"},
    )
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("train:")] == [
        "train: error: TF_CONFIG is not valid JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); "
        "see docs/cluster.md"
    ]
    assert not (tmp_path / "m").exists()


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "model"
    with artifacts.output_lock(out):
        with pytest.raises(OutputError, match=rf"another `python -m train` run \(pid {os.getpid()}\) is writing --out"):
            with artifacts.output_lock(out):
                pass
        result = subprocess.run(
            [sys.executable, "-m", "train", "--out", str(out), "--quiet"], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 2 and "is writing --out" in result.stderr and "Traceback" not in result.stderr
    with artifacts.output_lock(out):  # released when the holder is done
        pass


def _children() -> set:
    """This process's child processes, running or not yet reaped (Linux /proc)."""
    pids = set()
    for path in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids.update(int(pid) for pid in path.read_text().split())
        except OSError:
            pass  # the thread ended while we read
    return pids


def test_a_failing_worker_stops_the_run_with_its_error(tmp_path):
    before = _children()
    worker_args = ["--out", str(tmp_path / "m"), "--data", str(tmp_path / "missing"), "--quiet"]
    message = r"worker \d exited with code 2: train: error: --data .* is not a folder"
    with pytest.raises(distributed.WorkerError, match=message):
        distributed.launch_local_workers(2, worker_args, timeout_seconds=120, log_dir=tmp_path / "logs")
    assert _children() <= before  # every worker was reaped
    assert not (tmp_path / "m").exists()


def test_workers_that_do_not_finish_in_time_are_stopped(tmp_path):
    before = _children()
    with pytest.raises(distributed.WorkerError, match=r"did not finish within 2 s; all workers were stopped"):
        worker_args = ["--out", str(tmp_path / "m"), "--quiet"]
        distributed.launch_local_workers(2, worker_args, timeout_seconds=2, log_dir=tmp_path / "logs")
    assert _children() <= before
    assert not (tmp_path / "m").exists()


def test_two_local_workers_match_one_worker(tmp_path):
    """Two real worker processes on loopback, tutorial preset, full data."""
    single = subprocess.run(
        [sys.executable, "-m", "train", "--out", str(tmp_path / "one"), "--preset", "tutorial", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run(
        [sys.executable, "-m", "train", "--out", str(tmp_path / "two"), "--preset", "tutorial", "--quiet"]
        + ["--local-workers", "2", "--worker-timeout", "400"],
        cwd=REPO, capture_output=True, text=True, timeout=500,
    )
    assert double.returncode == 0, double.stderr[-2000:]
    one = json.loads((tmp_path / "one" / artifacts.METRICS_FILE).read_text())
    two = json.loads((tmp_path / "two" / artifacts.METRICS_FILE).read_text())
    assert two["distribution"]["workers"] == 2 and two["distribution"]["replicas_in_sync"] == 2
    assert len(two["distribution"]["worker_peak_rss_mb"]) == 2
    assert abs(two["test_rmse"] - one["test_rmse"]) <= 0.02
    assert two["rows"] == one["rows"] and two["vocabulary_sizes"] == one["vocabulary_sizes"]
    assert (tmp_path / "two" / artifacts.SAVED_MODEL_DIR / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["one", "two"]

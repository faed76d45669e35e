"""The mf preset end to end: in memory, from shards with side files, on two real workers, and its bad cases."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from train import artifacts, streaming
from train.side_files import USERS_FILE, write_side_files

pytestmark = pytest.mark.tensorflow

REPO = Path(__file__).resolve().parents[2]


def _split(train_rows: int, test_rows: int):
    from train import load_ratings, split_ratings

    train, test = split_ratings(load_ratings())
    return train.take(np.arange(train_rows)), test.take(np.arange(test_rows))


def _bias_baseline_rmse(train, test, iterations: int = 10) -> float:
    """Test RMSE of global mean + user bias + movie bias, fitted by damped alternating means (numpy only)."""
    mean = float(np.mean(train.user_rating))
    users, movies = np.unique(train.user_id), np.unique(train.movie_title)
    u, m = np.searchsorted(users, train.user_id), np.searchsorted(movies, train.movie_title)
    user_bias, movie_bias = np.zeros(len(users)), np.zeros(len(movies))
    residual = train.user_rating - mean
    for _ in range(iterations):
        movie_bias = np.bincount(m, residual - user_bias[u], len(movies)) / (np.bincount(m, minlength=len(movies)) + 25)
        user_bias = np.bincount(u, residual - movie_bias[m], len(users)) / (np.bincount(u, minlength=len(users)) + 10)

    def bias(table, keys, key):
        position = np.clip(np.searchsorted(keys, key), 0, len(keys) - 1)
        return np.where(keys[position] == key, table[position], 0.0)

    scores = mean + bias(user_bias, users, test.user_id) + bias(movie_bias, movies, test.movie_title)
    return float(np.sqrt(np.mean((np.clip(scores, 1, 5) - test.user_rating) ** 2)))


def _saved_model_rmse(folder: Path, test) -> float:
    import tensorflow as tf

    signature = tf.saved_model.load(str(folder / artifacts.SAVED_MODEL_DIR)).signatures["serving_default"]
    scores = signature(user_id=tf.constant(test.user_id), movie_title=tf.constant(test.movie_title))["rating"]
    return float(np.sqrt(np.mean((scores.numpy() - test.user_rating.astype(np.float64)) ** 2)))


def test_in_memory_the_chosen_epochs_are_refitted_on_every_training_row(tmp_path):
    from train import preset_config
    from train.pipeline import train_and_export

    result = train_and_export(preset_config("mf", epochs=3), tmp_path / "model", max_train_rows=4000)
    metrics = json.loads((tmp_path / "model" / artifacts.METRICS_FILE).read_text())
    details = metrics["architecture_details"]
    assert metrics["preset"] == "mf" and metrics["hyperparameters"]["factorization"]["max_rated_per_user"] == 256
    assert details["refit"] == {"epochs": metrics["best_epoch"], "rows": 4000}  # 3,600 fit + 400 validation rows
    assert details["implicit_feedback"]["ratings_kept"] <= 4000 and details["side_features"] is True
    _, test = _split(4000, 20_000)
    assert result.test_rmse == pytest.approx(_saved_model_rmse(tmp_path / "model", test), abs=1e-5)
    import tensorflow as tf

    from device_runtime import contract

    loaded = tf.saved_model.load(str(tmp_path / "model" / artifacts.SAVED_MODEL_DIR))
    assert set(loaded.signatures) == {contract.STRINGS, contract.SCORE_ROWS, contract.TOP_K, contract.SCORE_HISTORY,
                                      contract.USER_STATE, contract.SCORE_ROWS_FOR_STATE, contract.TOP_K_FOR_STATE}


def test_from_shards_with_side_files_and_validation_held_out_by_hash(tmp_path):
    from train import preset_config
    from train.pipeline import train_and_export

    train, test = _split(6000, 2000)
    folder = tmp_path / "shards"
    streaming.write_shards(folder, "train", train.user_id, train.movie_title, train.user_rating, 3,
                           timestamps=train.timestamp)
    streaming.write_shards(folder, "test", test.user_id, test.movie_title, test.user_rating, 1,
                           timestamps=test.timestamp)
    write_side_files(folder, [train])
    result = train_and_export(preset_config("mf", epochs=4), tmp_path / "model", data_source=str(folder))
    metrics = result.metrics
    assert metrics["rows"] == {"total": 8000, "train": 6000, "validation": 0, "test": 2000}
    assert metrics["architecture_details"]["side_features"] is True
    assert metrics["architecture_details"]["refit"]["rows"] == 6000  # the hash-held-out rows join the refit
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 4
    assert result.test_rmse == pytest.approx(_saved_model_rmse(tmp_path / "model", test), abs=1e-5)


def _train(args, timeout):
    return subprocess.run([sys.executable, "-m", "train", "--preset", "mf", "--quiet", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_two_local_workers_land_where_one_process_does(tmp_path):
    """Two real worker processes on loopback against one process, on 40,000 training rows (the full
    check on 80,000 is in docs/cluster.md); both must beat a bias baseline fitted by hand."""
    rows = ["--max-train-rows", "40000"]
    single = _train(["--out", str(tmp_path / "one"), *rows], timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    double = _train(["--out", str(tmp_path / "two"), *rows, "--local-workers", "2", "--worker-timeout", "600"], 700)
    assert double.returncode == 0, double.stderr[-2000:]
    one = json.loads((tmp_path / "one" / artifacts.METRICS_FILE).read_text())
    two = json.loads((tmp_path / "two" / artifacts.METRICS_FILE).read_text())
    assert two["distribution"]["workers"] == 2 and two["distribution"]["replicas_in_sync"] == 2
    assert abs(two["test_rmse"] - one["test_rmse"]) <= 0.01
    assert two["rows"] == one["rows"] and two["vocabulary_sizes"] == one["vocabulary_sizes"]
    baseline = _bias_baseline_rmse(*_split(40_000, 20_000))
    assert max(one["test_rmse"], two["test_rmse"]) < baseline - 0.01, (one["test_rmse"], two["test_rmse"], baseline)


def test_a_worker_that_dies_during_training_stops_its_peer_with_one_line(tmp_path):
    """Two workers started by hand with TF_CONFIG (no launcher); worker 1 is killed during training."""
    from train.distributed import free_ports

    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        environment = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                                           "index": index}})}
        log = subprocess.PIPE if index == 0 else open(tmp_path / f"worker-{index}.log", "w", encoding="utf-8")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "train", "--preset", "mf", "--out", str(tmp_path / "model"), "--epochs", "40"],
            cwd=REPO, env=environment, stdout=log, stderr=log, text=True,
        ))
    try:
        chief_lines = []
        for line in workers[0].stderr:  # wait for training to be under way
            chief_lines.append(line)
            if "matrix factorisation epoch 1/" in line:
                break
        workers[1].send_signal(signal.SIGKILL)
        started = time.monotonic()
        remaining = workers[0].communicate(timeout=120)[1]
        assert time.monotonic() - started < 60
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    errors = [line for line in remaining.splitlines() if line.startswith("train:")]
    assert workers[0].returncode == 2
    assert errors == [
        "train: error: worker 0 lost contact with another worker during training (UnavailableError: a collective "
        "could not reach it); a worker died or was stopped, and every worker must run until the end: restart all "
        "of them (the other workers' logs name the first error)"
    ]
    assert "Traceback" not in remaining
    assert not (tmp_path / "model").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".model.tmp")] == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: (folder / USERS_FILE).write_text(
            "user_id\tage\tgender\toccupation\tzip_code\n1\tten\tM\tx\t1\n", encoding="utf-8"),
         r"users.tsv line 2: age 'ten' is not a whole number \(leave it empty if unknown\)"),
        (lambda folder: (folder / "train-00001-of-00002.tsv").write_text(
            f"{streaming.TIMESTAMP_HEADER}\n1\tA (1990)\t4\t100\n1\tB (1991)\t4\n", encoding="utf-8"),
         r"train-00001-of-00002.tsv line 3: expected 4 tab-separated columns, found 3"),
    ],
)
def test_a_bad_shard_or_side_file_is_one_line_and_exit_2(tmp_path, capsys, damage, message):
    from train.__main__ import main

    folder = tmp_path / "shards"
    streaming.write_shards(folder, "train", ["1", "2"], ["A (1990)", "B (1991)"], [4, 3], 2, timestamps=[1, 2])
    streaming.write_shards(folder, "test", ["1"], ["B (1991)"], [4], 1, timestamps=[3])
    damage(folder)
    assert main(["--preset", "mf", "--data", str(folder), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("train: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "m").exists()

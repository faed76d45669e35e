"""One real preset evaluation: the tutorial preset on 3,000 rows, one conversion, one harness run."""

from __future__ import annotations

import json

import pytest

import train
from benchmarks.machine import cpu_model
from device_runtime import Ranker
from evaluation.__main__ import main
from train.metrics import rmse

ROWS = 3000


@pytest.mark.tensorflow
def test_tutorial_preset_end_to_end(tmp_path, capsys):
    out = tmp_path / "evaluation"
    argv = ["presets", "--out", str(out), "--presets", "tutorial", "--seeds", "0", "--variants", "none",
            "--max-train-rows", str(ROWS)]
    assert main(argv) == 0
    table = (out / "table.md").read_text(encoding="utf-8")
    assert capsys.readouterr().out == table
    document = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (run,) = document["runs"]
    (variant,) = run["variants"]
    assert variant["accepted"], variant["error"]

    # The .tflite's test RMSE, recomputed here on the device runtime against the true ratings of the test split.
    _, test_rows = train.split_ratings(train.load_ratings())
    ranker = Ranker(variant["tflite_path"])
    scores = ranker.score_pairs(list(test_rows.user_id), list(test_rows.movie_title))
    assert variant["rmse_tflite"] == pytest.approx(rmse(scores, test_rows.user_rating), abs=1e-5)

    # The Keras figures are the training run's own; the latency is the harness's rank record for that file.
    metrics = json.loads((out / "tutorial" / "seed-0" / "export" / train.METRICS_FILE).read_text(encoding="utf-8"))
    assert run["test_rmse"] == metrics["test_rmse"] and metrics["rows"]["train"] == ROWS
    harness = json.loads((out / "tutorial" / "seed-0" / "latency.json").read_text(encoding="utf-8"))
    (record,) = [r for r in harness["records"] if r["method"] == "rank"]
    assert variant["latency"]["median_us"] == record["median_us"] > 0
    assert variant["latency"]["candidates"] == len(ranker.manifest.movies)

    command = "python -m evaluation " + " ".join(argv)
    assert document["command"] == command and f"Produced by `{command}`" in table
    assert document["machine"]["cpu_model"] == cpu_model()
    assert f"| tutorial | .tflite float32 | {variant['rmse_tflite']:.4f} (n=1) |" in table
    assert f"Trained on the first {ROWS:,} training rows only" in table

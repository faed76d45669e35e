"""Latency through the benchmark harness: its command, its report read back, its failures kept per variant."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from benchmarks import SCHEMA_VERSION, Record
from evaluation.errors import StepError
from evaluation.records import Latency
from evaluation.steps import harness_command, measure_latency, read_harness_report, with_latency
from tests.evaluation import fakes


def _record(model, method="rank", status="ok", **figures) -> dict:
    record = Record(model=str(model), model_file=model.name, model_size_bytes=1000, quantization="none",
                    parity_rmse=None, backend="ai_edge_litert", backend_version="2.3.0", delegate="default",
                    threads=1, method=method, candidates=1664, candidates_spec="all", status=status, **figures)
    return dataclasses.asdict(record)


def _write_report(path, records, schema_version=SCHEMA_VERSION, load=(1.25, 1.0, 0.5)):
    document = {"schema_version": schema_version, "machine": {"load_average": list(load)}, "records": records}
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.fixture
def models(tmp_path):
    return {name: tmp_path / f"model_{name}.tflite" for name in ("none", "float16", "weight-only-int8")}


def test_report_is_read_into_latencies_and_reasons(tmp_path, models):
    report = tmp_path / "latency.json"
    _write_report(report, [
        _record(models["none"], median_us=1234.5, runs=210),
        _record(models["none"], method="invoke", median_us=1.0, runs=210),  # not the method the table shows
        _record(models["float16"], status="failed", error="cannot load: bad flatbuffer"),
    ])
    outcomes = read_harness_report(report, models)
    assert outcomes["none"] == Latency(median_us=1234.5, runs=210, candidates=1664, backend="ai_edge_litert",
                                       backend_version="2.3.0", delegate="default", load_average=1.25)
    assert outcomes["float16"] == "benchmarks latency: cannot load: bad flatbuffer"
    assert "no rank record" in outcomes["weight-only-int8"]


def test_a_report_of_another_schema_or_shape_is_refused(tmp_path, models):
    report = tmp_path / "latency.json"
    _write_report(report, [], schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(StepError, match="schema version"):
        read_harness_report(report, models)
    _write_report(report, [{"model": "x", "unexpected": 1}])
    with pytest.raises(StepError, match="unreadable"):
        read_harness_report(report, models)
    report.write_text("not json", encoding="utf-8")
    with pytest.raises(StepError, match="unreadable"):
        read_harness_report(report, models)


def test_the_harness_times_every_model_in_one_run(tmp_path, models):
    report = tmp_path / "latency.json"
    calls = []

    def harness(command, **options):
        calls.append(command)
        _write_report(report, [_record(path, median_us=1000.0 + index, runs=200)
                               for index, path in enumerate(models.values())])
        return subprocess.CompletedProcess(command, 0, "", "")

    outcomes = measure_latency(models, report, run=harness)
    assert len(calls) == 1 and calls[0] == harness_command(models, report)
    command = " ".join(calls[0])
    assert "-m benchmarks latency" in command
    assert "--candidates all --threads 1 --runs 200 --warmup 20 --user 42 --backend litert --methods rank" in command
    timed = [calls[0][index + 1] for index, word in enumerate(calls[0]) if word == "--model"]
    assert timed == [str(path) for path in models.values()]
    assert [outcomes[name].median_us for name in models] == [1000.0, 1001.0, 1002.0]


def test_a_failing_harness_is_recorded_for_every_variant(tmp_path, models):
    def harness(command, **options):
        stderr = "loading...\nerror: --backend litert is not installed here\n"
        return subprocess.CompletedProcess(command, 2, "", stderr)

    outcomes = measure_latency(models, tmp_path / "latency.json", run=harness)
    assert set(outcomes) == set(models)
    assert all(reason == "benchmarks latency exited with 2: error: --backend litert is not installed here"
               for reason in outcomes.values())


def test_latency_is_attached_to_accepted_variants_only():
    accepted = fakes.accepted("none", 1.1, 1000, None)
    assert with_latency(accepted, {"none": fakes.latency(800.0)}).latency.median_us == 800.0
    assert with_latency(accepted, {"none": "benchmarks latency: failed"}).latency_error == "benchmarks latency: failed"
    assert with_latency(accepted, {}).latency_error == "not measured"
    rejected = fakes.rejected("none", 1.5, "1 check failed")
    assert with_latency(rejected, {"none": fakes.latency(800.0)}) == rejected

"""The command line: a full run, and one clear line with exit code 2 for every expected mistake."""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks.__main__ import main
from tests.device_runtime import make_fixtures

QUICK = ["--runs", "3", "--warmup", "0", "--min-seconds", "0", "--block", "1", "-q", "--no-saved-model"]


def run(capsys, argv):
    status = main(["latency", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_full_run_writes_every_output(kit_model, device_backend, tmp_path, capsys):
    out, table_csv = tmp_path / "r.json", tmp_path / "r.csv"
    status, stdout, _ = run(
        capsys,
        ["--model", str(kit_model), "--backend", device_backend, "--candidates", "2,all", "--methods", "rank,invoke,loop",
         "--out", str(out), "--csv", str(table_csv), *QUICK],
    )
    assert status == 0
    assert "Machine: " in stdout and "kit.tflite" in stdout
    records = json.loads(out.read_text(encoding="utf-8"))["records"]
    assert [(r["method"], r["candidates"]) for r in records] == [
        ("rank", 2), ("rank", 60), ("invoke", 2), ("invoke", 60), ("loop", 2), ("loop", 60),  # loops up to 100 by default
    ]
    assert table_csv.read_text(encoding="utf-8").count("\n") == 1 + len(records)


def one_line_error(capsys, argv, *fragments):
    status, stdout, stderr = run(capsys, argv)
    assert status == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_missing_model(capsys, tmp_path):
    one_line_error(capsys, ["--model", str(tmp_path / "nope.tflite"), *QUICK], "nope.tflite", "does not exist")


def test_not_a_model(capsys, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"this is not a flatbuffer at all")
    one_line_error(capsys, ["--model", str(bad), *QUICK], "bad.tflite")


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--candidates", "10,abc", "'abc' is not a count"),
        ("--candidates", "0", "at least 1"),
        ("--threads", "0", "--threads entry '0' must be at least 1"),
        ("--threads", "two", "is not an integer"),
        ("--runs", "0", "--runs must be at least 1"),
        ("--warmup", "-1", "--warmup must be 0 or more"),
        ("--min-seconds", "-2", "--min-seconds must be 0 or more"),
        ("--block", "0", "--block must be at least 1"),
        ("--methods", "rank,fast", "'fast' is unknown"),
        ("--backend", "onnx", "unknown backend 'onnx'"),
    ],
)
def test_bad_settings(capsys, kit_model, option, value, fragment):
    # later options win in argparse: the bad value comes last
    one_line_error(capsys, ["--model", str(kit_model), *QUICK, "--candidates", "1", option, value], fragment)


def test_backend_not_installed(capsys, kit_model):
    missing = [name for name in ("ai_edge_litert", "tflite_runtime") if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("both interpreter packages are installed here")
    one_line_error(capsys, ["--model", str(kit_model), "--backend", missing[0], *QUICK], missing[0], "not installed")


def test_count_above_vocabulary(capsys, kit_model):
    one_line_error(capsys, ["--model", str(kit_model), "--candidates", "1000", *QUICK], "1000", "60 titles")


def test_model_with_a_broken_manifest(capsys, fixtures_dir):
    one_line_error(capsys, ["--model", str(fixtures_dir / make_fixtures.BAD_MANIFEST), *QUICK], "manifest")


def test_model_without_manifest(capsys, fixtures_dir):
    one_line_error(
        capsys, ["--model", str(fixtures_dir / make_fixtures.TUTORIAL), *QUICK], "no movie vocabulary", "--candidates-file"
    )


def test_empty_candidates_file(capsys, kit_model, tmp_path):
    empty = tmp_path / "titles.txt"
    empty.write_text("\n\n", encoding="utf-8")
    one_line_error(capsys, ["--model", str(kit_model), "--candidates-file", str(empty), *QUICK], "holds no titles")


def test_saved_model_that_is_not_one(capsys, kit_model, tmp_path):
    argv = ["--model", str(kit_model), "--saved-model", str(tmp_path), "--runs", "3", "-q"]
    one_line_error(capsys, argv, "is not a SavedModel folder")


def test_output_folder_missing(capsys, kit_model, tmp_path):
    one_line_error(
        capsys, ["--model", str(kit_model), "--out", str(tmp_path / "no" / "r.json"), *QUICK], "--out", "does not exist"
    )


def test_plot_without_matplotlib(capsys, kit_model, tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.__main__.matplotlib_available", lambda: False)
    line = one_line_error(capsys, ["--model", str(kit_model), "--plot", str(tmp_path / "p.png"), *QUICK], "matplotlib")
    assert 'pip install ".[bench]"' in line
    assert not (tmp_path / "p.png").exists()


def test_missing_required_model(capsys):
    status = main_exit(["latency"])
    assert status == 2
    assert "--model" in capsys.readouterr().err


def main_exit(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code

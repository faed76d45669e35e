"""`python -m benchmarks mutations`: the mutations themselves, the classification of each case, the command line."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

import benchmarks.mutations as mutations_module
from benchmarks.__main__ import main
from benchmarks.corruption import Kind, Mutation, Role, case_mutation, flatbuffer_fields, hostile_values
from device_runtime.errors import ModelLoadError
from tests.device_runtime import make_fixtures


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kit_bytes(kit_model) -> bytes:
    return kit_model.read_bytes()


# --- the mutations ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_a_case_is_reproducible_and_always_changes_the_file(kit_bytes, kind):
    fields = flatbuffer_fields(kit_bytes)
    for case in range(40):
        first = case_mutation(kit_bytes, 5, case, [kind], fields)
        assert first == case_mutation(kit_bytes, 5, case, [kind], fields)
        assert first.kind is kind and first.data != kit_bytes, first.detail
        if kind is Kind.TRUNCATE:
            assert kit_bytes.startswith(first.data) and len(first.data) < len(kit_bytes)
        else:
            assert len(first.data) == len(kit_bytes)
            damaged = np.frombuffer(first.data, dtype=np.uint8)
            changed = np.flatnonzero(damaged != np.frombuffer(kit_bytes, dtype=np.uint8))
            if kind is Kind.FLIP:
                assert 1 <= len(changed) <= 8
            elif kind is Kind.ZERO:
                assert not damaged[changed[0] : changed[-1] + 1].any()
            else:  # one field: the changes lie within its bytes
                assert changed[-1] - changed[0] < 8
    assert case_mutation(kit_bytes, 5, 0, [kind], fields) != case_mutation(kit_bytes, 6, 0, [kind], fields)


def test_the_field_map_reads_the_files_own_numbers(kit_bytes):
    fields = {field.name: field for field in flatbuffer_fields(kit_bytes)}
    # Read by hand: the root offset is the first 4 bytes; the identifier follows.
    assert fields["root offset"].read(kit_bytes) == struct.unpack_from("<I", kit_bytes, 0)[0]
    metadata = [name for name in fields if name.startswith("Model.metadata[") and name.endswith("].name length")]
    lengths = sorted(fields[name].read(kit_bytes) for name in metadata)
    assert len("ranking_kit.manifest") in lengths and len("min_runtime_version") in lengths
    # A metadata entry's buffer index names a buffer whose data is that many bytes long.
    for name in metadata:
        entry = name[: -len(".name length")]
        index = fields[f"{entry}.buffer"].read(kit_bytes)
        assert f"Model.buffers[{index}] offset" in fields


def test_hostile_values_point_outside_the_file(kit_bytes):
    field = next(f for f in flatbuffer_fields(kit_bytes) if f.role is Role.OFFSET)
    values = hostile_values(field, kit_bytes)
    assert len(kit_bytes) - field.position in values  # exactly at the end of the file
    assert 0xFFFFFFFF in values and field.read(kit_bytes) not in values


# --- classifying a case: a stand-in Ranker, chosen by the bytes it is given -----------------

# The file's last bytes say how the stand-in behaves; the original (no suffix) is served.
BEHAVIOURS = {
    b"refuse": "refused",
    b"raise": "other",
    b"segv": "crashed",
    b"hang": "hung",
    b"quit": "other",
    b"other-scores": "served",
}


class StandInRanker:
    def __init__(self, path, backend="auto"):
        content = open(path, "rb").read()
        self.behaviour = next((key for key in BEHAVIOURS if content.endswith(key)), b"")
        if self.behaviour == b"refuse":
            raise ModelLoadError("refused by the stand-in")
        if self.behaviour == b"raise":
            raise RuntimeError("not a typed error")
        if self.behaviour == b"segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.behaviour == b"hang":
            time.sleep(60)
        if self.behaviour == b"quit":
            os._exit(7)

    def rank(self, user, titles, k=None):
        score = 2.0 if self.behaviour == b"other-scores" else 1.0
        return [(title, score) for title in titles]

    def info(self):
        return types.SimpleNamespace(backend="stand-in", backend_version="0")


def test_each_way_a_case_can_end_is_told_apart(kit_model, kit_bytes, monkeypatch, tmp_path):
    suffixes = [b"refuse", b"raise", b"segv", b"hang", b"quit", b"other-scores", b""]
    monkeypatch.setattr("device_runtime.Ranker", StandInRanker)
    monkeypatch.setattr(
        mutations_module,
        "case_mutation",
        lambda data, seed, case, kinds, fields: Mutation(Kind.FLIP, f"stand-in {case}", data + suffixes[case]),
    )
    settings = mutations_module.MutationSettings(model=kit_model, count=len(suffixes), jobs=3, timeout_seconds=1.0)
    report = mutations_module.run_mutations(settings, "the test")
    outcomes = [(case.outcome.value, case.error_type, case.signal, case.same_scores) for case in report.cases]
    assert outcomes == [
        ("refused", "ModelLoadError", None, None),
        ("other", "RuntimeError", None, None),
        ("crashed", None, "SIGSEGV", None),
        ("hung", None, None, None),
        ("other", "exit 7", None, None),
        ("served", None, None, False),
        ("served", None, None, True),  # the file plus nothing: the original's scores
    ]
    assert report.backend == "stand-in" and not report.clean
    assert report.breakdown(mutations_module.Outcome.SERVED) == {"different scores": 1, "same scores": 1}
    assert report.cases[3].seconds >= 1.0
    document = report.to_dict()
    assert document["counts"] == {"refused": 1, "served": 2, "crashed": 1, "hung": 1, "other": 2}
    assert [case["case"] for case in document["cases"]] == [1, 2, 3, 4, 5, 6]  # every case not refused


# --- the command line ---------------------------------------------------------------------------


def run(capsys, argv):
    try:
        status = main(["mutations", *argv])
    except SystemExit as exit_info:  # argparse's own checks
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_truncated_copies_of_a_real_model_are_all_refused(kit_model, device_backend, tmp_path):
    """The real Ranker, in a fresh interpreter: a child forked from a process running TensorFlow's threads could
    inherit a lock some thread held (pytest's process has imported TensorFlow in the main environment)."""
    out, markdown, keep = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "keep"
    keep.mkdir()
    argv = ["--model", str(kit_model), "--count", "6", "--seed", "2", "--kinds", "truncate", "--jobs", "2",
            "--backend", device_backend, "--out", str(out), "--markdown", str(markdown), "--keep", str(keep), "-q"]
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks", "mutations", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["counts"] == {"refused": 6, "served": 0, "crashed": 0, "hung": 0, "other": 0}
    assert document["breakdown"]["refused"] == {"ModelLoadError": 6}
    assert document["backend"]["name"] == device_backend
    assert document["ranking"]["candidates"] == len(make_fixtures.MOVIES)
    text = markdown.read_text(encoding="utf-8")
    assert "`python -m benchmarks mutations --model" in text and "Machine: " in text
    assert "| truncate | 6 | 6 | 0 | 0 | 0 | 0 |" in text
    assert list(keep.iterdir()) == []  # nothing was kept: every copy was refused


def test_copies_that_were_not_refused_exit_1_and_are_kept(kit_model, tmp_path, capsys, monkeypatch):
    def other_scores(data, seed, case, kinds, fields):
        return Mutation(Kind.FLIP, "served by the stand-in", data + b"other-scores")

    monkeypatch.setattr("device_runtime.Ranker", StandInRanker)
    monkeypatch.setattr(mutations_module, "case_mutation", other_scores)
    keep = tmp_path / "keep"
    keep.mkdir()
    status, stdout, stderr = run(
        capsys, ["--model", str(kit_model), "--count", "2", "--out", str(tmp_path / "r.json"), "--keep", str(keep), "-q"]
    )
    assert status == 1
    assert "served:      2 of 2  (different scores 2)" in stdout
    assert "2 damaged copies were not refused" in stderr
    assert sorted(path.name for path in keep.iterdir()) == ["case-0-served.tflite", "case-1-served.tflite"]


def one_line_error(capsys, argv, *fragments):
    status, _, stderr = run(capsys, argv)
    assert status == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--count", "0", "--count must be an integer >= 1"),
        ("--jobs", "0", "--jobs must be an integer >= 1"),
        ("--seed", "-1", "--seed must be an integer >= 0"),
        ("--timeout", "0", "--timeout must be a positive number"),
        ("--timeout", "nan", "--timeout must be a positive number"),
        ("--kinds", "flip,melt", "unknown mutation 'melt'"),
        ("--backend", "nope", "unknown backend 'nope'"),
        ("--count", "many", "invalid int value"),
    ],
)
def test_bad_flags(kit_model, tmp_path, capsys, option, value, fragment):
    one_line_error(capsys, ["--model", str(kit_model), "--out", str(tmp_path / "r.json"), option, value], fragment)


def test_bad_paths(kit_model, fixtures_dir, tmp_path, capsys):
    out = ["--out", str(tmp_path / "r.json")]
    one_line_error(capsys, ["--model", str(tmp_path / "nope.tflite"), *out], "nope.tflite does not exist")
    one_line_error(capsys, ["--model", str(fixtures_dir / make_fixtures.TUTORIAL), *out], "carries no vocabularies")
    one_line_error(capsys, ["--model", str(kit_model), "--out", str(tmp_path / "no" / "r.json")], "does not exist")
    one_line_error(capsys, ["--model", str(kit_model), *out, "--keep", str(tmp_path / "no")], "--keep", "not a folder")
    status, _, _ = run(capsys, ["--model", str(kit_model)])
    assert status == 2  # --out is required

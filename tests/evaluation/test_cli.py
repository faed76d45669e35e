"""The command line: one clear line and exit 2 for every bad flag or unusable output, before any training."""

from __future__ import annotations

import pytest

from evaluation.__main__ import main
from evaluation.errors import SettingsError
from evaluation.presets import MARKER_FILE, prepare_output
from evaluation.settings import PresetSettings


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    """A bad flag must be refused before any step runs: every step fails the test if reached."""

    def reached(*args, **kwargs):
        raise AssertionError("a step ran although the options were bad")

    monkeypatch.setattr("evaluation.presets.evaluate_seed", reached)
    monkeypatch.setattr("evaluation.scale.generate", reached)


def one_line_error(capsys, argv, *fragments) -> str:
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        status = stop.code
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--presets", "tutorial,nope"], ["unknown preset 'nope'", "default", "tutorial"]),
        (["--presets", ","], ["--presets is empty"]),
        (["--presets", "tutorial,tutorial"], ["lists a value twice"]),
        (["--seeds", "0,x"], ["--seeds entry 'x' is not an integer"]),
        (["--seeds", "-1"], ["--seeds must be non-negative"]),
        (["--seeds", "1,1"], ["--seeds lists a value twice"]),
        (["--variants", "full-int8"], ["--variants entry 'full-int8' is unknown", "weight-only-int8"]),
        (["--variants", "none,float32"], ["--variants lists a value twice"]),
        (["--max-train-rows", "0"], ["--max-train-rows must be at least 1, got 0"]),
        (["--max-train-rows", "many"], ["--max-train-rows", "invalid int value"]),
        (["--frobnicate"], ["unrecognized arguments: --frobnicate"]),
    ],
)
def test_bad_presets_flags(capsys, tmp_path, flags, fragments):
    one_line_error(capsys, ["presets", "--out", str(tmp_path / "out"), *flags], *fragments)
    assert not (tmp_path / "out").exists()


def test_presets_needs_out(capsys):
    one_line_error(capsys, ["presets"], "--out")


def test_unusable_presets_outputs(capsys, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    one_line_error(capsys, ["presets", "--out", str(a_file)], "is a file; give a folder path")
    one_line_error(capsys, ["presets", "--out", str(tmp_path / "out"), "--markdown", str(tmp_path)],
                   "is a folder; give a file path")
    missing = tmp_path / "missing" / "table.md"
    one_line_error(capsys, ["presets", "--out", str(tmp_path / "out"), "--markdown", str(missing)],
                   f"the folder of --markdown {missing} does not exist; create it first")
    # Inside the output folder it is fine: that folder is created.
    settings = PresetSettings(out=tmp_path / "new", markdown=tmp_path / "new" / "custom.md")
    assert settings.markdown_path == tmp_path / "new" / "custom.md"


def test_a_foreign_folder_is_refused_and_left_alone(capsys, tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    one_line_error(capsys, ["presets", "--out", str(foreign)], "non-empty folder this tool did not write")
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


def test_owned_folder_is_cleared_new_and_empty_folders_are_marked(tmp_path):
    new = tmp_path / "a" / "b"
    prepare_output(new)
    assert [p.name for p in new.iterdir()] == [MARKER_FILE]
    # An earlier evaluation: everything in it goes, the marker is written again.
    (new / "tutorial" / "seed-0").mkdir(parents=True)
    (new / "results.json").write_text("{}")
    prepare_output(new)
    assert [p.name for p in new.iterdir()] == [MARKER_FILE]
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_output(empty)
    assert (empty / MARKER_FILE).is_file()
    # Without the marker, the same content is someone else's.
    (empty / MARKER_FILE).unlink()
    (empty / "notes.txt").write_text("mine")
    with pytest.raises(SettingsError, match="did not write"):
        prepare_output(empty)
    assert (empty / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--rows", "0"], ["--rows entry '0' must be at least 1"]),
        (["--rows", "1e6"], ["--rows entry '1e6' is not an integer"]),
        (["--workers", "0"], ["--workers entry '0' must be at least 1"]),
        (["--workers", "two"], ["--workers entry 'two' is not an integer"]),
        (["--batch-size", "0"], ["--batch-size must be at least 1, got 0"]),
        (["--users", "-5"], ["--users must be at least 1, got -5"]),
        (["--items", "0"], ["--items must be at least 1, got 0"]),
        (["--timeout", "0"], ["--timeout must be more than 0 seconds"]),
        (["--timeout", "nan"], ["--timeout must be more than 0 seconds"]),
        (["--preset", "nope"], ["--preset", "invalid choice: 'nope'"]),
        (["--batch-size", "big"], ["--batch-size", "invalid int value"]),
    ],
)
def test_bad_scale_flags(capsys, tmp_path, flags, fragments):
    one_line_error(capsys, ["scale", "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), *flags],
                   *fragments)
    assert not (tmp_path / "work").exists()


def test_unusable_scale_outputs(capsys, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    one_line_error(capsys, ["scale", "--out", str(a_file)], f"--out {a_file} is a file")
    one_line_error(capsys, ["scale", "--out", str(tmp_path), "--work-dir", str(a_file)],
                   f"--work-dir {a_file} is a file")
    one_line_error(capsys, ["scale", "--out", str(tmp_path), "--markdown", str(tmp_path / "no" / "scale.md")],
                   "must be a file in an existing folder")


def test_no_command(capsys):
    one_line_error(capsys, [], "required")

"""The kit's shared helpers that live in the device runtime: atomic writes, one-line errors, error-text readers."""

from __future__ import annotations

import os
import stat

import pytest

from device_runtime.backends import is_delegate_failure
from device_runtime.errors import one_line
from device_runtime.files import write_atomically


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_written_files_get_the_permissions_of_a_plain_write(tmp_path, umask_022):
    path = tmp_path / "report.json"
    write_atomically(path, "é\n")
    assert path.read_bytes() == "é\n".encode("utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # 0o666 under umask 022, not mkstemp's 0o600
    write_atomically(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_atomically(tmp_path / "run.sh", "#!/bin/sh\n", executable=True)
    assert stat.S_IMODE((tmp_path / "run.sh").stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "run.sh"]  # no temporary left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.tflite"]
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "missing" / "x.json", "{}")


def test_one_line():
    assert one_line(RuntimeError("Node number 3\n  failed\tto  invoke.\n")) == "Node number 3 failed to invoke."
    assert one_line(KeyError()) == "KeyError"  # never an empty line
    assert one_line("abcdefghij", limit=5) == "abcd…"
    assert one_line("short", limit=5) == "short"


# Failures in the words of LiteRT 2.3 and tflite-runtime 2.14 (the XNNPACK and Flex ones measured).
@pytest.mark.parametrize(
    "text, delegate",
    [
        ("failed to create XNNPACK Value for tensor -1Node number 14 (TfLiteXNNPackDelegate) failed to prepare.", True),
        ("Node number 5 (TfLiteXNNPackDelegate) failed to invoke.", True),
        ("Restored original execution plan after delegate application failure.", True),
        ("Node number 3 (FULLY_CONNECTED) failed to invoke.", False),
        ("tensor allocation failed", False),
        (
            "Select TensorFlow op(s), included in the given model, is(are) not supported by this interpreter. Make "
            "sure you apply/link the Flex delegate before inference. For the Android, it can be resolved by adding "
            '"org.tensorflow:tensorflow-lite-select-tf-ops" dependency. See instructions: '
            "https://www.tensorflow.org/lite/guide/ops_selectNode number 0 (FlexStaticRegexReplace) failed to prepare.",
            False,  # a Flex model: turning XNNPACK off cannot help
        ),
    ],
)
def test_delegate_failures_are_told_from_other_failures_by_their_text(text, delegate):
    assert is_delegate_failure(RuntimeError(text)) is delegate

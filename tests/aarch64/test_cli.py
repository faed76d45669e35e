"""The command line's one-line errors, the settings checks and the guest wrapper script."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.aarch64 import rootfs
from scripts.aarch64.__main__ import format_result
from scripts.aarch64.errors import SettingsError
from scripts.aarch64.pipeline import RunResult, Settings, StepResult, write_guest_wrapper

REPO = Path(__file__).resolve().parents[2]


def run_cli(args, tmp_path, path_dirs=()):
    """Runs `python -m scripts.aarch64` with only `path_dirs` on PATH and no CI variable."""
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "KIT_AARCH64_CACHE")}
    env["PATH"] = os.pathsep.join(str(d) for d in path_dirs) or str(tmp_path / "empty-bin")
    return subprocess.run([sys.executable, "-m", "scripts.aarch64", "--cache-dir", str(tmp_path / "cache"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_missing_qemu_and_debootstrap_is_one_line_with_the_install_command(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not used")
    done = run_cli([str(model), "--steps", "rank"], tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "qemu-aarch64-static" in lines[0] and "debootstrap" in lines[0]
    assert "apt-get install qemu-user-static debootstrap" in lines[0]


def test_a_missing_model_is_one_line(tmp_path):
    done = run_cli([str(tmp_path / "absent.tflite"), "--steps", "rank"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"aarch64 check cannot run: model file {tmp_path / 'absent.tflite'} does not exist; "
        "pass the path of a .tflite file"
    ]


def test_unknown_step_is_one_line(tmp_path):
    done = run_cli(["--steps", "tests,benchmark"], tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "'benchmark'" in done.stderr


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"parity_users": 0}, "--users"),
        ({"interpreters": ("tensorflow",)}, "unknown interpreter"),
        ({"cpu": "pentium"}, "unknown --cpu"),
        ({"jobs": 0}, "--jobs"),
        ({"pins": ("numpy>=2",)}, "NAME==VERSION"),
    ],
)
def test_bad_settings_are_refused(tmp_path, changes, message):
    with pytest.raises(SettingsError, match=message):
        Settings(repo=REPO, cache_dir=tmp_path, **changes)


def test_the_wrapper_runs_qemu_with_the_root_and_hands_its_own_path_as_argv0(tmp_path):
    root = tmp_path / "cache dir" / "root-x"  # a space, to check the quoting
    wrapper = write_guest_wrapper(tmp_path / "bin", root, rootfs.cpu_model("cortex-a72"))
    assert os.access(wrapper, os.X_OK)
    exec_line = [line for line in wrapper.read_text().splitlines() if line.startswith("exec ")][0]
    words = shlex.split(exec_line)
    assert words[0] == "exec" and words[1].endswith("qemu-aarch64-static")
    assert words[2:] == ["-cpu", "cortex-a72", "-L", str(root), "-0", "$0",
                         str(root / "usr" / "bin" / "python3.11"), "$@"]
    for name in ("python3", "python"):
        assert (tmp_path / "bin" / name).resolve() == wrapper.resolve()


def test_the_summary_shows_every_step_and_the_verdict():
    result = RunResult(
        steps=(StepResult("reuse arm64 root", True, 0.0, "/c/root-1"),
               StepResult("[tflite_runtime] parity m.tflite", False, 0.1, "max |diff| 2e-05 MISMATCH", None, 0.1)),
        parity=(), skipped=("m_int8.tflite on tflite_runtime: not expected to run",), environment={},
        seconds=12.0, work_dir="/w",
    )
    text = format_result(result)
    assert "FAIL" in text and "max |diff| 2e-05 MISMATCH" in text and "not expected to run" in text
    assert text.splitlines()[-2].startswith("aarch64 check FAILED")
    assert text.splitlines()[-1] == "aarch64: 1 passed, 1 failed"
    assert not result.passed


def test_the_default_parity_models_are_fixtures_that_make_fixtures_builds():
    from scripts.aarch64.pipeline import FIXTURE_MODELS
    from tests.device_runtime import make_fixtures

    assert set(FIXTURE_MODELS) <= set(make_fixtures.ALL_MODELS)
    assert {make_fixtures.FACTOR, make_fixtures.TOWER} <= set(FIXTURE_MODELS)  # the multi-signature models

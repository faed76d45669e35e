"""Every command line of the kit reports a usage mistake in one line with exit status 2."""

import subprocess
import sys

import pytest

from device_runtime.command_line import EXIT_USAGE, OneLineParser


def test_a_usage_mistake_is_one_line_naming_the_option(capsys):
    parser = OneLineParser(prog="prog")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run").add_argument("--count", type=int, required=True)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["run", "--count", "many"])
    assert exit_info.value.code == EXIT_USAGE == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["prog run: error: argument --count: invalid int value: 'many' (see --help)"]


@pytest.mark.parametrize("program", ["device_runtime", "convert", "benchmarks", "evaluation", "train"])
def test_each_command_line_refuses_an_unknown_flag_in_one_line(program):
    try:
        __import__(program)
    except ImportError:
        pytest.skip(f"{program} is not installed in this environment")
    done = subprocess.run(
        [sys.executable, "-m", program, "--no-such-flag"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    # argparse names a missing required argument or command before an unknown flag.
    assert len(lines) == 1 and lines[0].startswith(f"python -m {program}: error: "), done.stderr
    assert lines[0].endswith("(see --help)") and ("--no-such-flag" in lines[0] or "required" in lines[0])

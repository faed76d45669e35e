"""Command line of the aarch64 emulation check (scripts/aarch64/run.sh calls it).

    python -m scripts.aarch64 [MODEL.tflite ...] [--users 200] [--cpu cortex-a72]
        [--interpreter tflite_runtime --interpreter ai_edge_litert] [--steps tests,rank,latency,parity]
        [--cache-dir DIR] [--work-dir DIR] [--fixtures DIR] [--mirror URL] [--install-tools]
        [--pin NAME==VERSION ...] [--jobs 2]

Exit codes: 0 every check passed; 1 a check failed (tests, rank, latency,
parity: the figures are printed); 2 the environment could not be prepared or a
setting is wrong (one line says what and how to fix it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from device_runtime.command_line import EXIT_USAGE, OneLineParser
from device_runtime.errors import one_line
from scripts.aarch64 import rootfs, wheels
from scripts.aarch64.errors import CheckFailedError, EmulationError
from scripts.aarch64.pipeline import DEFAULT_PARITY_USERS, RunResult, Settings, Step, default_cache_dir, run

EXIT_FAILED = 1
REPO = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="scripts/aarch64/run.sh", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, metavar="MODEL.tflite",
                        help="models for rank, latency and parity (default: the device-runtime test fixtures)")
    parser.add_argument("--users", type=int, default=DEFAULT_PARITY_USERS,
                        help=f"users scored against every movie for parity (default {DEFAULT_PARITY_USERS})")
    parser.add_argument("--cpu", default=rootfs.DEFAULT_CPU, choices=sorted(rootfs.CPU_MODELS),
                        help=f"the emulated core (default {rootfs.DEFAULT_CPU}, as in a Raspberry Pi 4)")
    parser.add_argument("--interpreter", action="append", choices=sorted(wheels.INTERPRETER_SITES),
                        help="interpreter package to exercise (repeat; default: both)")
    parser.add_argument("--steps", default=",".join(s.value for s in Step),
                        help=f"comma-separated subset of {','.join(s.value for s in Step)} (default: all)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the arm64 root and wheels are kept (default $KIT_AARCH64_CACHE or "
                        "~/.cache/ranking-kit/aarch64)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="this run's logs, scores and summary.json (default CACHE/last-run)")
    parser.add_argument("--fixtures", type=Path, default=None,
                        help="a folder made by python -m tests.device_runtime.make_fixtures (default: make one)")
    parser.add_argument("--mirror", default=None,
                        help="Debian mirror URL (default $KIT_DEBIAN_MIRROR or the apt sources)")
    parser.add_argument("--install-tools", action="store_true",
                        help="apt-get install qemu-user-static and debootstrap if missing "
                        "(needs root; automatic as root when CI=true)")
    parser.add_argument("--pin", action="append", default=[], metavar="NAME==VERSION",
                        help="override a pinned wheel, e.g. --pin ai-edge-litert==2.3.0")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="interpreters checked at the same time (default: 2 on 2+ cores)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _steps(text: str) -> tuple[Step, ...]:
    steps = []
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        try:
            steps.append(Step(entry))
        except ValueError:
            choices = ",".join(s.value for s in Step)
            raise EmulationError(f"--steps entry {entry!r} is unknown; choose from {choices}") from None
    if not steps:
        raise EmulationError("--steps is empty; give e.g. tests,rank,latency,parity")
    return tuple(steps)


def format_result(result: RunResult) -> str:
    """The human summary: every step with its time, then the parity figures and the verdict."""
    lines = ["", "aarch64 emulation check (wall time, CPU time of the step)", "-" * 56]
    for step in result.steps:
        status = "ok  " if step.passed else "FAIL"
        cpu = f"{step.cpu_seconds:7.1f}" if step.cpu_seconds is not None else " " * 7
        lines.append(f"{status} {step.seconds:7.1f} s {cpu} cpu-s  {step.name}")
        if step.detail and (not step.passed or step.name.startswith(("[", "download", "reuse", "emulated"))):
            for detail_line in step.detail.splitlines()[: 1 if step.passed else 15]:
                lines.append(f"                            {detail_line}")
        if not step.passed and step.log:
            lines.append(f"                            log: {step.log}")
    for skipped in result.skipped:
        lines.append(f"skip                        {skipped}")
    verdict = "PASSED" if result.passed else "FAILED"
    lines.append(f"aarch64 check {verdict} in {result.seconds:.0f} s (summary: {result.work_dir}/summary.json)")
    passed = sum(step.passed for step in result.steps)
    # The plain closing line CI reads as a test count.
    lines.append(f"aarch64: {passed} passed, {len(result.steps) - passed} failed")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="aarch64: %(message)s",
                        stream=sys.stderr)
    try:
        settings = Settings(
            repo=REPO,
            models=tuple(model.resolve() for model in args.models),
            cache_dir=(args.cache_dir or default_cache_dir(os.environ)).expanduser().resolve(),
            work_dir=None if args.work_dir is None else args.work_dir.resolve(),
            interpreters=tuple(dict.fromkeys(args.interpreter or wheels.INTERPRETER_SITES)),
            steps=_steps(args.steps),
            cpu=args.cpu,
            parity_users=args.users,
            mirror=args.mirror,
            install_tools=args.install_tools,
            jobs=args.jobs,
            fixtures=None if args.fixtures is None else args.fixtures.resolve(),
            pins=tuple(args.pin),
        )
        result = run(settings)
    except CheckFailedError as error:
        print(f"aarch64 check FAILED: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except EmulationError as error:
        print(f"aarch64 check cannot run: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aarch64 check interrupted", file=sys.stderr)
        return EXIT_USAGE
    print(format_result(result))
    return 0 if result.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

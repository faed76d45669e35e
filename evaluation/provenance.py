"""Which command produced a table, and on which machine (the benchmark harness's description of it)."""

from __future__ import annotations

import datetime
import shlex
from typing import Optional, Sequence

from benchmarks.latency import BUSY_LOAD_PER_CORE
from benchmarks.machine import Machine, machine_text, produced_by  # noqa: F401 (re-exported)

PROGRAM = "python -m evaluation"


def command_text(argv: Sequence[str]) -> str:
    """The command line as a user would type it, e.g. `python -m evaluation presets --out results`."""
    return f"{PROGRAM} {shlex.join(argv)}".strip()


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def busy(load_average: Optional[float], machine: Machine) -> bool:
    """Whether a 1-minute load average means the machine was shared (the harness's threshold)."""
    cores = machine.cores_usable or machine.cores
    return load_average is not None and bool(cores) and load_average > BUSY_LOAD_PER_CORE * cores

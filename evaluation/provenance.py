"""Which command produced a table, and on which machine (the benchmark harness's description of it)."""

from __future__ import annotations

import datetime
import shlex
from typing import Mapping, Optional, Sequence

from benchmarks.latency import BUSY_LOAD_PER_CORE
from benchmarks.machine import Machine

PROGRAM = "python -m evaluation"


def command_text(argv: Sequence[str]) -> str:
    """The command line as a user would type it, e.g. `python -m evaluation presets --out results`."""
    return f"{PROGRAM} {shlex.join(argv)}".strip()


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def machine_text(machine: Machine, software: Optional[Mapping[str, Optional[str]]] = None) -> str:
    """One sentence naming the CPU, cores, load average and software versions.

    Args:
        machine: from `benchmarks.machine.describe_machine`.
        software: further package -> version pairs to name (e.g. the training stack).
    """
    cores = f"{machine.cores_usable or '?'} of {machine.cores or '?'} cores usable"
    versions = {"numpy": machine.numpy, **dict(machine.backends), **dict(software or {})}
    versions.pop("python", None)  # already named from the machine block
    load = ", ".join(f"{value:.2f}" for value in machine.load_average) if machine.load_average else "n/a"
    governor = machine.governor or "n/a"
    text = (
        f"{machine.cpu_model or 'unknown CPU'} ({machine.architecture}, {cores}, governor {governor}); "
        f"{machine.python}; {', '.join(f'{name} {version}' for name, version in versions.items() if version)}; "
        f"load average {load} at the start"
    )
    if machine.emulated:
        text += f". EMULATED ({machine.emulation_evidence}): these are not the real CPU's figures"
    return text


def produced_by(command: str, machine: Machine, started_at: str, software=None) -> list[str]:
    """The Markdown lines that say which command produced a table, when, and on which machine."""
    return [
        f"Produced by `{command}` on {started_at}.",
        "",
        f"Machine: {machine_text(machine, software)}.",
    ]


def busy(load_average: Optional[float], machine: Machine) -> bool:
    """Whether a 1-minute load average means the machine was shared (the harness's threshold)."""
    cores = machine.cores_usable or machine.cores
    return load_average is not None and bool(cores) and load_average > BUSY_LOAD_PER_CORE * cores

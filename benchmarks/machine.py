"""What the numbers were measured on: CPU, emulation, versions, governor, memory.

Reads only the standard library's view of the machine and a few Linux files
(/proc/cpuinfo, /proc/self/statm, the parent's /proc/PID/exe header, cpufreq);
on other systems the fields it cannot read are None rather than guessed.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import resource
import sys
from pathlib import Path
from typing import Mapping, Optional

CPUINFO_PATH = Path("/proc/cpuinfo")
STATM_PATH = Path("/proc/self/statm")
GOVERNOR_PATH = Path("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")

# ARM's "CPU part" numbers (implementer 0x41) for the cores of common boards,
# so a big.LITTLE board shows which kinds of core it has.
ARM_CPU_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2",
    "0xd4b": "Cortex-A78C",
    "0xd4f": "Neoverse-V2",
    "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720",
    "0xd82": "Cortex-X4",
}
_X86_VENDORS = ("GenuineIntel", "AuthenticAMD", "HygonGenuine", "CentaurHauls")
_QEMU_AARCH64_MODEL = re.compile(r"^model name\s*:\s*ARMv8 Processor rev \d+ \(v8[lb]\)\s*$", re.M)
# ELF e_machine values -> architecture family.
_ELF_MACHINE_FAMILIES = {3: "x86", 62: "x86", 40: "arm", 183: "arm"}


@dataclasses.dataclass(frozen=True)
class Machine:
    """The machine block of a report (see docs/benchmarks.md for each field)."""

    cpu_model: Optional[str]
    architecture: str
    cores: Optional[int]
    cores_usable: Optional[int]
    governor: Optional[str]
    emulated: bool
    emulation_evidence: Optional[str]
    os: str
    python: str
    numpy: str
    backends: Mapping[str, str]
    load_average: Optional[tuple[float, float, float]]

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["backends"] = dict(self.backends)
        data["load_average"] = None if self.load_average is None else list(self.load_average)
        return data


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpuinfo_values(cpuinfo: str, key: str) -> list[str]:
    values = []
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == key.lower():
            values.append(value.strip())
    return values


def _architecture_family(machine: str) -> Optional[str]:
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "x86"
    if machine.startswith(("arm", "aarch64")):
        return "arm"
    return None


def _cpuinfo_family(cpuinfo: str) -> Optional[str]:
    if any(vendor in cpuinfo for vendor in _X86_VENDORS) or re.search(r"^flags\s*:.*\bsse2?\b", cpuinfo, re.M):
        return "x86"
    if _cpuinfo_values(cpuinfo, "CPU implementer") or re.search(r"^Features\s*:.*\b(neon|asimd)\b", cpuinfo, re.M):
        return "arm"
    return None


def _elf_family(header: bytes) -> Optional[str]:
    """The architecture family of an ELF file from its first 20 bytes (e_machine)."""
    if len(header) < 20 or not header.startswith(b"\x7fELF"):
        return None
    byteorder = "little" if header[5] == 1 else "big"
    return _ELF_MACHINE_FAMILIES.get(int.from_bytes(header[18:20], byteorder))


def _parent_exe_header() -> bytes:
    try:
        with open(f"/proc/{os.getppid()}/exe", "rb") as handle:
            return handle.read(20)
    except OSError:
        return b""


def detect_emulation(
    machine: Optional[str] = None,
    cpuinfo: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    parent_exe_header: Optional[bytes] = None,
) -> Optional[str]:
    """Tells whether this Python runs under user-mode emulation (qemu-user).

    qemu-user reports the guest architecture from uname(), so platform.machine()
    alone cannot tell. The signs, strongest first:

    1. /proc/cpuinfo describes another architecture than Python runs as
       (qemu <= 8.0 passes the host's file through).
    2. On aarch64, /proc/cpuinfo has qemu's "model name : ARMv8 Processor rev N
       (v8l)" line, which an arm64 kernel shows only to 32-bit processes.
    3. The parent process's executable is built for another architecture
       (qemu fakes /proc/self/exe, not another process's).
    4. QEMU_* variables (QEMU_LD_PREFIX, QEMU_CPU, ...) are set.

    Latency measured under emulation says nothing about the real CPU.

    Args:
        machine: the architecture Python reports; defaults to platform.machine().
        cpuinfo: the text of /proc/cpuinfo; read when None ("" if unreadable).
        environ: the environment; defaults to os.environ.
        parent_exe_header: the first 20 bytes of the parent's executable; read
            from /proc/<ppid>/exe when None (b"" if unreadable).

    Returns:
        A one-line reason when emulation is detected, else None.
    """
    machine = platform.machine() if machine is None else machine
    cpuinfo = (_read_text(CPUINFO_PATH) or "") if cpuinfo is None else cpuinfo
    environ = os.environ if environ is None else environ
    parent_exe_header = _parent_exe_header() if parent_exe_header is None else parent_exe_header
    python_family = _architecture_family(machine)
    cpu_family = _cpuinfo_family(cpuinfo)
    if python_family and cpu_family and python_family != cpu_family:
        return f"Python runs as {machine} but /proc/cpuinfo describes an {cpu_family} CPU (qemu-user emulation)"
    if machine.lower() == "aarch64" and _QEMU_AARCH64_MODEL.search(cpuinfo):
        return (
            "/proc/cpuinfo has qemu's 'ARMv8 Processor ... (v8l)' model line, which an arm64 kernel never shows "
            "a 64-bit process (qemu-user emulation)"
        )
    parent_family = _elf_family(parent_exe_header)
    if python_family and parent_family and python_family != parent_family:
        return f"Python runs as {machine} but its parent process is an {parent_family} program (qemu-user emulation)"
    qemu_variables = sorted(name for name in environ if name.startswith("QEMU_"))
    if qemu_variables:
        return f"QEMU environment variables are set ({', '.join(qemu_variables)})"
    return None


def cpu_model(cpuinfo: Optional[str] = None) -> Optional[str]:
    """A human name for the CPU from /proc/cpuinfo, falling back to platform.processor().

    x86 gives its "model name"; ARM boards give their "Model"/"Hardware" line and
    the distinct core types with counts, e.g. "Raspberry Pi 4 Model B (4x Cortex-A72)".
    """
    cpuinfo = (_read_text(CPUINFO_PATH) or "") if cpuinfo is None else cpuinfo
    names = _cpuinfo_values(cpuinfo, "model name")
    if names and not names[0].lower().startswith("arm"):
        return names[0]
    board = (_cpuinfo_values(cpuinfo, "Model") or _cpuinfo_values(cpuinfo, "Hardware") or [None])[0]
    parts = _cpuinfo_values(cpuinfo, "CPU part")
    cores = {}
    for part in parts:
        name = ARM_CPU_PARTS.get(part.lower(), f"part {part}")
        cores[name] = cores.get(name, 0) + 1
    core_text = " + ".join(f"{count}x {name}" for name, count in cores.items())
    if board and core_text:
        return f"{board} ({core_text})"
    return board or core_text or (names[0] if names else None) or platform.processor() or None


def cpu_governor() -> Optional[str]:
    """The cpufreq scaling governor(s), e.g. "ondemand"; None when not readable.

    Distinct governors across cores are joined with "/" (big.LITTLE clusters can differ).
    """
    governors = []
    for cpu in range(os.cpu_count() or 1):
        text = _read_text(Path(str(GOVERNOR_PATH).format(cpu=cpu)))
        if text and text.strip() not in governors:
            governors.append(text.strip())
    return "/".join(governors) or None


def usable_cores() -> Optional[int]:
    """Cores this process may run on (reflects `taskset`), or None if unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def current_rss_bytes() -> Optional[int]:
    """The process's resident memory now (Linux /proc/self/statm), else None."""
    text = _read_text(STATM_PATH)
    if not text:
        return None
    try:
        return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (IndexError, ValueError, OSError):
        return None


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (getrusage high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def describe_machine(backends: Mapping[str, str]) -> Machine:
    """Collects the machine block.

    Args:
        backends: backend name -> version of every interpreter used in the run.
    """
    import numpy  # the harness's only non-standard dependency besides the runtime

    try:
        load = tuple(round(value, 2) for value in os.getloadavg())
    except (AttributeError, OSError):
        load = None
    evidence = detect_emulation()
    return Machine(
        cpu_model=cpu_model(),
        architecture=platform.machine(),
        cores=os.cpu_count(),
        cores_usable=usable_cores(),
        governor=cpu_governor(),
        emulated=evidence is not None,
        emulation_evidence=evidence,
        os=platform.platform(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        numpy=numpy.__version__,
        backends=dict(backends),
        load_average=load,
    )


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

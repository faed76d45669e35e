"""The machine block: emulation detection and CPU names from /proc/cpuinfo texts."""

from __future__ import annotations

import os
import platform

import numpy as np

from benchmarks import machine
from benchmarks.machine import cpu_model, describe_machine, detect_emulation

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr sse sse2 avx2
"""

PI4_CPUINFO = "".join(
    f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    for n in range(4)
) + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"

RK3588_CPUINFO = "".join(
    f"processor\t: {n}\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: {'0xd05' if n < 4 else '0xd0b'}\n\n"
    for n in range(8)
)


# What qemu >= 8.1 (and this repository's aarch64 root) shows an emulated aarch64 process.
QEMU_AARCH64_CPUINFO = PI4_CPUINFO.replace("BogoMIPS", "model name\t: ARMv8 Processor rev 3 (v8l)\nBogoMIPS")


def elf_header(e_machine: int) -> bytes:
    """The first 20 bytes of a little-endian 64-bit ELF file for `e_machine`."""
    return b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") + e_machine.to_bytes(2, "little")


X86_64_ELF, AARCH64_ELF = elf_header(62), elf_header(183)


def detect(**kwargs):
    values = dict(cpuinfo="", environ={}, parent_exe_header=b"")
    values.update(kwargs)
    return detect_emulation(**values)


def test_arm_python_on_an_x86_cpu_is_emulated():
    reason = detect(machine="aarch64", cpuinfo=X86_CPUINFO)
    assert reason is not None and "aarch64" in reason and "x86" in reason


def test_qemu_model_line_on_aarch64_is_emulated():
    reason = detect(machine="aarch64", cpuinfo=QEMU_AARCH64_CPUINFO)
    assert reason is not None and "ARMv8 Processor" in reason


def test_parent_of_another_architecture_is_emulated():
    reason = detect(machine="aarch64", cpuinfo=PI4_CPUINFO, parent_exe_header=X86_64_ELF)
    assert reason is not None and "parent" in reason


def test_native_machines_are_not_emulated():
    assert detect(machine="aarch64", cpuinfo=PI4_CPUINFO, parent_exe_header=AARCH64_ELF) is None
    assert detect(machine="x86_64", cpuinfo=X86_CPUINFO, parent_exe_header=X86_64_ELF) is None
    assert detect(machine="armv7l") is None  # nothing to compare


def test_qemu_variables_count_as_evidence():
    reason = detect(machine="aarch64", environ={"QEMU_LD_PREFIX": "/arm64-root"})
    assert reason is not None and "QEMU_LD_PREFIX" in reason


def test_cpu_names():
    assert cpu_model(X86_CPUINFO) == "AMD EPYC 7B13"
    assert cpu_model(PI4_CPUINFO) == "Raspberry Pi 4 Model B Rev 1.4 (4x Cortex-A72)"
    assert cpu_model(RK3588_CPUINFO) == "4x Cortex-A55 + 4x Cortex-A76"


def test_machine_block_from_what_the_system_reports(tmp_path, monkeypatch):
    """Every field of the block, from a Raspberry Pi 4's /proc and sysfs files written here."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(PI4_CPUINFO, encoding="utf-8")
    for cpu, governor in enumerate(("ondemand", "ondemand", "performance", "performance")):
        (tmp_path / f"cpu{cpu}").mkdir()
        (tmp_path / f"cpu{cpu}" / "governor").write_text(governor + "\n", encoding="utf-8")
    monkeypatch.setattr(machine, "CPUINFO_PATH", cpuinfo)
    monkeypatch.setattr(machine, "GOVERNOR_PATH", tmp_path / "cpu{cpu}" / "governor")
    monkeypatch.setattr(machine, "_parent_exe_header", lambda: AARCH64_ELF)
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (0.123, 0.5, 1.0))
    for name in [name for name in os.environ if name.startswith("QEMU_")]:
        monkeypatch.delenv(name)

    block = describe_machine({"tflite_runtime": "2.14.0"}).to_dict()
    assert block == {
        "cpu_model": "Raspberry Pi 4 Model B Rev 1.4 (4x Cortex-A72)",
        "architecture": "aarch64",
        "cores": 4,
        "cores_usable": 2,
        "governor": "ondemand/performance",
        "emulated": False,
        "emulation_evidence": None,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "numpy": np.__version__,
        "backends": {"tflite_runtime": "2.14.0"},
        "load_average": [0.12, 0.5, 1.0],
    }
    monkeypatch.setenv("QEMU_CPU", "cortex-a72")
    emulated = describe_machine({}).to_dict()
    assert emulated["emulated"] is True and "QEMU_CPU" in emulated["emulation_evidence"]

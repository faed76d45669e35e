"""The /proc/cpuinfo the emulated root shows is recognised as emulation by the latency harness."""

from __future__ import annotations

from benchmarks.machine import detect_emulation
from scripts.aarch64 import rootfs

AARCH64_ELF_HEADER = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") + (183).to_bytes(2, "little")


def test_every_emulated_core_is_labelled_emulated_even_with_an_aarch64_parent():
    for cpu in rootfs.CPU_MODELS.values():
        cpuinfo = rootfs.cpuinfo_text(cpu, 2)
        reason = detect_emulation(machine="aarch64", cpuinfo=cpuinfo, parent_exe_header=AARCH64_ELF_HEADER,
                                  environ={})
        assert reason is not None, cpu.qemu_name

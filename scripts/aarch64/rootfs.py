"""The arm64 Debian root that qemu-user runs Python 3.11 from, built once and cached.

Without binfmt_misc, debootstrap's second stage (which runs arm64 programs)
cannot run, so the root is made in two host-only steps: `debootstrap
--foreign` downloads the packages of a minimal bookworm with python3, then
`dpkg -x` unpacks every downloaded .deb into the root. Nothing is configured
(no maintainer scripts run); Python needs none of it.

`qemu-aarch64-static -L ROOT` resolves the guest's absolute paths inside ROOT
first, which is how the ELF loader, libc and Python's standard library are
found. The same rule lets the root carry its own `/proc/cpuinfo` (see
`write_cpuinfo`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from device_runtime.files import write_atomically
from scripts.aarch64.errors import BuildError, NetworkError, SettingsError
from scripts.aarch64.host import DEBOOTSTRAP, DPKG, QEMU, TIMED_OUT, is_network_failure, run_command

logger = logging.getLogger(__name__)

# Bump when the way a root is made changes, so cached roots are rebuilt.
ROOT_RECIPE_VERSION = 1
GUEST_PYTHON = "/usr/bin/python3.11"
RECIPE_FILE = ".recipe.json"
ROOT_PREFIX = "root-"
GUEST_ARCHITECTURE = "aarch64"
# About 40 MB to download; a stalled network would otherwise let wget retry for a long time.
DEBOOTSTRAP_TIMEOUT_SECONDS = 900


@dataclasses.dataclass(frozen=True)
class RootRecipe:
    """What goes into the root; its `key` names the cache folder."""

    suite: str = "bookworm"
    architecture: str = "arm64"
    variant: str = "minbase"
    include: tuple[str, ...] = ("python3",)
    version: int = ROOT_RECIPE_VERSION

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {**dataclasses.asdict(self), "include": list(self.include)}

    def key(self) -> str:
        """A short hash of the recipe: a changed recipe gets a new folder."""
        payload = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class CpuModel:
    """An Arm core as qemu emulates it (`-cpu NAME`) and as /proc/cpuinfo describes it.

    The MIDR fields are the core's own (ARM Technical Reference Manuals); the
    features are what Linux lists for it.
    """

    qemu_name: str
    implementer: int
    variant: int
    part: int
    revision: int
    features: str


CPU_MODELS: Mapping[str, CpuModel] = {
    # Raspberry Pi 4, Pi 400, many Rockchip RK3399 big cores: the common baseline.
    "cortex-a72": CpuModel("cortex-a72", 0x41, 0x0, 0xD08, 3, "fp asimd evtstrm crc32 cpuid"),
    # Raspberry Pi 5, recent phones: fp16 arithmetic and dot product.
    "cortex-a76": CpuModel(
        "cortex-a76",
        0x41,
        0x4,
        0xD0B,
        1,
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
    ),
    # Raspberry Pi 3 / Zero 2 W (64-bit OS).
    "cortex-a53": CpuModel("cortex-a53", 0x41, 0x0, 0xD03, 4, "fp asimd evtstrm crc32 cpuid"),
}
DEFAULT_CPU = "cortex-a72"


def cpu_model(name: str) -> CpuModel:
    """The CpuModel called `name`.

    Raises:
        SettingsError: an unknown name (the message lists the known ones).
    """
    try:
        return CPU_MODELS[name]
    except KeyError:
        raise SettingsError(f"unknown --cpu {name!r}; choose one of: {', '.join(CPU_MODELS)}") from None


def cpuinfo_text(cpu: CpuModel, processors: int) -> str:
    """/proc/cpuinfo as qemu >= 8.1 synthesizes it for an emulated aarch64 process.

    qemu 7.2 (Debian bookworm's) passes the host's x86 /proc/cpuinfo through;
    LiteRT >= 2.2 parses it with the cpuinfo library and crashes
    (SIGSEGV while creating the interpreter). Newer qemu writes this text
    itself; giving the root the same file makes 7.2 behave like them. The
    "model name ... (v8l)" and "BogoMIPS : 100.00" lines are qemu's, not a
    kernel's: a real arm64 kernel prints no model name for 64-bit processes.
    """
    if processors < 1:
        raise ValueError(f"processors must be at least 1, got {processors}")
    blocks = []
    for index in range(processors):
        blocks.append(
            f"processor\t: {index}\n"
            f"model name\t: ARMv8 Processor rev {cpu.revision} (v8l)\n"
            "BogoMIPS\t: 100.00\n"
            f"Features\t: {cpu.features}\n"
            f"CPU implementer\t: 0x{cpu.implementer:02x}\n"
            "CPU architecture: 8\n"
            f"CPU variant\t: 0x{cpu.variant:x}\n"
            f"CPU part\t: 0x{cpu.part:03x}\n"
            f"CPU revision\t: {cpu.revision}\n"
        )
    return "\n".join(blocks) + "\n"


def write_cpuinfo(root: Path, cpu: CpuModel, processors: int | None = None) -> Path:
    """Writes ROOT/proc/cpuinfo for `cpu` (atomically); returns its path."""
    processors = processors or os.cpu_count() or 1
    target = root / "proc" / "cpuinfo"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, cpuinfo_text(cpu, processors).encode("ascii"))
    return target


def cached_root(cache_dir: Path, recipe: RootRecipe) -> Path | None:
    """The cached root for `recipe` if a complete one exists, else None."""
    root = cache_dir / f"{ROOT_PREFIX}{recipe.key()}"
    marker = root / RECIPE_FILE
    if not marker.is_file() or not (root / GUEST_PYTHON.lstrip("/")).is_file():
        return None
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return root if recorded.get("recipe") == recipe.to_dict() else None


def build_root(cache_dir: Path, recipe: RootRecipe, mirror: str, log_dir: Path) -> Path:
    """Builds the root into the cache (a temporary folder, renamed when complete).

    Args:
        cache_dir: the cache folder; the root becomes `root-<key>` inside it.
        recipe: what to install.
        mirror: the Debian mirror URL.
        log_dir: where debootstrap's and dpkg's output goes.

    Returns:
        The root's path. Roots of other recipes in the cache are removed.

    Raises:
        SettingsError: not running as root (debootstrap needs it).
        NetworkError: the mirror cannot be reached.
        BuildError: debootstrap or dpkg failed otherwise.
    """
    if os.geteuid() != 0:
        raise SettingsError(
            "building the arm64 root needs root (debootstrap creates device files); run this once as root "
            "or with sudo, later runs reuse the cached root"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{ROOT_PREFIX}{recipe.key()}"
    building = cache_dir / f".{final.name}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    args = [
        DEBOOTSTRAP,
        "--foreign",
        f"--arch={recipe.architecture}",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.include)}",
        recipe.suite,
        str(building),
        mirror,
    ]
    logger.info("downloading Debian %s %s packages from %s", recipe.suite, recipe.architecture, mirror)
    result = run_command(args, log_path=log_dir / "debootstrap.log", timeout=DEBOOTSTRAP_TIMEOUT_SECONDS)
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        if is_network_failure(result.output) or result.returncode == TIMED_OUT:
            raise NetworkError(
                f"cannot download Debian {recipe.suite} {recipe.architecture} packages from {mirror} (no network?); "
                "check the connection or pass --mirror URL"
            )
        raise BuildError(f"debootstrap failed (exit {result.returncode}, see {log_dir / 'debootstrap.log'}): "
                         f"{result.tail(1)}")
    archives = building / "var" / "cache" / "apt" / "archives"
    packages = sorted(archives.glob("*.deb"))
    if not packages:
        raise BuildError(f"debootstrap downloaded no .deb files into {archives}; see {log_dir / 'debootstrap.log'}")
    with open(log_dir / "dpkg-x.log", "w", encoding="utf-8") as log:
        for package in packages:
            unpacked = run_command([DPKG, "-x", str(package), str(building)])
            log.write(f"{package.name}: exit {unpacked.returncode}\n{unpacked.output}")
            if unpacked.returncode != 0:
                raise BuildError(f"dpkg -x {package.name} failed: {unpacked.tail(1)}")
            package.unlink()  # the unpacked root is what is cached, not the archives
    if not (building / GUEST_PYTHON.lstrip("/")).is_file():
        raise BuildError(f"the arm64 root has no {GUEST_PYTHON} after unpacking; is python3 still Python 3.11 "
                         f"in Debian {recipe.suite}?")
    (building / RECIPE_FILE).write_text(
        json.dumps({"recipe": recipe.to_dict(), "mirror": mirror, "packages": len(packages)}, indent=1),
        encoding="utf-8",
    )
    shutil.rmtree(final, ignore_errors=True)
    os.rename(building, final)
    for other in cache_dir.glob(f"{ROOT_PREFIX}*"):
        if other != final:
            shutil.rmtree(other, ignore_errors=True)
    logger.info("arm64 root ready: %s (%d packages)", final, len(packages))
    return final


def qemu_prefix(root: Path, cpu: CpuModel, qemu: str = QEMU) -> list[str]:
    """qemu-user and its options, up to (not including) the guest program."""
    return [qemu, "-cpu", cpu.qemu_name, "-L", str(root)]


def guest_python(root: Path) -> Path:
    """The guest's Python 3.11 as a host path."""
    return root / GUEST_PYTHON.lstrip("/")


def tools_for_build() -> tuple[str, ...]:
    """The host commands a root build needs."""
    return (DEBOOTSTRAP, DPKG)

"""The x86_64 host's side: the tools the check needs, Debian's mirror, running commands.

Policy for missing tools: the check installs qemu-user-static and debootstrap
with apt-get only when asked (`--install-tools`) or when it runs as root under
CI (`CI=true`, a fresh machine that is set up by its scripts). On a
developer's machine it never installs anything by itself: it stops with the
apt-get line to run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from scripts.aarch64.errors import BuildError, MissingToolError, NetworkError

logger = logging.getLogger(__name__)

QEMU = "qemu-aarch64-static"
DEBOOTSTRAP = "debootstrap"
DPKG = "dpkg"
# command -> the Debian package that provides it
TOOL_PACKAGES: Mapping[str, str] = {QEMU: "qemu-user-static", DEBOOTSTRAP: "debootstrap", DPKG: "dpkg"}
INSTALL_HINT = "apt-get install qemu-user-static debootstrap"
TIMED_OUT = 124  # run_command's exit code for a command killed at its timeout

APT_SOURCES = Path("/etc/apt")
MIRROR_ENV = "KIT_DEBIAN_MIRROR"

# What download tools print when the network, not the request, is the problem.
NETWORK_MARKERS = (
    "Failed getting release file",
    "Temporary failure resolving",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Could not resolve",
    "Failed to establish a new connection",
    "NewConnectionError",
    "ProxyError",
    "Connection refused",
    "Network is unreachable",
    "No route to host",
    "Could not connect to",
    "Unable to connect to",
    "Failed to fetch",
    "Read timed out",
    "Connection timed out",
    "ConnectTimeoutError",
)


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """A finished command: its exit code, combined output, wall time and CPU time.

    `cpu_seconds` is the user + system time of the command and the children it
    waited for; on a busy machine it estimates the wall time a quiet one needs.
    """

    args: tuple[str, ...]
    returncode: int
    output: str
    seconds: float
    cpu_seconds: float = 0.0

    def tail(self, lines: int = 15) -> str:
        """The last lines of the output, for failure messages."""
        kept = [line for line in self.output.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


def run_command(
    args: Sequence[str],
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Runs a command to completion, output (stdout and stderr together) captured.

    Args:
        args: the command and its arguments.
        log_path: where to write the output as well (the folder must exist).
        env: the environment; None inherits this process's.
        cwd: the working folder.
        timeout: seconds before the command is killed (exit code `TIMED_OUT`).

    Returns:
        The exit code, the output, the wall and CPU time; never raises on failure.
    """
    start = time.monotonic()
    process = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=None if env is None else dict(env),
        cwd=None if cwd is None else str(cwd),
        start_new_session=True,  # one process group, so a timeout kills the guest's children too
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        raw = process.stdout.read()
        # wait4 reaps the child itself so its resource usage is ours to read.
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        if timer:
            timer.cancel()
        process.stdout.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    returncode = TIMED_OUT if timed_out.is_set() else process.returncode
    output = raw.decode("utf-8", errors="replace")
    if timed_out.is_set():
        output += f"\n(killed after {timeout:.0f} s)\n"
    if log_path is not None:
        log_path.write_text(output, encoding="utf-8")
    return CommandResult(
        tuple(str(a) for a in args), returncode, output, time.monotonic() - start, usage.ru_utime + usage.ru_stime
    )


def is_network_failure(output: str) -> bool:
    """True when a download tool's output says the network could not be reached."""
    return any(marker in output for marker in NETWORK_MARKERS)


def missing_tools(tools: Sequence[str]) -> list[str]:
    """The commands in `tools` that are not on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


def may_install_tools(explicit: bool, environ: Mapping[str, str], euid: int) -> bool:
    """Whether the check may apt-get install what it lacks (see the module docstring)."""
    return explicit or (euid == 0 and environ.get("CI", "").lower() == "true")


def ensure_tools(tools: Sequence[str], *, install: bool, log_dir: Path) -> tuple[str, ...]:
    """Makes sure the commands exist, installing their Debian packages if allowed.

    Args:
        tools: commands from `TOOL_PACKAGES`.
        install: apt-get install the missing ones (needs root and network).
        log_dir: where apt-get's output goes.

    Returns:
        The Debian packages installed (empty when nothing was missing).

    Raises:
        MissingToolError: a command is missing and may not (or could not) be installed.
        NetworkError: apt-get could not reach Debian's mirror.
    """
    missing = missing_tools(tools)
    if not missing:
        return ()
    packages = sorted({TOOL_PACKAGES[tool] for tool in missing})
    names = ", ".join(missing)
    if not install:
        raise MissingToolError(
            f"{names} not found; install with: {INSTALL_HINT} (as root), or rerun with --install-tools"
        )
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise MissingToolError(
            f"{names} not found and cannot be installed here (needs root and apt-get); {INSTALL_HINT}"
        )
    logger.info("installing %s with apt-get", " ".join(packages))
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args, name in (
        (["apt-get", "update", "-q"], "apt-get-update.log"),
        (["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], "apt-get-install.log"),
    ):
        result = run_command(args, log_path=log_dir / name, env=environment)
        if result.returncode != 0:
            if is_network_failure(result.output):
                raise NetworkError(
                    f"apt-get could not reach Debian's package mirror to install {' '.join(packages)}; "
                    "check the network, or install them by hand: " + INSTALL_HINT
                )
            raise MissingToolError(f"'{' '.join(args)}' failed (see {log_dir / name}); install by hand: {INSTALL_HINT}")
    still_missing = missing_tools(tools)
    if still_missing:
        raise MissingToolError(f"{', '.join(still_missing)} still not found after apt-get install; {INSTALL_HINT}")
    return tuple(packages)


def debian_mirror(explicit: str | None, environ: Mapping[str, str], apt_dir: Path = APT_SOURCES) -> str:
    """The Debian mirror to fetch the arm64 packages from.

    An explicit `--mirror`, then `$KIT_DEBIAN_MIRROR`, then the first Debian
    archive this machine's apt sources name (a URI ending in /debian: the same
    mirror serves every architecture).

    Raises:
        BuildError: none of them gives a mirror.
    """
    for candidate in (explicit, environ.get(MIRROR_ENV)):
        if candidate:
            return candidate.rstrip("/")
    for uri in apt_source_uris(apt_dir):
        if urlparse(uri).path.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    raise BuildError(
        f"no Debian mirror found in {apt_dir}/sources.list*; pass --mirror URL or set {MIRROR_ENV} "
        "to a Debian archive that serves bookworm for arm64"
    )


def apt_source_uris(apt_dir: Path = APT_SOURCES) -> list[str]:
    """Every `deb` URI in the apt sources, in file order (one-line and deb822 formats)."""
    files = []
    if (apt_dir / "sources.list").is_file():
        files.append(apt_dir / "sources.list")
    folder = apt_dir / "sources.list.d"
    if folder.is_dir():
        files.extend(sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources")))
    uris: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        uris.extend(_deb822_uris(text) if path.suffix == ".sources" else _one_line_uris(text))
    return uris


def _one_line_uris(text: str) -> list[str]:
    uris = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts or parts[0] != "deb":
            continue
        parts = parts[1:]
        if parts and parts[0].startswith("["):  # options such as [arch=amd64 signed-by=...]
            while parts and not parts[0].endswith("]"):
                parts = parts[1:]
            parts = parts[1:]
        if parts:
            uris.append(parts[0])
    return uris


def _deb822_uris(text: str) -> list[str]:
    uris = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            uris.extend(fields.get("uris", "").split())
    return uris

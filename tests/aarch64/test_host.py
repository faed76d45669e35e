"""Host-side helpers: the Debian mirror from apt sources, network failures, the install policy."""

from __future__ import annotations

import pytest

from scripts.aarch64 import host
from scripts.aarch64.errors import BuildError, MissingToolError

DEB822 = """Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""

# Output captured from `debootstrap --foreign ... http://127.0.0.1:9/debian` and from
# `pip download` behind a refused proxy, on this repository's CI machine.
DEBOOTSTRAP_OFFLINE = """I: Retrieving InRelease
I: Retrieving Release
E: Failed getting release file http://127.0.0.1:9/debian/dists/bookworm/Release
"""
PIP_OFFLINE = (
    "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection "
    "broken by 'ProxyError('Cannot connect to proxy.', NewConnectionError('<pip._vendor.urllib3.connection."
    "HTTPSConnection object at 0x7f39ae272ed0>: Failed to establish a new connection: [Errno 111] Connection "
    "refused'))': /simple/numpy/\n"
    "ERROR: Could not find a version that satisfies the requirement numpy<2 (from versions: none)\n"
    "ERROR: No matching distribution found for numpy<2\n"
)
PIP_NO_WHEEL = "ERROR: No matching distribution found for tflite-runtime==2.15.0\n"


def write_sources(apt_dir, list_text=None, sources=None):
    (apt_dir / "sources.list.d").mkdir(parents=True)
    if list_text is not None:
        (apt_dir / "sources.list").write_text(list_text)
    for name, text in (sources or {}).items():
        (apt_dir / "sources.list.d" / name).write_text(text)


def test_mirror_comes_from_deb822_sources(tmp_path):
    write_sources(tmp_path, sources={"debian.sources": DEB822})
    assert host.debian_mirror(None, {}, tmp_path) == "http://mirror.example/debian"


def test_mirror_comes_from_one_line_sources_with_options(tmp_path):
    write_sources(tmp_path, "# deb http://old.example/debian bookworm main\n"
                            "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm main\n")
    assert host.debian_mirror(None, {}, tmp_path) == "http://one.example/debian"


def test_explicit_mirror_then_environment_win(tmp_path):
    write_sources(tmp_path, sources={"debian.sources": DEB822})
    assert host.debian_mirror("http://given.example/debian/", {host.MIRROR_ENV: "http://env.example/debian"},
                              tmp_path) == "http://given.example/debian"
    assert host.debian_mirror(None, {host.MIRROR_ENV: "http://env.example/debian"}, tmp_path) == \
        "http://env.example/debian"


def test_non_debian_and_disabled_sources_give_no_mirror(tmp_path):
    disabled = DEB822.replace("Components: main\n\nTypes", "Enabled: no\nComponents: main\n\nTypes", 1)
    write_sources(tmp_path, "deb http://archive.example/ubuntu noble main\n", {"a.sources": disabled})
    # only debian-security is left enabled, which is not the archive that has bookworm's packages
    with pytest.raises(BuildError, match="--mirror URL"):
        host.debian_mirror(None, {}, tmp_path)


def test_network_failures_are_told_apart_from_missing_packages():
    assert host.is_network_failure(DEBOOTSTRAP_OFFLINE)
    assert host.is_network_failure(PIP_OFFLINE)
    assert not host.is_network_failure(PIP_NO_WHEEL)


@pytest.mark.parametrize(
    "explicit, environ, euid, allowed",
    [
        (True, {}, 1000, True),
        (False, {"CI": "true"}, 0, True),
        (False, {"CI": "true"}, 1000, False),
        (False, {}, 0, False),
        (False, {"CI": "false"}, 0, False),
    ],
)
def test_tools_are_installed_only_when_asked_or_as_root_in_ci(explicit, environ, euid, allowed):
    assert host.may_install_tools(explicit, environ, euid) is allowed


def test_a_missing_tool_names_the_apt_get_line(tmp_path, monkeypatch):
    monkeypatch.setattr(host.shutil, "which", lambda tool: None if tool == host.QEMU else f"/usr/bin/{tool}")
    with pytest.raises(MissingToolError) as raised:
        host.ensure_tools((host.QEMU, host.DPKG), install=False, log_dir=tmp_path)
    message = str(raised.value)
    assert "qemu-aarch64-static not found" in message and "apt-get install qemu-user-static debootstrap" in message
    assert "\n" not in message


def test_run_command_captures_output_exit_code_and_timeout(tmp_path):
    done = host.run_command(["sh", "-c", "echo out; echo err >&2; exit 3"], log_path=tmp_path / "log")
    assert done.returncode == 3 and "out" in done.output and "err" in done.output
    assert (tmp_path / "log").read_text() == done.output
    slow = host.run_command(["sleep", "5"], timeout=0.2)
    assert slow.returncode == 124 and slow.seconds < 4


def test_installing_needs_root(tmp_path, monkeypatch):
    monkeypatch.setattr(host.shutil, "which", lambda tool: None)
    monkeypatch.setattr(host.os, "geteuid", lambda: 1000)
    with pytest.raises(MissingToolError, match="needs root and apt-get"):
        host.ensure_tools((host.QEMU,), install=True, log_dir=tmp_path)


def test_nothing_missing_installs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(host.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert host.ensure_tools((host.QEMU, host.DEBOOTSTRAP), install=True, log_dir=tmp_path) == ()

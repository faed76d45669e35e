"""The arm64 root's recipe key, cache lookup and the /proc/cpuinfo it gives qemu 7.2."""

from __future__ import annotations

import dataclasses
import json

import pytest

from scripts.aarch64 import rootfs
from scripts.aarch64.errors import SettingsError


def cpuinfo_fields(text: str) -> list[dict]:
    """Parses /proc/cpuinfo into one dict per processor block."""
    blocks = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        blocks.append(fields)
    return blocks


def test_same_recipe_same_key_and_any_change_a_new_key():
    recipe = rootfs.RootRecipe()
    assert recipe.key() == rootfs.RootRecipe().key()
    changed = [
        dataclasses.replace(recipe, include=("python3", "libstdc++6")),
        dataclasses.replace(recipe, suite="trixie"),
        dataclasses.replace(recipe, variant="buildd"),
        dataclasses.replace(recipe, version=recipe.version + 1),
    ]
    keys = {recipe.key()} | {other.key() for other in changed}
    assert len(keys) == 1 + len(changed)


def test_cpuinfo_describes_a_cortex_a72_per_processor():
    blocks = cpuinfo_fields(rootfs.cpuinfo_text(rootfs.cpu_model("cortex-a72"), 3))
    assert [block["processor"] for block in blocks] == ["0", "1", "2"]
    for block in blocks:
        # Cortex-A72 r0p3: MIDR 0x410FD083 (Arm's Technical Reference Manual).
        assert (block["CPU implementer"], block["CPU part"], block["CPU variant"], block["CPU revision"]) == (
            "0x41", "0xd08", "0x0", "3")
        assert "asimd" in block["Features"].split()
        assert block["CPU architecture"] == "8"


def test_cpuinfo_of_a_cortex_a76_names_its_part_and_dot_product():
    (block,) = cpuinfo_fields(rootfs.cpuinfo_text(rootfs.cpu_model("cortex-a76"), 1))
    assert (block["CPU part"], block["CPU variant"]) == ("0xd0b", "0x4")
    assert "asimddp" in block["Features"].split()


def test_cpuinfo_needs_a_processor():
    with pytest.raises(ValueError):
        rootfs.cpuinfo_text(rootfs.cpu_model("cortex-a72"), 0)


def test_unknown_cpu_lists_the_known_ones():
    with pytest.raises(SettingsError, match="cortex-a72"):
        rootfs.cpu_model("cortex-x9")


def test_write_cpuinfo_puts_it_where_qemu_looks(tmp_path):
    path = rootfs.write_cpuinfo(tmp_path, rootfs.cpu_model("cortex-a53"), processors=2)
    assert path == tmp_path / "proc" / "cpuinfo"
    assert len(cpuinfo_fields(path.read_text())) == 2


def make_root(cache, recipe, with_python=True, recorded=None):
    root = cache / f"root-{recipe.key()}"
    python = root / "usr" / "bin" / "python3.11"
    python.parent.mkdir(parents=True)
    if with_python:
        python.write_bytes(b"\x7fELF")
    (root / ".recipe.json").write_text(json.dumps({"recipe": recorded or recipe.to_dict()}))
    return root


def test_a_complete_cached_root_is_reused(tmp_path):
    recipe = rootfs.RootRecipe()
    root = make_root(tmp_path, recipe)
    assert rootfs.cached_root(tmp_path, recipe) == root


def test_an_incomplete_or_foreign_root_is_not_reused(tmp_path):
    recipe = rootfs.RootRecipe()
    assert rootfs.cached_root(tmp_path, recipe) is None
    make_root(tmp_path / "a", recipe, with_python=False)
    assert rootfs.cached_root(tmp_path / "a", recipe) is None
    make_root(tmp_path / "b", recipe, recorded={**recipe.to_dict(), "suite": "sid"})
    assert rootfs.cached_root(tmp_path / "b", recipe) is None


def test_building_needs_root(tmp_path, monkeypatch):
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 1000)
    with pytest.raises(SettingsError, match="needs root"):
        rootfs.build_root(tmp_path, rootfs.RootRecipe(), "http://mirror.example/debian", tmp_path)


def test_qemu_runs_the_roots_python_with_the_chosen_core(tmp_path):
    cpu = rootfs.cpu_model("cortex-a76")
    assert rootfs.qemu_prefix(tmp_path, cpu, "/usr/bin/qemu-aarch64-static") == [
        "/usr/bin/qemu-aarch64-static", "-cpu", "cortex-a76", "-L", str(tmp_path)]
    assert rootfs.guest_python(tmp_path) == tmp_path / "usr" / "bin" / "python3.11"

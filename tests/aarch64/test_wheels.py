"""aarch64 wheel download commands, pip failure messages and wheel unpacking."""

from __future__ import annotations

import json
import zipfile

import pytest

from scripts.aarch64 import wheels
from scripts.aarch64.errors import BuildError, MissingToolError, NetworkError, SettingsError, WheelNotFoundError
from scripts.aarch64.pipeline import apply_pins

# Captured from `pip download --only-binary=:all: --platform manylinux2014_aarch64 ... tflite-runtime==2.15.0`.
PIP_NO_WHEEL = (
    "ERROR: Could not find a version that satisfies the requirement tflite-runtime==2.15.0 "
    "(from versions: 2.1.0.post1, 2.5.0.post1, 2.13.0, 2.14.0)\n"
    "ERROR: No matching distribution found for tflite-runtime==2.15.0\n"
)
PIP_OFFLINE = (
    "WARNING: Retrying (Retry(total=0, ...)) after connection broken by 'NewConnectionError(... Failed to "
    "establish a new connection: [Errno -3] Temporary failure in name resolution)': /simple/numpy/\n"
    "ERROR: Could not find a version that satisfies the requirement numpy<2 (from versions: none)\n"
    "ERROR: No matching distribution found for numpy<2\n"
)


def test_platform_tags_cover_glibc_2_17_to_2_36_and_nothing_newer():
    tags = wheels.platform_tags()
    assert "manylinux_2_27_aarch64" in tags  # LiteRT >= 2.0 ships only this tag for aarch64
    assert "manylinux2014_aarch64" in tags and "manylinux_2_17_aarch64" in tags
    assert "manylinux_2_36_aarch64" in tags and "manylinux_2_37_aarch64" not in tags
    assert all(tag.endswith("_aarch64") for tag in tags)


def test_download_command_asks_for_cpython_3_11_aarch64_binaries_only(tmp_path):
    args = wheels.pip_download_command(["numpy==1.26.4"], tmp_path, python="/py")
    assert args[:4] == ["/py", "-m", "pip", "download"]
    assert "--only-binary=:all:" in args and args[-1] == "numpy==1.26.4"
    for option, value in (("--python-version", "3.11"), ("--abi", "cp311"), ("--implementation", "cp"),
                          ("--dest", str(tmp_path))):
        assert args[args.index(option) + 1] == value
    platforms = [args[i + 1] for i, arg in enumerate(args) if arg == "--platform"]
    assert platforms == list(wheels.platform_tags())


def test_a_missing_wheel_names_the_requirement_and_what_exists():
    error = wheels.diagnose_pip_failure(PIP_NO_WHEEL, "tflite_runtime")
    assert isinstance(error, WheelNotFoundError)
    message = str(error)
    assert "tflite-runtime==2.15.0" in message and "2.14.0" in message and "aarch64" in message
    assert "\n" not in message


def test_no_network_is_not_mistaken_for_a_missing_wheel():
    assert isinstance(wheels.diagnose_pip_failure(PIP_OFFLINE, "tflite_runtime"), NetworkError)


def test_other_pip_failures_are_reported_with_their_last_error():
    assert isinstance(wheels.diagnose_pip_failure("/usr/bin/python3: No module named pip\n", "x"), MissingToolError)
    error = wheels.diagnose_pip_failure("ERROR: Disk quota exceeded\n", "test-tools")
    assert isinstance(error, BuildError) and "Disk quota exceeded" in str(error)


def make_wheel(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_unpacking_puts_packages_and_purelib_on_top_and_drops_scripts(tmp_path):
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": "VALUE = 1\n",
        "demo-1.0.dist-info/METADATA": "Name: demo\nVersion: 1.0\n",
        "demo-1.0.data/purelib/demo_extra.py": "EXTRA = 2\n",
        "demo-1.0.data/scripts/demo-tool": "#!/bin/sh\n",
    })
    site = tmp_path / "site"
    wheels.unpack_wheel(wheel, site)
    assert (site / "demo" / "__init__.py").read_text() == "VALUE = 1\n"
    assert (site / "demo_extra.py").read_text() == "EXTRA = 2\n"
    assert not (site / "demo-tool").exists() and not (site / "demo-1.0.data").exists()
    assert wheels.site_versions(site) == {"demo": "1.0"}


@pytest.mark.parametrize("name", ["../escape.py", "/etc/passwd", "pkg/../../escape.py"])
def test_unsafe_paths_in_a_wheel_are_refused(tmp_path, name):
    wheel = make_wheel(tmp_path / "bad-1.0-py3-none-any.whl", {name: "x"})
    with pytest.raises(BuildError, match="unsafe path"):
        wheels.unpack_wheel(wheel, tmp_path / "site")


def test_a_site_is_reused_only_for_the_same_recipe(tmp_path):
    recipe = wheels.SiteRecipe("demo", ("demo==1.0",))
    folder = tmp_path / f"site-demo-{recipe.key()}"
    folder.mkdir()
    assert wheels.cached_site(tmp_path, recipe) is None
    (folder / ".site.json").write_text(json.dumps({"recipe": recipe.to_dict()}))
    assert wheels.cached_site(tmp_path, recipe) == folder
    bumped = wheels.SiteRecipe("demo", ("demo==1.1",))
    assert bumped.key() != recipe.key() and wheels.cached_site(tmp_path, bumped) is None


def test_pins_replace_requirements_by_normalised_name():
    recipe = wheels.SiteRecipe("x", ("ai-edge-litert==2.3.0", "numpy==2.4.6"))
    pinned = apply_pins(recipe, ["ai_edge_litert==2.1.6", "Pytest==9.0"])
    assert pinned.requirements == ("ai_edge_litert==2.1.6", "numpy==2.4.6")
    with pytest.raises(SettingsError, match="NAME==VERSION"):
        apply_pins(recipe, ["ai-edge-litert>=2"])

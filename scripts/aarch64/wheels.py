"""aarch64 wheels for the guest's CPython 3.11, unpacked into folders put on PYTHONPATH.

pip on the x86_64 host downloads them with `--platform` tags (no pip runs
under emulation); each folder is one interpreter's world, so tflite-runtime
(numpy<2) and LiteRT (numpy 2) never meet. Versions are pinned so a cached
folder is exactly what the recipe says; bump a pin to refresh it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.aarch64.errors import BuildError, MissingToolError, NetworkError, WheelNotFoundError
from scripts.aarch64.host import is_network_failure, run_command

logger = logging.getLogger(__name__)

SITE_RECIPE_VERSION = 1
PYTHON_VERSION = "3.11"
ABI = "cp311"
# Debian bookworm's glibc is 2.36, so every manylinux_2_N wheel with N <= 36
# runs in the root. LiteRT >= 2.0 ships only manylinux_2_27 for aarch64.
GUEST_GLIBC_MINOR = 36
OLDEST_MANYLINUX_MINOR = 17
SITE_PREFIX = "site-"
SITE_RECORD = ".site.json"
PIP_RETRIES = "2"
PIP_TIMEOUT_SECONDS = "30"


@dataclasses.dataclass(frozen=True)
class SiteRecipe:
    """One folder of wheels: its name and the pinned requirements in it."""

    name: str
    requirements: tuple[str, ...]
    version: int = SITE_RECIPE_VERSION

    def to_dict(self) -> dict:
        """A JSON-ready dict (platform tags included: they decide which wheels come)."""
        return {
            "name": self.name,
            "requirements": list(self.requirements),
            "version": self.version,
            "python": PYTHON_VERSION,
            "platforms": list(platform_tags()),
        }

    def key(self) -> str:
        """A short hash of the recipe: a changed pin gets a new folder."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


# The two interpreters that exist for aarch64, by device_runtime Backend value.
TFLITE_RUNTIME = "tflite_runtime"
LITERT = "ai_edge_litert"
INTERPRETER_SITES: Mapping[str, SiteRecipe] = {
    # tflite-runtime's last release; it cannot load models under numpy 2.
    TFLITE_RUNTIME: SiteRecipe(TFLITE_RUNTIME, ("tflite-runtime==2.14.0", "numpy==1.26.4")),
    # The newest LiteRT with an aarch64 cp311 wheel (manylinux_2_27), and the numpy it resolves to.
    LITERT: SiteRecipe(LITERT, ("ai-edge-litert==2.3.0", "numpy==2.4.6")),
}
# Pure-Python test tools, shared by both interpreters.
TEST_SITE = SiteRecipe("test-tools", ("pytest==9.2.0", "hypothesis==6.170.17"))


def platform_tags() -> tuple[str, ...]:
    """pip --platform values for a glibc 2.36 aarch64 Linux, newest first."""
    tags = [f"manylinux_2_{minor}_aarch64" for minor in range(GUEST_GLIBC_MINOR, OLDEST_MANYLINUX_MINOR - 1, -1)]
    return (*tags, "manylinux2014_aarch64")


def pip_download_command(requirements: Sequence[str], dest: Path, python: str = sys.executable) -> list[str]:
    """The host pip command that fetches aarch64 CPython 3.11 wheels for `requirements`."""
    args = [
        python, "-m", "pip", "download",
        "--disable-pip-version-check", "--no-input",
        "--only-binary=:all:",
        "--python-version", PYTHON_VERSION,
        "--implementation", "cp",
        "--abi", ABI,
        "--retries", PIP_RETRIES,
        "--timeout", PIP_TIMEOUT_SECONDS,
        "--dest", str(dest),
    ]  # fmt: skip
    for tag in platform_tags():
        args += ["--platform", tag]
    return [*args, *requirements]


_NO_DISTRIBUTION = re.compile(r"No matching distribution found for (?P<requirement>\S+)")
_FROM_VERSIONS = re.compile(r"Could not find a version that satisfies the requirement (?P<requirement>\S+) "
                            r"\(from versions: (?P<versions>[^)]*)\)")


def diagnose_pip_failure(output: str, site: str) -> Exception:
    """Turns a failed `pip download` into one typed, one-line error."""
    if is_network_failure(output):
        return NetworkError(
            f"pip could not reach the Python package index to download the {site} wheels (no network?); "
            "check the connection or pip's proxy/index settings"
        )
    if "No module named pip" in output:
        return MissingToolError(f"the host Python {sys.executable} has no pip; install it (python3 -m ensurepip)")
    match = _NO_DISTRIBUTION.search(output)
    if match:
        requirement = match["requirement"]
        versions = _FROM_VERSIONS.search(output)
        available = versions["versions"].strip() if versions else ""
        if available and available != "none":
            versions_seen = [v.strip() for v in available.split(",")]
            newest = ", ".join(versions_seen[-3:])
            listing = f"versions that have one: {'..., ' if len(versions_seen) > 3 else ''}{newest}"
        else:
            listing = "no version has one"
        return WheelNotFoundError(
            f"no aarch64 wheel of {requirement} for CPython {PYTHON_VERSION} "
            f"(manylinux, glibc <= 2.{GUEST_GLIBC_MINOR}) "
            f"on the package index ({listing}); pin a version that ships one in scripts/aarch64/wheels.py"
        )
    last = [line for line in output.splitlines() if line.startswith("ERROR")] or output.splitlines()[-1:] or ["?"]
    return BuildError(f"pip download of the {site} wheels failed: {last[-1].strip()}")


def cached_site(cache_dir: Path, recipe: SiteRecipe) -> Path | None:
    """The cached folder for `recipe` if a complete one exists, else None."""
    folder = cache_dir / f"{SITE_PREFIX}{recipe.name}-{recipe.key()}"
    try:
        recorded = json.loads((folder / SITE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return folder if recorded.get("recipe") == recipe.to_dict() else None


def build_site(cache_dir: Path, recipe: SiteRecipe, log_dir: Path, python: str = sys.executable) -> Path:
    """Downloads the recipe's wheels and unpacks them into a cached folder.

    Args:
        cache_dir: the cache folder; the site becomes `site-<name>-<key>` inside it.
        recipe: the pinned requirements.
        log_dir: where pip's output goes.
        python: the host Python whose pip downloads.

    Returns:
        The folder to put on the guest's PYTHONPATH. Older folders of the same
        name are removed.

    Raises:
        NetworkError, WheelNotFoundError, MissingToolError, BuildError: see
            `diagnose_pip_failure`.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{SITE_PREFIX}{recipe.name}-{recipe.key()}"
    building = cache_dir / f".{final.name}.building-{os.getpid()}"
    downloads = building / ".wheels"
    shutil.rmtree(building, ignore_errors=True)
    downloads.mkdir(parents=True)
    log = log_dir / f"pip-download-{recipe.name}.log"
    result = run_command(pip_download_command(recipe.requirements, downloads, python), log_path=log)
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise diagnose_pip_failure(result.output, recipe.name)
    wheels = sorted(downloads.glob("*.whl"))
    for wheel in wheels:
        unpack_wheel(wheel, building)
    shutil.rmtree(downloads)
    record = {"recipe": recipe.to_dict(), "wheels": [wheel.name for wheel in wheels]}
    (building / SITE_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(building, final)
    for other in cache_dir.glob(f"{SITE_PREFIX}{recipe.name}-*"):
        if other != final:
            shutil.rmtree(other, ignore_errors=True)
    logger.info("%s wheels ready: %s", recipe.name, ", ".join(wheel.name for wheel in wheels))
    return final


def unpack_wheel(wheel: Path, site: Path) -> None:
    """Unpacks a wheel as an installer would into one site folder.

    `<name>.data/purelib` and `platlib` go to the top; scripts, headers and
    data files are not needed on PYTHONPATH and are dropped.

    Raises:
        BuildError: the file is not a readable wheel or has unsafe paths.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                target = _wheel_target(member.filename)
                if target is None or member.is_dir():
                    continue
                path = site / target
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(path, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except (zipfile.BadZipFile, OSError) as error:
        raise BuildError(f"cannot unpack {wheel.name}: {error}") from None


def _wheel_target(name: str) -> str | None:
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
        raise BuildError(f"unsafe path {name!r} in a wheel")
    if parts[0].endswith(".data"):
        if len(parts) > 2 and parts[1] in ("purelib", "platlib"):
            return "/".join(parts[2:])
        return None
    return name


def site_versions(site: Path) -> dict[str, str]:
    """Distribution name -> version of every wheel unpacked into `site`."""
    versions = {}
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        versions[name.lower().replace("_", "-")] = version
    return versions

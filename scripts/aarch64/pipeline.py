"""The aarch64 check from start to end: environment, checks under emulation, parity.

1. Host tools (qemu-aarch64-static; debootstrap and dpkg only to build).
2. The arm64 bookworm root and the wheel folders, built once and cached.
3. For each interpreter (tflite-runtime, LiteRT), under emulation: the device
   runtime's TensorFlow-free tests, `device_runtime rank --all` for user 42,
   a small `benchmarks latency` run (whose report must say it was emulated),
   and every model's answers on every contract signature it has
   (`scripts.aarch64.scores`: the parity users, and synthetic histories).
4. The same scores on the x86_64 host with LiteRT, and the comparison.

Every step is timed; the result lists them all, and the run fails when any
step or any parity bound fails.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import importlib.util
import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from device_runtime import contract
from device_runtime.files import write_atomically
from scripts.aarch64 import host, rootfs, wheels
from scripts.aarch64.errors import CheckFailedError, SettingsError

logger = logging.getLogger(__name__)

CACHE_ENV = "KIT_AARCH64_CACHE"
DEFAULT_CACHE = Path("~/.cache/ranking-kit/aarch64")
DEFAULT_PARITY_USERS = 200
GUEST_USER = "42"
GUEST_PYTHON_NAMES = ("python3.11", "python3", "python")
FIXTURE_MODULE = "tests.device_runtime.make_fixtures"
FIXTURES_ENV = "KIT_DEVICE_FIXTURES"  # tests/device_runtime/device_env.py
# pytest markers: the device environment (tflite-runtime, numpy<2, no TensorFlow) runs the
# `device_env` checks of itself too; the LiteRT folder is not that environment.
TEST_MARKERS = {wheels.TFLITE_RUNTIME: "not tensorflow", wheels.LITERT: "not tensorflow and not device_env"}
# The fixture models checked for parity when no model is given (make_fixtures' names): strings-only
# models, then the kit's multi-signature ones (every signature; strings and index space).
FIXTURE_MODELS = ("kit.tflite", "kit_float16.tflite", "kit_int8.tflite", "factor.tflite", "factor_float16.tflite",
                  "tower.tflite")
REFERENCE_BACKEND = wheels.LITERT
# A small latency configuration (emulation is ~300x slower than the host): it proves the
# harness runs and labels the run as emulated, not how fast a board is.
LATENCY_ARGS = (
    "--candidates", "10,all", "--methods", "rank", "--runs", "5", "--block", "5", "--warmup", "1",
    "--min-seconds", "0", "--threads", "1", "--no-saved-model", "-q",
)  # fmt: skip
TESTS_TIMEOUT_SECONDS = 1200
COMMAND_TIMEOUT_SECONDS = 600
PARITY_TIMEOUT_SECONDS = 1200
TAIL_LINES = 12


class Step(str, enum.Enum):
    """What runs under emulation for each interpreter."""

    TESTS = "tests"
    RANK = "rank"
    LATENCY = "latency"
    PARITY = "parity"


@dataclasses.dataclass(frozen=True)
class Settings:
    """One run of the check, validated on creation.

    Attributes:
        repo: the repository root (put on the guest's PYTHONPATH).
        models: .tflite files for rank, latency and parity; empty takes the
            device-runtime test fixtures.
        cache_dir: where the root and wheel folders are kept between runs.
        work_dir: this run's outputs (logs, fixtures, scores, summary.json).
        interpreters: device_runtime backend values to exercise.
        steps: which checks to run.
        cpu: the emulated core (rootfs.CPU_MODELS).
        parity_users: users scored against every movie for parity.
        mirror: the Debian mirror; None finds one in the apt sources.
        install_tools: apt-get install missing tools.
        jobs: interpreters checked at the same time.
        fixtures: a ready fixtures folder; None builds one (needs TensorFlow).
        pins: requirement overrides, e.g. ("ai-edge-litert==2.4.0",).
    """

    repo: Path
    models: tuple[Path, ...] = ()
    cache_dir: Path = DEFAULT_CACHE
    work_dir: Path | None = None
    interpreters: tuple[str, ...] = (wheels.TFLITE_RUNTIME, wheels.LITERT)
    steps: tuple[Step, ...] = tuple(Step)
    cpu: str = rootfs.DEFAULT_CPU
    parity_users: int = DEFAULT_PARITY_USERS
    mirror: str | None = None
    install_tools: bool = False
    jobs: int = 2
    fixtures: Path | None = None
    pins: tuple[str, ...] = ()

    def __post_init__(self):
        for model in self.models:
            if not model.is_file():
                raise SettingsError(f"model file {model} does not exist; pass the path of a .tflite file")
        unknown = [name for name in self.interpreters if name not in wheels.INTERPRETER_SITES]
        if unknown or not self.interpreters:
            raise SettingsError(
                f"unknown interpreter {', '.join(unknown) or '(none)'}; "
                f"choose from {', '.join(wheels.INTERPRETER_SITES)}"
            )
        if self.parity_users < 1:
            raise SettingsError(f"--users must be at least 1, got {self.parity_users}")
        if self.jobs < 1:
            raise SettingsError(f"--jobs must be at least 1, got {self.jobs}")
        if self.fixtures is not None and not self.fixtures.is_dir():
            raise SettingsError(f"fixtures folder {self.fixtures} does not exist")
        rootfs.cpu_model(self.cpu)
        for pin in self.pins:
            _pin_name(pin)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One timed step: what ran, whether it passed, one line of detail, its log."""

    name: str
    passed: bool
    seconds: float
    detail: str = ""
    log: str | None = None
    cpu_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Everything one run did; `passed` is the verdict."""

    steps: tuple[StepResult, ...]
    parity: tuple  # of parity.ParityResult
    skipped: tuple[str, ...]
    environment: Mapping[str, object]
    seconds: float
    work_dir: str

    @property
    def passed(self) -> bool:
        """True when every step and every parity comparison passed."""
        return all(step.passed for step in self.steps) and all(result.passed for result in self.parity)

    def to_dict(self) -> dict:
        """A JSON-ready dict (written to WORK/summary.json)."""
        return {
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "environment": dict(self.environment),
            "steps": [dataclasses.asdict(step) for step in self.steps],
            "parity": [result.to_dict() for result in self.parity],
            "skipped": list(self.skipped),
            "work_dir": self.work_dir,
        }


@dataclasses.dataclass(frozen=True)
class _Guest:
    """How to run the emulated Python: the wrapper command and its environment."""

    python: Path
    repo: Path
    base_env: Mapping[str, str]

    def env(self, site: Path, test_site: Path | None, extra: Mapping[str, str] | None = None) -> dict:
        paths = [str(self.repo), str(site)] + ([str(test_site)] if test_site else [])
        return {**self.base_env, "PYTHONPATH": os.pathsep.join(paths), **(extra or {})}


def _pin_name(pin: str) -> str:
    name, separator, version = pin.partition("==")
    if not separator or not name.strip() or not version.strip():
        raise SettingsError(f"--pin {pin!r} must look like NAME==VERSION, e.g. ai-edge-litert==2.3.0")
    return name.strip().lower().replace("_", "-")


def apply_pins(recipe: wheels.SiteRecipe, pins: Sequence[str]) -> wheels.SiteRecipe:
    """The recipe with requirements of the same name replaced by `pins`."""
    by_name = {_pin_name(pin): pin for pin in pins}
    requirements = tuple(by_name.get(_pin_name(r) if "==" in r else r, r) for r in recipe.requirements)
    return dataclasses.replace(recipe, requirements=requirements)


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """$KIT_AARCH64_CACHE, else ~/.cache/ranking-kit/aarch64."""
    return Path(environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def write_guest_wrapper(bin_dir: Path, root: Path, cpu: rootfs.CpuModel) -> Path:
    """Writes host shell scripts that start the guest Python under qemu.

    The guest sees the script as its `sys.executable` (qemu's -0 sets argv[0]),
    so a test that starts `sys.executable` in a subprocess starts another
    emulated Python, with no binfmt_misc needed.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    qemu = shutil.which(host.QEMU) or host.QEMU
    prefix = " ".join(shlex.quote(part) for part in rootfs.qemu_prefix(root, cpu, qemu))
    program = shlex.quote(str(rootfs.guest_python(root)))
    script = f'#!/bin/sh\nexec {prefix} -0 "$0" {program} "$@"\n'
    first = bin_dir / GUEST_PYTHON_NAMES[0]
    write_atomically(first, script, executable=True)
    for name in GUEST_PYTHON_NAMES[1:]:
        link = bin_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(first.name)
    return first


def run(settings: Settings, environ: Mapping[str, str] = os.environ) -> RunResult:
    """Runs the whole check.

    Args:
        settings: what to run.
        environ: the environment (CI detection, mirror override).

    Returns:
        The steps, the parity results and the figures; `passed` is the verdict.

    Raises:
        EmulationError: the environment cannot be prepared (missing tool,
            no network, missing wheel, ...); each message is one line.
    """
    start = time.monotonic()
    work = (settings.work_dir or settings.cache_dir / "last-run").resolve()
    shutil.rmtree(work / "scores", ignore_errors=True)  # never compare against an earlier run's scores
    for folder in ("logs", "tmp", "home", "scores"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    needs_fixtures = Step.TESTS in settings.steps or not settings.models
    needs_reference = Step.PARITY in settings.steps
    _check_host_python(needs_fixtures and settings.fixtures is None, needs_reference)

    cpu = rootfs.cpu_model(settings.cpu)
    root, sites, steps = _prepare(settings, cpu, environ, logs)
    guest = _Guest(write_guest_wrapper(work / "bin", root, cpu), settings.repo.resolve(), _guest_env(settings, work))
    smoke = _smoke(guest, sites[settings.interpreters[0]], logs)
    steps.append(smoke)
    if not smoke.passed:
        raise CheckFailedError(f"the emulated Python does not start: {smoke.detail} (see {smoke.log})")

    fixtures = settings.fixtures
    if needs_fixtures and fixtures is None:
        fixtures_step, fixtures = _make_fixtures(settings.repo, work, logs)
        steps.append(fixtures_step)
        if not fixtures_step.passed:
            raise CheckFailedError(f"making the device-runtime fixtures failed: {fixtures_step.detail}")
    models = settings.models or tuple(fixtures / name for name in FIXTURE_MODELS)
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        raise SettingsError(f"model files missing: {', '.join(missing)}")

    # Each interpreter's checks and the x86_64 reference scores run side by side.
    tasks: dict[str, Callable[[], list]] = {}
    if needs_reference:
        tasks["x86_64 reference"] = lambda: _reference_scores(settings, models, work, logs)
    for name in settings.interpreters:
        tasks[name] = (lambda n=name: _interpreter_checks(settings, n, guest, sites[n], sites.get("test"),
                                                           fixtures, models, work, logs))
    outcomes: dict[str, list] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=settings.jobs) as pool:
        futures = {pool.submit(task): name for name, task in tasks.items()}
        for future in concurrent.futures.as_completed(futures):
            outcomes[futures[future]] = future.result()
    for name in tasks:
        steps.extend(outcomes[name])

    parity_results, skipped = [], []
    if needs_reference:
        parity_results, skipped, parity_steps = _compare_all(settings, models, work)
        steps.extend(parity_steps)
    environment = {
        "cpu": cpu.qemu_name,
        "root": str(root),
        "qemu": _first_line(host.run_command([host.QEMU, "--version"]).output),
        "sites": {name: wheels.site_versions(site) for name, site in sites.items()},
        "models": [str(m) for m in models],
        "parity_users": settings.parity_users,
    }
    result = RunResult(tuple(steps), tuple(parity_results), tuple(skipped), environment,
                       time.monotonic() - start, str(work))
    write_atomically(work / "summary.json", json.dumps(result.to_dict(), indent=1, ensure_ascii=False))
    return result


def _prepare(settings: Settings, cpu: rootfs.CpuModel, environ: Mapping[str, str], logs: Path):
    """Tools, the arm64 root and the wheel folders: reused from the cache or built.

    Returns:
        The root, the site folder per interpreter (and "test"), and the steps taken.
    """
    steps: list[StepResult] = []
    recipe = rootfs.RootRecipe()
    root = rootfs.cached_root(settings.cache_dir, recipe)
    install = host.may_install_tools(settings.install_tools, environ, os.geteuid())
    began = time.monotonic()
    installed = host.ensure_tools((host.QEMU,) + (() if root else rootfs.tools_for_build()), install=install,
                                  log_dir=logs)
    if installed:
        steps.append(StepResult("apt-get install " + " ".join(installed), True, time.monotonic() - began))
    if root is None:
        began = time.monotonic()
        mirror = host.debian_mirror(settings.mirror, environ)
        root = rootfs.build_root(settings.cache_dir, recipe, mirror, logs)
        steps.append(StepResult("build arm64 root", True, time.monotonic() - began, str(root)))
    else:
        steps.append(StepResult("reuse arm64 root", True, 0.0, str(root)))
    rootfs.write_cpuinfo(root, cpu)

    recipes = {name: apply_pins(wheels.INTERPRETER_SITES[name], settings.pins) for name in settings.interpreters}
    if Step.TESTS in settings.steps:
        recipes["test"] = apply_pins(wheels.TEST_SITE, settings.pins)
    sites = {}
    for name, site_recipe in recipes.items():
        began = time.monotonic()
        site = wheels.cached_site(settings.cache_dir, site_recipe)
        verb = "reuse"
        if site is None:
            site = wheels.build_site(settings.cache_dir, site_recipe, logs)
            verb = "download"
        sites[name] = site
        versions = ", ".join(f"{k} {v}" for k, v in wheels.site_versions(site).items())
        steps.append(StepResult(f"{verb} {site_recipe.name} wheels", True, time.monotonic() - began, versions))
    return root, sites, steps


def _guest_env(settings: Settings, work: Path) -> dict:
    """The guest's environment, PYTHONPATH aside: nothing of the host's leaks in."""
    return {
        "PATH": f"{work / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(work / "home"),
        "TMPDIR": str(work / "tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # Byte code of the wheels and the repo is kept with the cache, out of both.
        "PYTHONPYCACHEPREFIX": str(settings.cache_dir / "pycache"),
        "HYPOTHESIS_STORAGE_DIRECTORY": str(work / "hypothesis"),
    }


def _check_host_python(needs_tensorflow: bool, needs_litert: bool) -> None:
    hint = "run with the main environment's Python: KIT_PYTHON=/path/to/venv/bin/python scripts/aarch64/run.sh"
    if needs_litert and importlib.util.find_spec("ai_edge_litert") is None:
        raise SettingsError(f"the host Python {sys.executable} lacks ai-edge-litert (x86_64 reference scores); {hint}")
    if needs_tensorflow and importlib.util.find_spec("tensorflow") is None:
        raise SettingsError(
            f"the host Python {sys.executable} lacks TensorFlow (it makes the test fixtures); {hint}, "
            "or pass --fixtures DIR made by python -m tests.device_runtime.make_fixtures DIR"
        )


def _smoke(guest: _Guest, site: Path, logs: Path) -> StepResult:
    code = "import platform, sys; print(platform.machine(), '%d.%d' % sys.version_info[:2])"
    result = host.run_command([str(guest.python), "-c", code], env=guest.env(site, None),
                              log_path=logs / "guest-smoke.log", timeout=COMMAND_TIMEOUT_SECONDS)
    seen = _first_line(result.output)
    expected = f"{rootfs.GUEST_ARCHITECTURE} 3.11"
    passed = result.returncode == 0 and seen == expected
    return StepResult("emulated python starts", passed, result.seconds,
                      seen if passed else f"expected {expected!r}, got {seen!r} (exit {result.returncode})",
                      str(logs / "guest-smoke.log"), result.cpu_seconds)


def _make_fixtures(repo: Path, work: Path, logs: Path) -> tuple[StepResult, Path]:
    folder = work / "fixtures"
    log = logs / "make-fixtures.log"
    result = host.run_command([sys.executable, "-m", FIXTURE_MODULE, str(folder)], cwd=repo, log_path=log,
                              timeout=COMMAND_TIMEOUT_SECONDS)
    detail = str(folder) if result.returncode == 0 else f"exit {result.returncode}: {result.tail(1)}"
    return StepResult("make device-runtime fixtures (x86_64, TensorFlow)", result.returncode == 0, result.seconds,
                      detail, str(log), result.cpu_seconds), folder


def _interpreter_checks(settings, name, guest, site, test_site, fixtures, models, work, logs) -> list[StepResult]:
    results = []
    env_extra = {FIXTURES_ENV: str(fixtures)} if fixtures else {}
    env = guest.env(site, test_site, env_extra)
    python = str(guest.python)
    model = str(models[0])
    if Step.TESTS in settings.steps:
        markers = TEST_MARKERS[name]
        results.append(_guest_step(
            f"[{name}] pytest tests/device_runtime -m '{markers}'",
            [python, "-m", "pytest", "tests/device_runtime", "-m", markers, "-q", "-p", "no:cacheprovider"],
            guest, env, logs / f"{name}-tests.log", TESTS_TIMEOUT_SECONDS, summary=_pytest_summary,
        ))
    if Step.RANK in settings.steps:
        results.append(_guest_step(
            f"[{name}] device_runtime rank --user {GUEST_USER} --all",
            [python, "-m", "device_runtime", "rank", "--model", model, "--user", GUEST_USER, "--all",
             "--backend", name],
            guest, env, logs / f"{name}-rank.log", COMMAND_TIMEOUT_SECONDS,
            summary=lambda output: _line_starting(output, "top "),
        ))
    if Step.LATENCY in settings.steps:
        report = work / f"latency-{name}.json"
        step = _guest_step(
            f"[{name}] benchmarks latency (small)",
            [python, "-m", "benchmarks", "latency", "--model", model, "--backend", name, *LATENCY_ARGS,
             "--out", str(report)],
            guest, env, logs / f"{name}-latency.log", COMMAND_TIMEOUT_SECONDS, summary=lambda _: "",
        )
        results.append(_check_emulated_label(step, report))
    if Step.PARITY in settings.steps:
        for model_path in models:
            results.append(_guest_scores(settings, name, guest, env, model_path, work, logs))
    return results


def _guest_step(title, args, guest, env, log, timeout, summary: Callable[[str], str]) -> StepResult:
    logger.info("%s ...", title)
    result = host.run_command(args, env=env, cwd=guest.repo, log_path=log, timeout=timeout)
    passed = result.returncode == 0
    detail = summary(result.output) if passed else f"exit {result.returncode}:\n{result.tail(TAIL_LINES)}"
    logger.info("%s: %s in %.1f s", title, "passed" if passed else "FAILED", result.seconds)
    return StepResult(title, passed, result.seconds, detail, str(log), result.cpu_seconds)


def _pytest_summary(output: str) -> str:
    lines = [line.strip("= ") for line in output.splitlines() if " passed" in line or " failed" in line]
    return lines[-1] if lines else _first_line(output)


def _check_emulated_label(step: StepResult, report: Path) -> StepResult:
    """The latency report must say the figures were measured under emulation."""
    if not step.passed:
        return step
    try:
        machine = json.loads(report.read_text(encoding="utf-8"))["machine"]
    except (OSError, ValueError, KeyError) as error:
        return dataclasses.replace(step, passed=False, detail=f"no readable report at {report}: {error}")
    if machine.get("emulated") is not True:
        return dataclasses.replace(
            step, passed=False,
            detail="the latency report does not label the run as emulated (machine.emulated is "
                   f"{machine.get('emulated')!r}); benchmarks/machine.py detect_emulation must see qemu",
        )
    return dataclasses.replace(step, detail=f"labelled emulated: {machine.get('emulation_evidence')}")


def _model_key(model: Path) -> str:
    return model.name[: -len(".tflite")] if model.name.endswith(".tflite") else model.name


def _expected_to_run(model: Path, backend: str) -> str | None:
    from device_runtime.flatbuffer import read_flatbuffer
    from scripts.aarch64.parity import expected_to_run

    return expected_to_run(read_flatbuffer(model.read_bytes(), str(model)).operator_codes, backend)


def _scores_args(python: str, model: Path, backend: str, users: int, out: Path) -> list[str]:
    return [python, "-m", "scripts.aarch64.scores", "--model", str(model), "--backend", backend,
            "--users", str(users), "--out", str(out)]


def _guest_scores(settings, name, guest, env, model, work, logs) -> StepResult:
    title = f"[{name}] parity scores {model.name}"
    reason = _expected_to_run(model, name)
    if reason is not None:
        return StepResult(title, True, 0.0, f"not run: the converter's table says {name} cannot load it ({reason})")
    out = work / "scores" / "aarch64" / name / _model_key(model)
    log = logs / f"{name}-scores-{_model_key(model)}.log"
    args = _scores_args(str(guest.python), model, name, settings.parity_users, out)
    logger.info("%s ...", title)
    result = host.run_command(args, env=env, cwd=guest.repo, log_path=log, timeout=PARITY_TIMEOUT_SECONDS)
    detail = _line_starting(result.output, "scored") if result.returncode == 0 else \
        f"exit {result.returncode}: {result.tail(3)}"
    logger.info("%s: %s in %.1f s", title, "done" if result.returncode == 0 else "FAILED", result.seconds)
    return StepResult(title, result.returncode == 0, result.seconds, detail, str(log), result.cpu_seconds)


def _reference_scores(settings, models, work, logs) -> list[StepResult]:
    results = []
    for model in models:
        out = work / "scores" / "x86_64" / _model_key(model)
        log = logs / f"x86_64-scores-{_model_key(model)}.log"
        args = _scores_args(sys.executable, model, REFERENCE_BACKEND, settings.parity_users, out)
        result = host.run_command(args, cwd=settings.repo, log_path=log, timeout=PARITY_TIMEOUT_SECONDS)
        detail = _line_starting(result.output, "scored") if result.returncode == 0 else \
            f"exit {result.returncode}: {result.tail(3)}"
        results.append(StepResult(f"[x86_64 {REFERENCE_BACKEND}] parity scores {model.name}",
                                  result.returncode == 0, result.seconds, detail, str(log), result.cpu_seconds))
    return results


def _compare_all(settings, models, work):
    from scripts.aarch64.parity import compare_files, format_result

    results, skipped, steps = [], [], []
    for model in models:
        key = _model_key(model)
        reference = work / "scores" / "x86_64" / key
        if not reference.with_name(key + ".npy").is_file():
            continue  # its failure is already a failed step
        not_present = ()
        for name in settings.interpreters:
            candidate = work / "scores" / "aarch64" / name / key
            if not candidate.with_name(key + ".npy").is_file():
                reason = _expected_to_run(model, name)
                if reason is not None:
                    skipped.append(f"{model.name} on {name}: not expected to run ({reason})")
                continue
            began = time.monotonic()
            comparison = compare_files(reference, candidate)
            seconds = (time.monotonic() - began) / len(comparison.results)
            not_present = comparison.not_present
            for result in comparison.results:
                results.append(result)
                signature = "" if result.signature == contract.STRINGS else f" {result.label}"
                steps.append(StepResult(f"[{name}] parity {model.name}{signature}", result.passed, seconds,
                                        format_result(result)))
        if not_present:
            skipped.append(f"{model.name}: {', '.join(not_present)} not present in the file (not a failure)")
    return results, skipped, steps


def _line_starting(text: str, prefix: str) -> str:
    """The first line that starts with `prefix` (after stripping), else the first non-empty line."""
    for line in text.splitlines():
        if line.strip().startswith(prefix):
            return line.strip()
    return _first_line(text)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""

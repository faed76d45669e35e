"""The long fuzz run: damaged copies of a real model, each loaded and ranked in a process of its own.

    python -m benchmarks mutations --model M.tflite [--count 10000] [--seed N] [--jobs N] [--timeout S]
        [--kinds flip,zero,truncate] [--backend NAME] --out RESULT.json [--markdown F] [--keep DIR]

Each case writes one mutation of the model (`benchmarks.corruption`, case N of
seed S) to a scratch folder and forks a child of this process (which imported
numpy, the runtime and the interpreter package once) that does what an app
does: `Ranker(path)`, then a ranking of every movie of the original model for
one user. A crash or a hang can only take the child down. The child's stdout
and stderr go to a scratch file whose end is kept for the cases worth reading.

A case ends as one of `Outcome`: refused with a typed error (what must happen,
counted by error type), served (loaded and ranked: a corrupt file served, the
thing that must not happen; split by whether the scores are the original's),
crashed (killed by a signal), hung (killed after the timeout), or other (another
exception type, or an exit without a result).

A child may use `MEMORY_HEADROOM_BYTES` more address space than this process,
so a file that asks the interpreter for huge tensors fails (MemoryError, or
SIGABRT from the allocator) instead of exhausting a shared machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import faulthandler
import hashlib
import json
import logging
import os
import resource
import select
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from benchmarks.config import DEFAULT_USER, check_model_file
from benchmarks.corruption import DEFAULT_KINDS, Kind, Mutation, case_mutation, flatbuffer_fields
from benchmarks.errors import SettingsError
from benchmarks.machine import Machine, describe_machine, produced_by
from device_runtime.backends import AUTO_ORDER, Backend, import_backend, parse_backend
from device_runtime.errors import DeviceRuntimeError, one_line
from device_runtime.files import write_atomically
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.manifest import read_manifest

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
REPORT_KIND = "ranking-kit mutation run"
DEFAULT_COUNT = 10_000
DEFAULT_SEED = 0
DEFAULT_TIMEOUT_SECONDS = 30.0
MEMORY_HEADROOM_BYTES = 2 << 30
PROGRESS_SECONDS = 10.0
MESSAGE_LIMIT = 240  # characters of an error message or of a child's stderr kept per case
NOTABLE_IN_MARKDOWN = 25  # cases listed in the Markdown report (the JSON lists them all)
_EXIT_WITHOUT_RESULT = 3


class Outcome(str, enum.Enum):
    """How a case ended."""

    REFUSED = "refused"
    SERVED = "served"
    CRASHED = "crashed"
    HUNG = "hung"
    OTHER = "other"


@dataclasses.dataclass(frozen=True)
class MutationSettings:
    """What a mutation run does, checked once.

    Attributes:
        model: the sealed .tflite to damage (with its vocabularies embedded).
        count: how many mutated copies.
        seed: names the run's mutations (case N of seed S is the same on any machine).
        jobs: children running at once.
        timeout_seconds: a child running longer is killed and counted as hung.
        kinds: the mutation kinds to draw from, with equal chances.
        backend: the interpreter package the Ranker uses ("auto" or a package name).
        keep: a folder to copy every mutated file that was not refused into, or None.
    """

    model: Path
    count: int = DEFAULT_COUNT
    seed: int = DEFAULT_SEED
    jobs: int = 1
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    kinds: tuple[Kind, ...] = DEFAULT_KINDS
    backend: str = Backend.AUTO.value
    keep: Optional[Path] = None

    def __post_init__(self):
        for name, value, low in (("--count", self.count, 1), ("--jobs", self.jobs, 1), ("--seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SettingsError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.timeout_seconds, (int, float)) and 0 < self.timeout_seconds < float("inf")):
            raise SettingsError(f"--timeout must be a positive number of seconds, got {self.timeout_seconds!r}")
        if not self.kinds:
            raise SettingsError(f"--kinds needs at least one of {', '.join(kind.value for kind in Kind)}")
        check_model_file(self.model)
        if self.keep is not None and not self.keep.is_dir():
            raise SettingsError(f"--keep {self.keep} is not a folder; create it first")

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict."""
        data = dataclasses.asdict(self)
        data.update(model=str(self.model), kinds=[kind.value for kind in self.kinds])
        data["keep"] = None if self.keep is None else str(self.keep)
        return data


def parse_kinds(text: str) -> tuple[Kind, ...]:
    """Parses "flip,zero,truncate,field".

    Raises:
        SettingsError: an unknown kind.
    """
    kinds = []
    for name in (part.strip() for part in text.split(",")):
        try:
            kind = Kind(name)
        except ValueError:
            raise SettingsError(
                f"--kinds: unknown mutation {name!r}; choose from {', '.join(kind.value for kind in Kind)}"
            ) from None
        if kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """How one mutated copy fared.

    Attributes:
        case: its number (with the seed, it names the mutation).
        kind, detail: the mutation.
        outcome: how it ended.
        error_type: the exception's type (refused and other).
        signal: the signal's name (crashed).
        message: the error message, or the end of the child's stderr (crashed, hung, other).
        same_scores: for a served case, whether the ranking equals the original's.
        seconds: wall time of the case.
    """

    case: int
    kind: str
    detail: str
    outcome: Outcome
    error_type: Optional[str] = None
    signal: Optional[str] = None
    message: Optional[str] = None
    same_scores: Optional[bool] = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["outcome"] = self.outcome.value
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclasses.dataclass(frozen=True)
class MutationReport:
    """A whole run: settings, machine, the original's load, and every case's outcome."""

    created_at: str
    command: str
    settings: MutationSettings
    machine: Machine
    model_sha256: str
    model_size_bytes: int
    backend: str
    backend_version: str
    user: str
    candidates: int
    seconds: float
    cases: tuple[CaseResult, ...]

    def count(self, outcome: Outcome) -> int:
        return sum(case.outcome is outcome for case in self.cases)

    def breakdown(self, outcome: Outcome) -> dict[str, int]:
        """Cases of one outcome by error type, signal, or (served) whether the scores changed."""
        counts: dict[str, int] = {}
        for case in self.cases:
            if case.outcome is outcome:
                key = case.signal or case.error_type or ("same scores" if case.same_scores else "different scores")
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    @property
    def clean(self) -> bool:
        """True when every mutated copy was refused with a typed error."""
        return self.count(Outcome.REFUSED) == len(self.cases)

    def to_dict(self) -> dict:
        """The JSON document (schema in docs/benchmarks.md)."""
        by_kind = {
            kind.value: {outcome.value: sum(c.kind == kind.value and c.outcome is outcome for c in self.cases)
                         for outcome in Outcome}
            for kind in self.settings.kinds
        }
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": REPORT_KIND,
            "created_at": self.created_at,
            "command": self.command,
            "machine": self.machine.to_dict(),
            "settings": self.settings.to_dict(),
            "model": {
                "path": str(self.settings.model),
                "sha256": self.model_sha256,
                "size_bytes": self.model_size_bytes,
            },
            "backend": {"name": self.backend, "version": self.backend_version},
            "ranking": {"user": self.user, "candidates": self.candidates},
            "seconds": round(self.seconds, 1),
            "counts": {outcome.value: self.count(outcome) for outcome in Outcome},
            "breakdown": {outcome.value: self.breakdown(outcome) for outcome in Outcome},
            "by_kind": by_kind,
            "cases": [case.to_dict() for case in self.cases if case.outcome is not Outcome.REFUSED],
        }

    def to_markdown(self) -> str:
        """The human report: command, machine, the counts and the cases that were not refused."""
        settings = self.settings
        lines = [f"# Mutation run: {settings.model.name}", ""]
        lines += produced_by(self.command, self.machine, self.created_at) + [""]
        lines += [
            f"Model: `{settings.model}`, {self.model_size_bytes:,} bytes, sha256 `{self.model_sha256[:16]}…`. "
            f"Each of {len(self.cases):,} mutated copies ({', '.join(kind.value for kind in settings.kinds)}; "
            f"seed {settings.seed}) was loaded with `Ranker(path)` ({self.backend} {self.backend_version}) and ranked "
            f"all {self.candidates:,} movies for user {self.user!r} in a process of its own; "
            f"{settings.jobs} at a time, timeout {settings.timeout_seconds:g} s; {self.seconds:.0f} s in all.",
            "",
            "| outcome | cases | share | breakdown |",
            "|---|---:|---:|---|",
        ]
        for outcome in Outcome:
            count = self.count(outcome)
            breakdown = ", ".join(f"{key} {value}" for key, value in self.breakdown(outcome).items())
            lines.append(f"| {outcome.value} | {count:,} | {100 * count / len(self.cases):.1f}% | {breakdown} |")
        lines += ["", "| mutation | cases | " + " | ".join(outcome.value for outcome in Outcome) + " |"]
        lines.append("|---|---:|" + "---:|" * len(Outcome))
        for kind in settings.kinds:
            of_kind = [case for case in self.cases if case.kind == kind.value]
            cells = [str(sum(case.outcome is outcome for case in of_kind)) for outcome in Outcome]
            lines.append(f"| {kind.value} | {len(of_kind)} | " + " | ".join(cells) + " |")
        notable = sorted(
            (case for case in self.cases if case.outcome is not Outcome.REFUSED),
            key=lambda case: (_SEVERITY.index(case.outcome), bool(case.same_scores), case.case),
        )
        if notable:
            shown = f"the {NOTABLE_IN_MARKDOWN} worst here, all in the JSON"
            lines += ["", f"Cases not refused ({len(notable)}; {shown}):", ""]
            lines += ["| case | mutation | outcome | why |", "|---:|---|---|---|"]
            for case in notable[:NOTABLE_IN_MARKDOWN]:
                why = case.signal or case.error_type or ("same scores" if case.same_scores else "different scores")
                if case.message and case.outcome is not Outcome.SERVED:
                    why += f": {case.message}"
                lines.append(f"| {case.case} | {case.kind}: {case.detail} | {case.outcome.value} | {_cell(why)} |")
        lines += [
            "",
            "Any case can be made again: `benchmarks.corruption.case_mutation(original, seed, case, kinds, "
            "flatbuffer_fields(original))`.",
        ]
        return "\n".join(lines) + "\n"


# The order in which the Markdown lists the cases that were not refused.
_SEVERITY = (Outcome.CRASHED, Outcome.HUNG, Outcome.OTHER, Outcome.SERVED, Outcome.REFUSED)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- one case, in a child process ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Target:
    """What every child ranks, decided once from the original model."""

    backend: str
    user: str
    titles: tuple[str, ...]


def _load_and_rank(path: Path, target: _Target) -> dict:
    """What an app does with a model file; never raises."""
    from device_runtime import Ranker

    try:
        ranker = Ranker(path, backend=target.backend)
        ranking = ranker.rank(target.user, target.titles, k=None)
        info = ranker.info()
    except DeviceRuntimeError as error:
        return _failure(Outcome.REFUSED, error)
    except Exception as error:  # noqa: BLE001 - any other type is what the run looks for
        return _failure(Outcome.OTHER, error)
    digest = hashlib.sha256(json.dumps(ranking).encode("utf-8")).hexdigest()
    return {
        "outcome": Outcome.SERVED.value,
        "scores_sha256": digest,
        "backend": info.backend,
        "backend_version": info.backend_version,
    }


def _failure(outcome: Outcome, error: Exception) -> dict:
    return {"outcome": outcome.value, "error_type": type(error).__name__, "message": one_line(error, MESSAGE_LIMIT)}


def _child(path: Path, target: _Target, result_fd: int, output_path: Path) -> None:
    """Runs in the forked child: redirects its output, bounds its memory, reports on `result_fd`, exits."""
    status = _EXIT_WITHOUT_RESULT
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is the parent's to handle
        faulthandler.disable()  # a crash is reported by its signal, not dumped on the parent's terminal
        output = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(output, 1)
        os.dup2(output, 2)
        _bound_memory()
        result = json.dumps(_load_and_rank(path, target)).encode("utf-8")
        while result:
            result = result[os.write(result_fd, result) :]
        status = 0
    finally:
        os._exit(status)  # never the parent's cleanup (atexit, temporary folders)


def _bound_memory() -> None:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            virtual = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (virtual + MEMORY_HEADROOM_BYTES, resource.RLIM_INFINITY))
    except (OSError, ValueError, IndexError):
        pass  # not Linux, or the limit cannot be set: run unbounded


# --- the parent: fork, wait, classify ----------------------------------------------------------


@dataclasses.dataclass
class _Running:
    case: int
    mutation: Mutation
    pid: int
    fd: int
    started: float
    path: Path
    output_path: Path
    received: bytearray = dataclasses.field(default_factory=bytearray)


def _start(case: int, mutation: Mutation, target: _Target, scratch: Path) -> _Running:
    path = scratch / f"case-{case}.tflite"
    path.write_bytes(mutation.data)  # scratch: read by one child, then deleted
    output_path = scratch / f"case-{case}.out"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(path, target, write_fd, output_path)  # never returns
    os.close(write_fd)
    return _Running(case, mutation, pid, read_fd, time.monotonic(), path, output_path)


def _tail(path: Path) -> Optional[str]:
    try:
        text = path.read_bytes()[-4 * MESSAGE_LIMIT :].decode("utf-8", errors="replace")
    except OSError:
        return None
    return one_line(text[-MESSAGE_LIMIT:]) or None


def _finish(running: _Running, status: Optional[int], baseline: Optional[str]) -> tuple[CaseResult, dict]:
    """Classifies an ended child (`status` None: it was killed for running too long)."""
    seconds = time.monotonic() - running.started
    base = dict(case=running.case, kind=running.mutation.kind.value, detail=running.mutation.detail, seconds=seconds)
    report: dict = {}
    if status is None:
        result = CaseResult(**base, outcome=Outcome.HUNG, message=_tail(running.output_path))
    elif os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        result = CaseResult(**base, outcome=Outcome.CRASHED, signal=name, message=_tail(running.output_path))
    else:
        try:
            report = json.loads(bytes(running.received).decode("utf-8"))
            outcome = Outcome(report["outcome"])
        except (ValueError, KeyError):
            code = os.WEXITSTATUS(status)
            tail = _tail(running.output_path)
            message = f"exited with status {code} without a result" + (f": {tail}" if tail else "")
            result = CaseResult(**base, outcome=Outcome.OTHER, error_type=f"exit {code}", message=message)
        else:
            same = None if outcome is not Outcome.SERVED else report.get("scores_sha256") == baseline
            result = CaseResult(
                **base,
                outcome=outcome,
                error_type=report.get("error_type"),
                message=report.get("message"),
                same_scores=same,
            )
    for path in (running.path, running.output_path):
        path.unlink(missing_ok=True)
    return result, report


def _run_cases(
    mutations: Callable[[int], Mutation],
    cases: Sequence[int],
    target: _Target,
    settings: MutationSettings,
    scratch: Path,
    baseline: Optional[str],
    on_result: Callable[[CaseResult, bytes], None],
) -> list[tuple[CaseResult, dict]]:
    pending = list(reversed(cases))
    running: dict[int, _Running] = {}
    results: list[tuple[CaseResult, dict]] = []
    try:
        while pending or running:
            while pending and len(running) < settings.jobs:
                case = pending.pop()
                started = _start(case, mutations(case), target, scratch)
                running[started.fd] = started
            deadline = min(child.started for child in running.values()) + settings.timeout_seconds
            ready, _, _ = select.select(list(running), [], [], max(0.0, deadline - time.monotonic()))
            ended: dict[int, Optional[int]] = {}  # fd -> wait status; None: killed for running too long
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    running[fd].received += chunk
                else:  # end of file: the child has exited
                    ended[fd] = os.waitpid(running[fd].pid, 0)[1]
            now = time.monotonic()
            for fd, child in running.items():
                if fd not in ended and now - child.started > settings.timeout_seconds:
                    os.kill(child.pid, signal.SIGKILL)
                    os.waitpid(child.pid, 0)
                    ended[fd] = None
            for fd, status in ended.items():
                child = running.pop(fd)
                os.close(fd)
                result, report = _finish(child, status, baseline)
                results.append((result, report))
                on_result(result, child.mutation.data)
    finally:
        for child in running.values():  # interrupted: leave no child behind
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            os.close(child.fd)
    return results


def _preload(backend: Backend) -> None:
    """Imports the interpreter package once, here, so no child pays for the import."""
    candidates = AUTO_ORDER if backend is Backend.AUTO else (backend,)
    errors = []
    for candidate in candidates:
        try:
            import_backend(candidate)
            return
        except DeviceRuntimeError as error:
            errors.append(one_line(error))
    raise SettingsError(f"--backend {backend.value}: {errors[0]}")


def _target(settings: MutationSettings, original: bytes) -> _Target:
    try:
        manifest = read_manifest(read_flatbuffer(original, str(settings.model)))
        users, titles = (manifest.users, manifest.movies) if manifest is not None else (None, None)
    except DeviceRuntimeError as error:
        raise SettingsError(f"--model {settings.model} cannot be read: {one_line(error)}") from None
    if not users or not titles:
        raise SettingsError(
            f"--model {settings.model} carries no vocabularies; the run ranks every movie of the model, so pass a "
            "model converted by `python -m convert` (which embeds them)"
        )
    user = DEFAULT_USER if DEFAULT_USER in users else users[0]
    return _Target(backend=settings.backend, user=user, titles=tuple(titles))


def run_mutations(settings: MutationSettings, command: str) -> MutationReport:
    """Damages the model `settings.count` times and loads and ranks each copy in a child process.

    Args:
        settings: the run's settings.
        command: the command line, for the report.

    Returns:
        The report: every case's outcome.

    Raises:
        SettingsError: the model cannot be read, carries no vocabularies, or does
            not load and rank undamaged; the backend is not installed; no os.fork.
    """
    if not hasattr(os, "fork"):
        raise SettingsError("the mutation run forks a process per case, which this system cannot; use Linux or macOS")
    backend = parse_backend(settings.backend)
    original = settings.model.read_bytes()
    target = _target(settings, original)
    fields = flatbuffer_fields(original) if Kind.FIELD in settings.kinds else ()
    _preload(backend)
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutations-") as scratch:
        scratch = Path(scratch)
        untouched = Mutation(Kind.FLIP, "the original, undamaged", original)
        [(baseline, report)] = _run_cases(lambda case: untouched, [-1], target, settings, scratch, None, _ignore)
        if baseline.outcome is not Outcome.SERVED:
            reason = baseline.signal or baseline.message or baseline.outcome.value
            raise SettingsError(
                f"--model {settings.model} does not load and rank undamaged ({reason}); pass a good model"
            )
        machine = describe_machine({report["backend"]: report["backend_version"]})
        progress = _Progress(settings.count)
        outcomes = _run_cases(
            lambda case: case_mutation(original, settings.seed, case, settings.kinds, fields),
            range(settings.count),
            target,
            settings,
            scratch,
            report["scores_sha256"],
            lambda result, data: (progress.add(result), _keep(settings.keep, result, data)),
        )
    return MutationReport(
        created_at=started_at,
        command=command,
        settings=settings,
        machine=machine,
        model_sha256=hashlib.sha256(original).hexdigest(),
        model_size_bytes=len(original),
        backend=report["backend"],
        backend_version=report["backend_version"],
        user=target.user,
        candidates=len(target.titles),
        seconds=time.monotonic() - started,
        cases=tuple(sorted((result for result, _ in outcomes), key=lambda result: result.case)),
    )


def _ignore(result: CaseResult, data: bytes) -> None:
    pass


def _keep(folder: Optional[Path], result: CaseResult, data: bytes) -> None:
    if folder is not None and result.outcome is not Outcome.REFUSED:
        write_atomically(folder / f"case-{result.case}-{result.outcome.value}.tflite", data)


class _Progress:
    """Logs how far the run is, every PROGRESS_SECONDS."""

    def __init__(self, total: int):
        self.total = total
        self.counts = {outcome: 0 for outcome in Outcome}
        self.started = self.last = time.monotonic()

    def add(self, result: CaseResult) -> None:
        self.counts[result.outcome] += 1
        done = sum(self.counts.values())
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS or done == self.total:
            self.last = now
            left = (now - self.started) / done * (self.total - done)
            counts = ", ".join(f"{outcome.value} {count}" for outcome, count in self.counts.items())
            elapsed = now - self.started
            logger.info("%d/%d cases (%s); %.0f s, about %.0f s left", done, self.total, counts, elapsed, left)

"""The soak: a million rankings on one Ranker while its model is swapped, with bad calls mixed in.

    python -m benchmarks soak --model A.tflite --model B.tflite [--calls 1000000] [--threads 8]
        [--swap-every 1000] [--backend NAME] --out RESULT.json [--markdown F]

`threads` threads share one `Ranker` (strict mode) and rank every movie of A
for users known to both models, `TOP_K` best, until `calls` calls are done. A
swapper thread acts every `swap_every` calls, in turn: `reload` to the other
model; `reload` a corrupt copy of A (one byte flipped in its middle), which must
raise a typed error and leave the old model serving; `reload` the other model
again; `reload` a file that does not exist, likewise. Every `BAD_CALL_EVERY`-th
call is a bad one (an unknown user, an empty id, a float id) that must raise
its own error type. A sampler records the process's resident memory every
`RSS_SAMPLE_SECONDS`.

A failure is any of: a good call that raised; a result equal to neither A's nor
B's own ranking (computed before the soak by a Ranker of each); a bad call that
did not raise its error; a bad reload that did not raise, or after which the
model changed; a good reload after which the Ranker did not serve the new
model. The run passes when there is no failure and the resident memory does not
trend upwards: the least-squares slope of RSS against calls, over the samples
taken after the first `RSS_WARMUP_FRACTION` of the calls, must not exceed
`RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS`. With fewer than `RSS_TREND_MIN_SAMPLES`
samples after the warm-up the memory is not judged ("n/a"): a short run passes
or fails on its calls and checks alone, and its report says so.

It needs `Ranker.reload(path)` (issue 15's hot swap): load and check the new
model off the request path, then switch atomically; a failed reload raises and
the old model keeps serving.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from benchmarks.config import TOP_K, check_model_file
from benchmarks.errors import SettingsError
from benchmarks.machine import Machine, current_rss_bytes, describe_machine, produced_by
from device_runtime.errors import DeviceRuntimeError, UnknownIdError, one_line
from device_runtime.files import write_atomically

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the RSS verdict is a trend (slope against calls), no longer the halves' medians
REPORT_KIND = "ranking-kit soak"
DEFAULT_CALLS = 1_000_000
DEFAULT_THREADS = 8
DEFAULT_SWAP_EVERY = 1000
BAD_CALL_EVERY = 97  # one call in 97 is a bad one
USERS = 16  # distinct users ranked, taken from both vocabularies
RSS_SAMPLE_SECONDS = 1.0
RSS_WARMUP_FRACTION = 0.1  # samples taken before this share of the calls was done are left out of the trend
RSS_TREND_MIN_SAMPLES = 10  # fewer samples after the warm-up: the memory is not judged
# Calibrated at the default swap rate (one good reload per 2,000 calls): the tflite-runtime 2.14 signature-read leak
# (fixed) grew 26.3 KiB per 1,000 calls, what tflite-runtime 2.14 itself keeps per reload (~11 KiB) gives ~5.2,
# LiteRT ~1.1. See docs/benchmarks.md (soak).
RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS = 10.0
PROGRESS_SECONDS = 10.0
FAILURE_EXAMPLES = 20
UNKNOWN_USER = "no such user (soak)"
# The swapper's cycle: reload the other model, a corrupt file, the other model, a missing file.
SWAP_CYCLE = ("swap", "corrupt", "swap", "missing")
# Bad calls, in turn: (what, the user id passed, the error it must raise).
BAD_CALLS = (
    ("unknown user", UNKNOWN_USER, UnknownIdError),
    ("empty user id", "", ValueError),
    ("float user id", 4.5, TypeError),
)

RankerFactory = Callable[[Path], Any]


@dataclasses.dataclass(frozen=True)
class SoakSettings:
    """What a soak does, checked once.

    Attributes:
        models: the two models swapped (A first: it serves at the start).
        calls: ranking calls in all (bad calls included).
        threads: threads calling the shared Ranker.
        swap_every: calls between two actions of the swapper.
        backend: the interpreter package ("auto" or a package name).
    """

    models: tuple[Path, Path]
    calls: int = DEFAULT_CALLS
    threads: int = DEFAULT_THREADS
    swap_every: int = DEFAULT_SWAP_EVERY
    backend: str = "auto"

    def __post_init__(self):
        if len(self.models) != 2:
            raise SettingsError(f"--model must be given exactly twice (A and B), got {len(self.models)}")
        for model in self.models:
            check_model_file(model)
        for name, value in (("--calls", self.calls), ("--threads", self.threads), ("--swap-every", self.swap_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict."""
        return {**dataclasses.asdict(self), "models": [str(model) for model in self.models]}


@dataclasses.dataclass(frozen=True)
class RssSample:
    seconds: float
    calls: int
    rss_bytes: int


@dataclasses.dataclass(frozen=True)
class RssTrend:
    """The resident memory's trend after the warm-up.

    Attributes:
        warmup_calls: samples taken before this many calls were done are left out.
        samples: the samples the slope rests on.
        slope_bytes_per_call: the least-squares slope of RSS against calls (None: too few samples to judge).
        calls: the calls of the whole run, over which the slope is projected.
    """

    warmup_calls: int
    samples: int
    slope_bytes_per_call: Optional[float]
    calls: int

    @property
    def kib_per_1000_calls(self) -> Optional[float]:
        slope = self.slope_bytes_per_call
        return None if slope is None else slope * 1000 / 1024

    @property
    def projected_growth_bytes(self) -> Optional[int]:
        """The growth the slope predicts over the whole run's calls."""
        slope = self.slope_bytes_per_call
        return None if slope is None else int(round(slope * self.calls))

    @property
    def flat(self) -> Optional[bool]:
        """True when the slope is within the limit, False above it, None when there are too few samples."""
        rate = self.kib_per_1000_calls
        return None if rate is None else rate <= RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS


def rss_trend(samples: Sequence[RssSample], calls: int) -> RssTrend:
    """The least-squares slope of RSS against calls, over the samples after the warm-up.

    Args:
        samples: the run's RSS samples, in order.
        calls: the calls of the whole run (the warm-up is `RSS_WARMUP_FRACTION` of them).

    Returns:
        The trend; its slope is None with fewer than `RSS_TREND_MIN_SAMPLES` samples after the warm-up, or when
        they were all taken at the same call count.
    """
    warmup_calls = math.ceil(calls * RSS_WARMUP_FRACTION)
    kept = [sample for sample in samples if sample.calls >= warmup_calls]
    slope = None
    if len(kept) >= RSS_TREND_MIN_SAMPLES and len({sample.calls for sample in kept}) > 1:
        slope = statistics.linear_regression(
            [float(sample.calls) for sample in kept], [float(sample.rss_bytes) for sample in kept]
        ).slope
    return RssTrend(warmup_calls=warmup_calls, samples=len(kept), slope_bytes_per_call=slope, calls=calls)


@dataclasses.dataclass(frozen=True)
class SoakReport:
    """A whole soak: what ran, what failed, and the resident memory over time."""

    created_at: str
    command: str
    settings: SoakSettings
    machine: Machine
    seconds: float
    calls: int
    results_by_model: dict[str, int]
    bad_calls: int
    swaps: int
    refused_reloads: int
    failures: int
    failure_examples: tuple[str, ...]
    rss: tuple[RssSample, ...]

    @property
    def rss_trend(self) -> RssTrend:
        return rss_trend(self.rss, self.calls)

    @property
    def passed(self) -> bool:
        """No failure, and the memory not over its limit (a run too short to judge it passes on its checks)."""
        return self.failures == 0 and self.rss_trend.flat is not False

    def verdict(self) -> str:
        """'passed', 'FAILED', or 'passed (memory not judged)' for a run too short to judge the memory."""
        if not self.passed:
            return "FAILED"
        return "passed" if self.rss_trend.flat else "passed (memory not judged)"

    def to_dict(self) -> dict:
        """The JSON document (schema in docs/benchmarks.md)."""
        values = [sample.rss_bytes for sample in self.rss]
        trend = self.rss_trend
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": REPORT_KIND,
            "created_at": self.created_at,
            "command": self.command,
            "machine": self.machine.to_dict(),
            "settings": self.settings.to_dict(),
            "seconds": round(self.seconds, 1),
            "calls": self.calls,
            "calls_per_second": round(self.calls / self.seconds, 1) if self.seconds else None,
            "results_by_model": self.results_by_model,
            "bad_calls": self.bad_calls,
            "swaps": self.swaps,
            "refused_reloads": self.refused_reloads,
            "failures": self.failures,
            "failure_examples": list(self.failure_examples),
            "rss": {
                "first_bytes": values[0] if values else None,
                "last_bytes": values[-1] if values else None,
                "max_bytes": max(values) if values else None,
                "warmup_calls": trend.warmup_calls,
                "trend_samples": trend.samples,
                "slope_kib_per_1000_calls": None if trend.kib_per_1000_calls is None else round(
                    trend.kib_per_1000_calls, 2),
                "projected_growth_bytes": trend.projected_growth_bytes,
                "slope_limit_kib_per_1000_calls": RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS,
                "flat": trend.flat,
                "samples": [[round(s.seconds, 1), s.calls, s.rss_bytes] for s in self.rss],
            },
            "passed": self.passed,
        }

    def to_markdown(self) -> str:
        """The human report: command, machine, the verdict and a few RSS samples."""
        lines = [f"# Soak: {self.settings.models[0].name} <-> {self.settings.models[1].name}", ""]
        lines += produced_by(self.command, self.machine, self.created_at) + [""]
        lines += [
            f"{self.calls:,} calls from {self.settings.threads} threads on one Ranker in {self.seconds:.0f} s "
            f"({self.calls / max(self.seconds, 1e-9):,.0f} calls/s); the swapper acted every "
            f"{self.settings.swap_every:,} calls: {self.swaps} reloads of a good model, {self.refused_reloads} refused "
            f"reloads of a corrupt or missing file; {self.bad_calls:,} bad calls raised their error.",
            "",
            "| check | result |",
            "|---|---|",
            f"| failed calls and checks | {self.failures} |",
            f"| results by model | {', '.join(f'{k} {v:,}' for k, v in self.results_by_model.items())} |",
            f"| RSS trend after the first {RSS_WARMUP_FRACTION:.0%} of calls | {describe_trend(self.rss_trend)} |",
            f"| verdict | {self.verdict()} |",
        ]
        if self.rss:
            step = max(1, len(self.rss) // 10)
            lines += ["", "| seconds | calls | RSS MiB |", "|---:|---:|---:|"]
            for sample in list(self.rss[::step]) + ([self.rss[-1]] if (len(self.rss) - 1) % step else []):
                lines.append(f"| {sample.seconds:.0f} | {sample.calls:,} | {sample.rss_bytes / 2**20:.1f} |")
        if self.failure_examples:
            lines += ["", "Failures (first ones):", ""] + [f"- {example}" for example in self.failure_examples]
        return "\n".join(lines) + "\n"


def describe_trend(trend: RssTrend) -> str:
    """One line: the slope, the growth it projects over the run, the limit, and the samples it rests on."""
    limit = f"limit {RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS:g} KiB per 1,000 calls"
    if trend.kib_per_1000_calls is None:
        return f"n/a: {trend.samples} samples after the warm-up, {RSS_TREND_MIN_SAMPLES} needed ({limit})"
    return (
        f"{trend.kib_per_1000_calls:+.1f} KiB per 1,000 calls, {trend.projected_growth_bytes / 2**20:+.1f} MiB "
        f"over {trend.calls:,} calls ({limit}; {trend.samples} samples): {'flat' if trend.flat else 'GROWING'}"
    )


def hot_swap_ranker(backend: str) -> RankerFactory:
    """The real thing: `device_runtime.Ranker` in strict mode, which must offer `reload`.

    Raises:
        SettingsError: this Ranker has no `reload` (the kit predates issue 15's hot swap).
    """
    from device_runtime import Ranker

    if not callable(getattr(Ranker, "reload", None)):
        raise SettingsError(
            "this device_runtime.Ranker has no reload(path); the soak needs the hot-swap Ranker of issue 15"
        )
    return lambda path: Ranker(path, backend=backend, strict=True)


class _Soak:
    """The shared state of one soak: counters, failures, and what every result must equal."""

    def __init__(self, settings: SoakSettings, factory: RankerFactory, scratch: Path):
        self.settings = settings
        self.paths = tuple(Path(model) for model in settings.models)
        self.corrupt = scratch / "corrupt.tflite"
        content = bytearray(self.paths[0].read_bytes())
        content[len(content) // 2] ^= 0x55
        write_atomically(self.corrupt, bytes(content))
        self.missing = scratch / "missing.tflite"
        self.users, self.titles, self.expected = _references(self.paths, factory)
        self.ranker = factory(self.paths[0])
        self.serving = 0  # the index of the model the swapper last switched to
        self.counter = itertools.count()
        self.done = 0
        self.lock = threading.Lock()
        self.results = [0, 0]
        self.bad_calls = self.swaps = self.refused_reloads = self.failures = 0
        self.actions = 0  # the swapper's actions so far, good or not
        self.examples: list[str] = []
        self.finished = threading.Event()

    def fail(self, text: str) -> None:
        with self.lock:
            self.failures += 1
            if len(self.examples) < FAILURE_EXAMPLES:
                self.examples.append(text)

    def call(self, number: int) -> None:
        """One call of a ranking thread: a good ranking, or (one in BAD_CALL_EVERY) a bad one."""
        user = self.users[number % len(self.users)]
        if number % BAD_CALL_EVERY == BAD_CALL_EVERY - 1:
            what, bad_user, expected = BAD_CALLS[(number // BAD_CALL_EVERY) % len(BAD_CALLS)]
            try:
                self.ranker.rank(bad_user, self.titles, k=TOP_K)
            except expected:
                with self.lock:
                    self.bad_calls += 1
                return
            except Exception as error:  # noqa: BLE001 - any other outcome is a failure to report
                self.fail(f"call {number}: {what} raised {_named(error)}, not {expected.__name__}")
                return
            self.fail(f"call {number}: {what} did not raise {expected.__name__}")
            return
        try:
            result = self.ranker.rank(user, self.titles, k=TOP_K)
        except Exception as error:  # noqa: BLE001
            self.fail(f"call {number}: ranking user {user!r} raised {_named(error)}")
            return
        matches = [index for index in (0, 1) if result == self.expected[index][user]]
        if not matches:
            self.fail(f"call {number}: the ranking of user {user!r} is neither model's")
            return
        with self.lock:
            self.results[matches[0]] += 1

    def worker(self) -> None:
        while True:
            number = next(self.counter)
            if number >= self.settings.calls:
                return
            self.call(number)
            with self.lock:
                self.done += 1
                if self.done == self.settings.calls:
                    self.finished.set()

    def check_serving(self, after: str) -> None:
        """The swapper's own call: the model it believes serves must answer."""
        user = self.users[0]
        try:
            result = self.ranker.rank(user, self.titles, k=TOP_K)
        except Exception as error:  # noqa: BLE001
            self.fail(f"after {after}, ranking raised {_named(error)}")
            return
        if result != self.expected[self.serving][user]:
            self.fail(f"after {after}, the Ranker does not serve {self.paths[self.serving].name}")

    def swapper(self) -> None:
        for action in itertools.cycle(SWAP_CYCLE):
            self.actions += 1
            while not self.finished.is_set() and self.done < self.actions * self.settings.swap_every:
                time.sleep(0.001)
            if self.finished.is_set():
                return
            if action == "swap":
                other = 1 - self.serving
                try:
                    self.ranker.reload(self.paths[other])
                except Exception as error:  # noqa: BLE001
                    self.fail(f"reloading {self.paths[other].name} raised {_named(error)}")
                    continue
                self.serving = other
                self.swaps += 1
                self.check_serving(f"reloading {self.paths[other].name}")
                continue
            path = self.corrupt if action == "corrupt" else self.missing
            try:
                self.ranker.reload(path)
            except DeviceRuntimeError:
                self.refused_reloads += 1
                self.check_serving(f"the refused reload of the {action} file")
                continue
            except Exception as error:  # noqa: BLE001
                self.fail(f"reloading the {action} file raised {type(error).__name__}, not a DeviceRuntimeError")
            else:
                self.fail(f"reloading the {action} file did not raise")


def _named(error: BaseException) -> str:
    return f"{type(error).__name__} ({one_line(error, 120)})"


def _references(paths: Sequence[Path], factory: RankerFactory):
    """Users known to both models, A's titles, and each model's own ranking of them."""
    rankers = [factory(path) for path in paths]
    manifests = [ranker.manifest for ranker in rankers]
    if any(manifest is None or manifest.users is None for manifest in manifests):
        raise SettingsError("both --model files need their vocabularies embedded; pass models from `python -m convert`")
    shared = [user for user in manifests[0].users if user in set(manifests[1].users)]
    if not shared:
        raise SettingsError("the two models share no user; pass two models of the same data set")
    users = tuple(shared[:: max(1, len(shared) // USERS)][:USERS])
    titles = tuple(manifests[0].movies)
    expected = [{user: ranker.rank(user, titles, k=TOP_K) for user in users} for ranker in rankers]
    if all(expected[0][user] == expected[1][user] for user in users):
        raise SettingsError(
            "the two models rank every soak user alike, so a swap could not be seen; pass different models"
        )
    return users, titles, expected


def run_soak(settings: SoakSettings, command: str, factory: Optional[RankerFactory] = None) -> SoakReport:
    """Runs the soak.

    Args:
        settings: the soak's settings.
        command: the command line, for the report.
        factory: makes a Ranker for a path (default: `hot_swap_ranker(settings.backend)`).

    Raises:
        SettingsError: no hot-swap Ranker, or models that cannot serve the soak.
        DeviceRuntimeError: a model does not load.
    """
    factory = factory or hot_swap_ranker(settings.backend)
    created_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        soak = _Soak(settings, factory, Path(scratch))
        info = soak.ranker.info()
        machine = describe_machine({info.backend: info.backend_version})
        samples: list[RssSample] = []
        started = time.monotonic()
        # Daemons: an interrupt ends the process without waiting for them.
        threads = [threading.Thread(target=soak.worker, name=f"soak-{n}", daemon=True) for n in range(settings.threads)]
        threads.append(threading.Thread(target=soak.swapper, name="soak-swapper", daemon=True))
        for thread in threads:
            thread.start()
        last_progress = started
        while not soak.finished.wait(RSS_SAMPLE_SECONDS) and any(thread.is_alive() for thread in threads[:-1]):
            _sample(samples, started, soak)
            if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                last_progress = time.monotonic()
                logger.info(
                    "%d/%d calls, %d swaps, %d refused reloads, %d failures, RSS %.1f MiB",
                    soak.done, settings.calls, soak.swaps, soak.refused_reloads, soak.failures,
                    samples[-1].rss_bytes / 2**20 if samples else 0,
                )
        soak.finished.set()  # also stops the swapper when every worker has ended
        for thread in threads:
            thread.join()
        _sample(samples, started, soak)
        seconds = time.monotonic() - started
    return SoakReport(
        created_at=created_at,
        command=command,
        settings=settings,
        machine=machine,
        seconds=seconds,
        calls=soak.done,
        results_by_model={soak.paths[0].name: soak.results[0], soak.paths[1].name: soak.results[1]},
        bad_calls=soak.bad_calls,
        swaps=soak.swaps,
        refused_reloads=soak.refused_reloads,
        failures=soak.failures,
        failure_examples=tuple(soak.examples),
        rss=tuple(samples),
    )


def _sample(samples: list[RssSample], started: float, soak: _Soak) -> None:
    rss = current_rss_bytes()
    if rss is not None:
        samples.append(RssSample(time.monotonic() - started, soak.done, rss))

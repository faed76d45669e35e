"""Training throughput and memory at scale, on synthetic sharded data.

For each row count, a synthetic sharded data set is generated (cached in the
work folder) and one preset is trained on it for one epoch with 1, 2, ...
local workers, each run a fresh `python -m train --local-workers N` process
tree. Reported: examples per second during `fit` and the peak resident memory
of each worker, which stays flat as the data grows when rows are streamed, and
how it changed from the fewest rows to the most. For the `mf` preset, "one
epoch" is one epoch to choose on validation plus one epoch of the refit, both
counted in examples per second, and the table adds the ratings its per-user
history kept (at most users x N, `train.history`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

import train
from benchmarks.machine import Machine, describe_machine
from device_runtime.errors import one_line
from device_runtime.files import write_atomically
from evaluation.errors import SettingsError, StepError
from evaluation.provenance import produced_by, utc_now
from evaluation.settings import require_preset
from train.synthetic import SyntheticSpec, generate

logger = logging.getLogger(__name__)

DEFAULT_ROWS = (1_000_000, 10_000_000)
DEFAULT_WORKERS = (1, 2)
DEFAULT_PRESET = "tutorial"
DEFAULT_BATCH_SIZE = 32_768
DEFAULT_USERS = 100_000
DEFAULT_ITEMS = 20_000
DEFAULT_TIMEOUT_SECONDS = 3600.0
DEFAULT_WORK_DIR = Path("artifacts/scale")
RESULTS_FILE = "scale.json"
TABLE_FILE = "scale.md"
RESULTS_FORMAT_VERSION = 2

Runner = Callable[..., subprocess.CompletedProcess]


@dataclasses.dataclass(frozen=True)
class ScaleSettings:
    """What to measure and where to write it.

    Attributes:
        out: the folder for scale.json and scale.md (created if missing).
        rows: synthetic row counts (train + test), in table order.
        workers: local worker counts, in table order.
        preset: the training preset (one that trains on sharded data).
        work_dir: where synthetic data is generated and cached, and runs write their exports.
        batch_size: the global batch size.
        users / items: the synthetic data's vocabulary sizes.
        timeout_seconds: seconds before stuck workers are stopped (train's `--worker-timeout`).
        markdown: where the Markdown table goes; None means OUT/scale.md.
    """

    out: Path
    rows: tuple[int, ...] = DEFAULT_ROWS
    workers: tuple[int, ...] = DEFAULT_WORKERS
    preset: str = DEFAULT_PRESET
    work_dir: Path = DEFAULT_WORK_DIR
    batch_size: int = DEFAULT_BATCH_SIZE
    users: int = DEFAULT_USERS
    items: int = DEFAULT_ITEMS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    markdown: Optional[Path] = None

    def __post_init__(self):
        for option, values in (("--rows", self.rows), ("--workers", self.workers)):
            if not values or any(value < 1 for value in values):
                raise SettingsError(f"{option} takes whole numbers of at least 1, comma separated; got "
                                    f"{','.join(map(str, values)) or 'nothing'}")
        for option, value in (("--batch-size", self.batch_size), ("--users", self.users), ("--items", self.items)):
            if value < 1:
                raise SettingsError(f"{option} must be at least 1, got {value}")
        if not self.timeout_seconds > 0:  # also rejects NaN
            raise SettingsError(f"--timeout must be more than 0 seconds, got {self.timeout_seconds}")
        require_preset(self.preset, "--preset")
        for option, path in (("--out", self.out), ("--work-dir", self.work_dir)):
            if path.exists() and not path.is_dir():
                raise SettingsError(f"{option} {path} is a file; give a folder path")
        if self.markdown is not None and (self.markdown.is_dir() or not (
            self.markdown.parent.is_dir() or self.markdown.parent.resolve() == self.out.resolve()
        )):
            raise SettingsError(f"--markdown {self.markdown} must be a file in an existing folder or in --out")

    @property
    def markdown_path(self) -> Path:
        """Where the Markdown table is written."""
        return self.markdown if self.markdown is not None else self.out / TABLE_FILE


@dataclasses.dataclass(frozen=True)
class ScaleRecord:
    """One training run: a row count with a worker count.

    Attributes:
        rows: synthetic rows generated (train + test); train_rows: those in the training split.
        workers / batch_size: the run's local workers and global batch.
        examples_per_second / fit_seconds: during `fit`, from metrics.json.
        peak_rss_mb_per_worker: each worker's peak resident memory, MB.
        test_rmse: on the synthetic test split.
        wall_seconds: the launcher's wall time (start-up and export included).
        history_ratings: the ratings the `mf` preset's per-user history kept; None for other presets.
    """

    rows: int
    train_rows: int
    workers: int
    batch_size: int
    examples_per_second: float
    fit_seconds: float
    peak_rss_mb_per_worker: tuple[float, ...]
    test_rmse: float
    wall_seconds: float
    history_ratings: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ScaleResults:
    """A whole scale benchmark: settings, machine (described before the first run) and records."""

    settings: ScaleSettings
    machine: Machine
    started_at: str
    records: tuple[ScaleRecord, ...]

    def to_dict(self, command: str) -> dict:
        """Returns the JSON document, with the command line that produced it."""
        settings = self.settings
        return {
            "format_version": RESULTS_FORMAT_VERSION,
            "kind": "ranking-kit scale benchmark",
            "command": command,
            "started_at": self.started_at,
            "machine": self.machine.to_dict(),
            "settings": {
                "preset": settings.preset, "epochs": 1, "batch_size": settings.batch_size, "users": settings.users,
                "items": settings.items, "rows": list(settings.rows), "workers": list(settings.workers),
            },
            "records": [dataclasses.asdict(record) for record in self.records],
        }


def record_from_metrics(metrics: dict, rows: int, workers: int, batch_size: int, source: Path) -> ScaleRecord:
    """Reads one run's figures from the metrics.json that `python -m train --local-workers N` wrote.

    Raises:
        StepError: a figure is missing (the file names the key to look for).
    """
    try:
        distribution = metrics["distribution"]
        return ScaleRecord(
            rows=rows,
            train_rows=int(metrics["rows"]["train"]),
            workers=workers,
            batch_size=batch_size,
            examples_per_second=float(metrics["train_examples_per_second"]),
            fit_seconds=float(metrics["fit_seconds"]),
            peak_rss_mb_per_worker=tuple(float(value) for value in distribution["worker_peak_rss_mb"]),
            test_rmse=float(metrics["test_rmse"]),
            wall_seconds=float(distribution["launcher_wall_seconds"]),
            history_ratings=_history_ratings(metrics),
        )
    except KeyError as error:
        raise StepError(f"{source} has no {error.args[0]!r}; "
                        "was it written by `python -m train --local-workers`?") from None
    except (TypeError, ValueError) as error:
        raise StepError(f"{source} holds a malformed figure: {one_line(error)}") from None


def _history_ratings(metrics: dict) -> Optional[int]:
    feedback = (metrics.get("architecture_details") or {}).get("implicit_feedback")
    return None if feedback is None else int(feedback["ratings_kept"])


def training_command(settings: ScaleSettings, data: Path, out: Path, workers: int) -> list[str]:
    """The `python -m train` call of one run."""
    return [
        sys.executable, "-m", "train", "--data", str(data), "--out", str(out), "--preset", settings.preset,
        "--epochs", "1", "--batch-size", str(settings.batch_size), "--local-workers", str(workers),
        "--worker-timeout", str(settings.timeout_seconds), "--quiet",
    ]


def run_scale(settings: ScaleSettings, run: Runner = subprocess.run) -> ScaleResults:
    """Runs every (rows, workers) configuration, generating each data set once.

    Args:
        settings: what to measure.
        run: `subprocess.run` (injectable for tests).

    Raises:
        StepError: a training run failed or wrote no usable metrics.
        train.TrainError: the synthetic data could not be generated.
    """
    started_at = utc_now()
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    machine = describe_machine({})  # before the first run, so the load average is other people's
    records = []
    for rows in settings.rows:
        data = settings.work_dir / f"synthetic-{rows}-{settings.users}-{settings.items}"
        if not data.exists():
            logger.info("generating %s rows into %s", f"{rows:,}", data)
            generate(SyntheticSpec(rows=rows, users=settings.users, items=settings.items), data)
        for workers in settings.workers:
            logger.info("training %s on %s rows with %d worker(s)", settings.preset, f"{rows:,}", workers)
            record = _train_once(settings, data, rows, workers, run)
            peaks = ", ".join(f"{mb:.0f}" for mb in record.peak_rss_mb_per_worker)
            logger.info("%s rows, %d worker(s): %s examples/s, peak RSS per worker %s MB",
                        f"{rows:,}", workers, f"{record.examples_per_second:,.0f}", peaks)
            records.append(record)
    return ScaleResults(settings, machine, started_at, tuple(records))


def _train_once(settings: ScaleSettings, data: Path, rows: int, workers: int, run: Runner) -> ScaleRecord:
    scratch = Path(tempfile.mkdtemp(prefix="scale-", dir=settings.work_dir))
    try:
        out = scratch / "model"
        done = run(training_command(settings, data, out, workers), capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
            raise StepError(f"{settings.preset} on {rows:,} rows with {workers} worker(s) failed: "
                            f"{one_line(lines[-1]) if lines else 'no output'}")
        metrics_path = out / train.METRICS_FILE
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise StepError(f"cannot read {metrics_path}: {one_line(error)}") from None
        return record_from_metrics(metrics, rows, workers, settings.batch_size, metrics_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def format_scale_markdown(results: ScaleResults, command: str) -> str:
    """The results as Markdown: the command and machine, then one row per run, then memory as rows grow."""
    settings = results.settings
    history = any(record.history_ratings is not None for record in results.records)
    lines = ["## Training throughput and memory at scale (synthetic sharded data)", ""]
    lines += produced_by(command, results.machine, results.started_at) + [""]
    lines += [
        "| rows | workers | examples/s (fit) | fit s | peak RSS per worker (MB) | test RMSE |"
        + (" history ratings kept |" if history else ""),
        "|---:|---:|---:|---:|---|---:|" + ("---:|" if history else ""),
    ]
    for record in results.records:
        rss = ", ".join(f"{value:.0f}" for value in record.peak_rss_mb_per_worker)
        line = (f"| {record.rows:,} | {record.workers} | {record.examples_per_second:,.0f} "
                f"| {record.fit_seconds:.1f} | {rss} | {record.test_rmse:.3f} |")
        if history:
            line += f" {record.history_ratings:,} |" if record.history_ratings is not None else " |"
        lines.append(line)
    lines += ["", *memory_growth_lines(results.records)]
    lines += [
        f"Synthetic data with {settings.users:,} users and {settings.items:,} items; `{settings.preset}` preset, "
        f"1 epoch, global batch {settings.batch_size:,}; every run a fresh `python -m train --local-workers N` "
        "process tree.",
    ]
    return "\n".join(lines) + "\n"


def memory_growth_lines(records) -> list[str]:
    """One sentence per worker count run on several row counts: the largest worker's peak RSS, fewest to most rows."""
    lines = []
    for workers in sorted({record.workers for record in records}):
        runs = sorted((record for record in records if record.workers == workers), key=lambda record: record.rows)
        if len(runs) < 2 or runs[0].rows == runs[-1].rows:
            continue
        first, last = max(runs[0].peak_rss_mb_per_worker), max(runs[-1].peak_rss_mb_per_worker)
        lines.append(
            f"Memory as rows grow, {workers} worker(s): {runs[-1].rows / runs[0].rows:g} times the rows "
            f"({runs[0].rows:,} to {runs[-1].rows:,}), peak RSS of the largest worker {first:.0f} to {last:.0f} MB "
            f"({(last - first) / first:+.0%})."
        )
    return lines + ([""] if lines else [])


def write_scale_outputs(results: ScaleResults, command: str) -> str:
    """Writes OUT/scale.json and the Markdown table, each atomically; returns the Markdown."""
    results.settings.out.mkdir(parents=True, exist_ok=True)
    write_atomically(results.settings.out / RESULTS_FILE, json.dumps(results.to_dict(command), indent=2) + "\n")
    markdown = format_scale_markdown(results, command)
    write_atomically(results.settings.markdown_path, markdown)
    return markdown

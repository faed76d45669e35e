"""The benchmark's results and their four forms: table, JSON, CSV and plot.

The JSON schema (version `SCHEMA_VERSION`) is documented field by field in
docs/benchmarks.md; a test checks that every field written is documented
there with the same type. Changing a field's meaning or removing one means a
new schema version.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Optional

from benchmarks.config import LatencySettings, Method
from benchmarks.errors import OutputError
from benchmarks.machine import Machine
from benchmarks.stats import MIN_RUNS_FOR_STABLE_P99
from device_runtime.files import write_atomically

SCHEMA_VERSION = 1
REPORT_KIND = "ranking-kit latency benchmark"
STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Record:
    """The figures of one configuration (model x backend x threads x method x candidates).

    Times are microseconds, sizes bytes; figures that do not apply or could not
    be measured are None (see docs/benchmarks.md for every field).
    """

    model: str
    model_file: str
    model_size_bytes: Optional[int]
    quantization: Optional[str]
    parity_rmse: Optional[float]
    backend: str
    backend_version: Optional[str]
    delegate: Optional[str]
    threads: Optional[int]
    method: str
    candidates: int
    candidates_spec: str
    status: str
    error: Optional[str] = None
    init_us: Optional[float] = None
    first_inference_us: Optional[float] = None
    warmup_runs: int = 0
    warmup_mean_us: Optional[float] = None
    runs: int = 0
    min_us: Optional[float] = None
    median_us: Optional[float] = None
    p90_us: Optional[float] = None
    p99_us: Optional[float] = None
    mean_us: Optional[float] = None
    std_us: Optional[float] = None
    p99_stable: Optional[bool] = None
    candidates_per_second: Optional[float] = None
    slowdown_vs_rank: Optional[float] = None
    max_abs_diff_vs_rank: Optional[float] = None
    rss_delta_bytes: Optional[int] = None
    peak_rss_bytes: Optional[int] = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def series(self) -> tuple:
        """What one line of the plot (and one block of the table) shares."""
        return (self.model_file, self.backend, self.threads, self.method)


RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(Record))


@dataclasses.dataclass(frozen=True)
class LatencyReport:
    """A whole benchmark run: settings, machine, measuring phase and records."""

    created_at: str
    settings: LatencySettings
    machine: Machine
    rounds: int
    measuring_seconds: float
    records: tuple[Record, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Returns the JSON document (schema in docs/benchmarks.md)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": REPORT_KIND,
            "created_at": self.created_at,
            "machine": self.machine.to_dict(),
            "settings": self.settings.to_dict(),
            "measurement": {
                "order": "interleaved",
                "rounds": self.rounds,
                "block": self.settings.block,
                "rewarm": not self.settings.cold,
                "seconds": round(self.measuring_seconds, 3),
                "gc_disabled": True,
                "clock": "time.perf_counter_ns",
            },
            "warnings": list(self.warnings),
            "records": [dataclasses.asdict(record) for record in self.records],
        }


# --- files ---------------------------------------------------------------------


def write_report_file(path: Path, content: bytes) -> None:
    """Writes a report file atomically (device_runtime.files).

    Raises:
        OutputError: the folder is missing or not writable.
    """
    try:
        write_atomically(path, content)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


def check_output_path(path: Path, option: str) -> None:
    """Fails before any measuring when a report could not be written later.

    Raises:
        OutputError: the parent folder is missing or `path` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise OutputError(f"the folder of {option} {path} does not exist; create it first")


def write_json(report: LatencyReport, path: Path) -> None:
    """Writes the JSON document atomically."""
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
    write_report_file(path, (text + "\n").encode("utf-8"))


def write_report_files(report, out: Path, markdown: Optional[Path] = None) -> None:
    """Writes a report's JSON (`report.to_dict()`) and, if asked, its Markdown (`report.to_markdown()`), atomically."""
    write_report_file(out, (json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    if markdown is not None:
        write_report_file(markdown, report.to_markdown().encode("utf-8"))


def write_csv(report: LatencyReport, path: Path) -> None:
    """Writes one row per record (the record fields plus the CPU, arch and emulated flag)."""
    machine_columns = {
        "cpu_model": report.machine.cpu_model,
        "architecture": report.machine.architecture,
        "emulated": report.machine.emulated,
    }
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RECORD_FIELDS) + list(machine_columns), lineterminator="\n")
    writer.writeheader()
    for record in report.records:
        row = {key: "" if value is None else value for key, value in dataclasses.asdict(record).items()}
        row.update({key: "" if value is None else value for key, value in machine_columns.items()})
        writer.writerow(row)
    write_report_file(path, buffer.getvalue().encode("utf-8"))


def matplotlib_available() -> bool:
    """True when matplotlib can be imported (the optional `.[bench]` extra)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_plot(report: LatencyReport, path: Path) -> None:
    """Plots median latency against candidate count, log-log, one line per series.

    Raises:
        OutputError: matplotlib is missing, or nothing was measured.
    """
    if not matplotlib_available():
        raise OutputError('--plot needs matplotlib; install it with pip install ".[bench]"')
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    series: dict[tuple, list[Record]] = {}
    for record in report.records:
        if record.ok and record.median_us:
            series.setdefault(record.series(), []).append(record)
    if not series:
        raise OutputError("nothing was measured, so there is nothing to plot")
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=120)
    for (model_file, backend, threads, method), records in series.items():
        records = sorted(records, key=lambda r: r.candidates)
        style = "--" if method in (Method.LOOP.value, Method.SIGNATURE_LOOP.value) else "-"
        label = f"{model_file} · {backend} · {threads if threads else 'default'} thr · {method}"
        axes.plot([r.candidates for r in records], [r.median_us for r in records], style, marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    counts = sorted({r.candidates for records in series.values() for r in records})
    axes.set_xticks(counts, [str(c) for c in counts])
    axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes.set_xlabel("candidates per call")
    axes.set_ylabel("median latency (µs)")
    machine = report.machine
    title = f"{machine.cpu_model or 'unknown CPU'} ({machine.architecture})"
    if machine.emulated:
        title += " — EMULATED, not real latency"
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_report_file(path, buffer.getvalue())


# --- table ---------------------------------------------------------------------

_COLUMNS = (
    # header, width, record -> text
    ("backend", 14, lambda r: r.backend),
    ("thr", 3, lambda r: "-" if r.threads is None else str(r.threads)),
    ("method", 17, lambda r: r.method),
    ("cands", 5, lambda r: str(r.candidates)),
    ("init ms", 7, lambda r: _number(r.init_us, 1e-3, 1)),
    ("first", 8, lambda r: _number(r.first_inference_us)),
    ("warm-up", 8, lambda r: _number(r.warmup_mean_us)),
    ("min", 8, lambda r: _number(r.min_us)),
    ("median", 8, lambda r: _number(r.median_us)),
    ("p90", 8, lambda r: _number(r.p90_us)),
    ("p99", 9, lambda r: _number(r.p99_us) + ("" if r.p99_stable in (None, True) else "*")),
    ("mean", 8, lambda r: _number(r.mean_us)),
    ("std", 7, lambda r: _number(r.std_us)),
    ("cand/s", 9, lambda r: _rate(r.candidates_per_second)),
    ("x rank", 6, lambda r: "" if r.slowdown_vs_rank is None else f"{r.slowdown_vs_rank:.1f}x"),
    ("RSS MB", 6, lambda r: _number(r.peak_rss_bytes, 1 / 2**20, 0)),
)


def _number(value: Optional[float], scale: float = 1.0, digits: Optional[int] = None) -> str:
    if value is None:
        return ""
    value *= scale
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1
    return f"{value:,.{digits}f}"


def _rate(value: Optional[float]) -> str:
    if value is None:
        return ""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.0f}"


def _size(size: Optional[int]) -> str:
    return "size ?" if size is None else f"{size / 1024:,.0f} KB"


def _row(cells: list[str]) -> str:
    """One table line: the first three columns (backend, threads, method) left-aligned, numbers right."""
    return "  ".join(
        f"{cell:<{width}}" if index < 3 else f"{cell:>{width}}"
        for index, ((_, width, _), cell) in enumerate(zip(_COLUMNS, cells))
    )


def format_table(report: LatencyReport) -> str:
    """The human summary: machine line, one block per model, notes at the end."""
    machine = report.machine
    settings = report.settings
    lines = [
        f"Machine: {machine.cpu_model or 'unknown CPU'} · {machine.architecture} · "
        f"{machine.cores_usable or '?'} of {machine.cores or '?'} cores usable · governor {machine.governor or 'n/a'} · "
        f"load {', '.join(str(x) for x in machine.load_average) if machine.load_average else 'n/a'}",
        f"Software: {machine.python} · numpy {machine.numpy} · "
        + " · ".join(f"{name} {version}" for name, version in machine.backends.items()),
        f"Steady state: {report.rounds} interleaved rounds of {settings.block} timed calls per configuration"
        f"{'' if settings.cold else ' (each after one untimed re-warm call)'} in {report.measuring_seconds:.1f} s; "
        f"first inference and {settings.warmup} warm-up runs not counted; times in µs unless marked",
    ]
    if machine.emulated:
        lines.append(f"EMULATED: {machine.emulation_evidence}. These figures are not the latency of the real CPU.")
    header = _row([name for name, _, _ in _COLUMNS])
    models: dict[str, list[Record]] = {}
    for record in report.records:
        models.setdefault(record.model, []).append(record)
    for model, records in models.items():
        first = records[0]
        parity = "" if first.parity_rmse is None else f" · parity RMSE {first.parity_rmse:.4f}"
        quantization = "" if first.quantization is None else f" · {first.quantization}"
        lines += ["", f"{model} · {_size(first.model_size_bytes)}{quantization}{parity}", header]
        for record in records:
            if not record.ok:
                lines.append(
                    f"{record.backend:<14}  {record.threads or '-':<3}  {record.method:<17}  {record.candidates:>5}  "
                    "failed (reason in the notes below)"
                )
                continue
            lines.append(_row([fn(record) for _, _, fn in _COLUMNS]))
    unstable = [r for r in report.records if r.ok and r.p99_stable is False]
    if unstable:
        lines.append(
            f"\n* p99 from fewer than {MIN_RUNS_FOR_STABLE_P99} runs is not stable; "
            f"raise --runs to {MIN_RUNS_FOR_STABLE_P99} or more for a trustworthy tail."
        )
    lines.append(
        "x rank: this row's median divided by rank's (a list of titles) on the same model, backend, threads and "
        "candidates (rank_prepared and rank_catalog below 1x are the fast path's speed-up; invoke and invoke_top_k "
        "below their Ranker rows are the Ranker's own overhead; the loops above 1x are what one call per candidate "
        "costs; personalize_rank ranks for a history, so it shows what folding it in adds). "
        "RSS MB: process peak after loading that configuration."
    )
    for warning in report.warnings:
        lines.append(f"note: {warning}")
    return "\n".join(lines)


def finite_or_none(value: Optional[float]) -> Optional[float]:
    """JSON has no NaN/inf: such figures become None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


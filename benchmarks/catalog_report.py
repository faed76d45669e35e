"""The catalog benchmark's results and their forms: table, JSON, Markdown, CSV and plot.

The JSON schema is documented in docs/benchmarks.md ("Catalog size"); a test
checks that every field written is documented there with its type.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from typing import Any, Optional

from benchmarks.catalog_timing import EXACT_VARIANTS
from benchmarks.errors import OutputError
from benchmarks.machine import Machine, produced_by
from benchmarks.report import matplotlib_available, write_report_file

SCHEMA_VERSION = 1
REPORT_KIND = "ranking-kit catalog benchmark"
# The goal: float32 top-k over the whole catalog within this factor of numpy's floor.
GOAL_VARIANT = "none"
GOAL_MAX_RATIO = 2.0
MIB = 2**20


@dataclasses.dataclass(frozen=True)
class CatalogRecord:
    """One model (catalog size x quantization variant): its size, load, memory and latency.

    Times are milliseconds (load) or microseconds (latency), memory MiB; None
    where a figure does not apply or could not be measured (see docs/benchmarks.md).
    """

    items: int
    variant: str
    status: str
    error: Optional[str] = None
    model_file: Optional[str] = None
    model_bytes: Optional[int] = None
    backend: Optional[str] = None
    backend_version: Optional[str] = None
    delegate: Optional[str] = None
    threads: Optional[int] = None
    load_ms: Optional[float] = None
    first_rank_ms: Optional[float] = None
    rss_mb: Optional[float] = None
    rss_baseline_mb: Optional[float] = None
    rank_us: Optional[float] = None
    rank_min_us: Optional[float] = None
    rank_p90_us: Optional[float] = None
    floor_us: Optional[float] = None
    floor_min_us: Optional[float] = None
    floor_p90_us: Optional[float] = None
    ratio: Optional[float] = None
    runs: Optional[int] = None
    top_k_identical: Optional[bool] = None
    top_k_overlap: Optional[float] = None
    max_abs_score_diff: Optional[float] = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, items: int, variant: str, entry: dict, error: str) -> "CatalogRecord":
        """A model that was not built, or could not be timed."""
        return cls(items, variant, "failed", error=error, model_file=entry.get("file"), model_bytes=entry.get("bytes"))

    @classmethod
    def from_result(cls, items: int, variant: str, entry: dict, result: dict) -> "CatalogRecord":
        """From the folder's index entry and a timing child's result (`benchmarks.catalog_timing.run_job`)."""
        if result.get("status") != "ok":
            return cls.failed(items, variant, entry, result.get("error") or "failed")
        fields = {field.name for field in dataclasses.fields(cls)}
        measured = {key: value for key, value in result.items() if key in fields and key != "status"}
        rank, floor = measured.get("rank_us"), measured.get("floor_us")
        ratio = round(rank / floor, 3) if rank and floor else None
        return cls(
            items, variant, "ok", model_file=entry.get("file"), model_bytes=entry.get("bytes"), ratio=ratio, **measured
        )


RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(CatalogRecord))


@dataclasses.dataclass(frozen=True)
class CatalogReport:
    """A whole catalog run: how the models were built, where it ran, and one record per model."""

    created_at: str
    command: str
    machine: Machine
    settings: Any  # benchmarks.catalog.CatalogSettings
    build: dict
    folder: str
    user: str
    k: int
    seconds: float
    records: tuple[CatalogRecord, ...]
    warnings: tuple[str, ...] = ()

    def goal(self) -> dict:
        """The issue's goal: float32 top-k within GOAL_MAX_RATIO of the floor at every size timed."""
        ratios = {str(r.items): r.ratio for r in self.records if r.variant == GOAL_VARIANT}
        measured = [ratio for ratio in ratios.values() if ratio is not None]
        met = None if not measured or len(measured) < len(ratios) else all(r <= GOAL_MAX_RATIO for r in measured)
        return {"variant": GOAL_VARIANT, "max_ratio": GOAL_MAX_RATIO, "ratios": ratios, "met": met}

    @property
    def check_failures(self) -> list[CatalogRecord]:
        """Timed models that hold the tables exactly but did not give numpy's top k."""
        return [r for r in self.records if r.ok and r.variant in EXACT_VARIANTS and r.top_k_identical is False]

    def to_dict(self) -> dict:
        """The JSON document (schema in docs/benchmarks.md)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": REPORT_KIND,
            "created_at": self.created_at,
            "command": self.command,
            "machine": self.machine.to_dict(),
            "settings": self.settings.to_dict(),
            "models": {"folder": self.folder, **self.build},
            "ranking": {"user": self.user, "k": self.k},
            "measurement": {
                "process": "one fresh Python process per model",
                "order": "interleaved: rank, floor",
                "block": self.settings.block,
                "clock": "time.perf_counter_ns",
                "gc_disabled": True,
                "blas_threads": self.settings.threads,
                "seconds": round(self.seconds, 1),
            },
            "goal": self.goal(),
            "warnings": list(self.warnings),
            "records": [dataclasses.asdict(record) for record in self.records],
        }

    def to_markdown(self) -> str:
        """The human report: command, machine, how the models were made, the table, the goal."""
        lines = [f"# Ranking the whole catalog: {_sizes(self.records)} movies", ""]
        lines += produced_by(self.command, self.machine, self.created_at) + [""]
        build = self.build
        lines += [
            f"Models: synthetic factor tables ({build.get('users')} users, {build.get('dimension')}-d, seed "
            f"{build.get('seed')}, entries on a 1/256 grid) through `train.serving.FactorServing` and the converter's "
            f"functions, TensorFlow {build.get('tensorflow_version')}, built {build.get('created_at')} by "
            f"`{build.get('command')}`. Each model "
            f"timed in a fresh process: `Ranker(path)`, then `rank('{self.user}', k={self.k})` over the whole catalog "
            f"against numpy's floor (matvec, argpartition, sort of the top {self.k}) on the same float32 tables, in "
            f"interleaved turns of {self.settings.block} calls, {self.settings.threads} interpreter and BLAS "
            "thread(s). Peak RSS: the process's high-water mark after loading and the first ranking.",
            "",
            "| " + " | ".join(_headers(self.k)) + " |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for record in self.records:
            if record.ok:
                lines.append("| " + " | ".join(_cells(record)) + " |")
            else:
                cells = _cells(record)[:3] + [f"failed: {_cell(record.error)}"] + [""] * 5
                lines.append("| " + " | ".join(cells) + " |")
        lines += ["", goal_sentence(self) + "."]
        lines += [f"- note: {warning}" for warning in self.warnings]
        return "\n".join(lines) + "\n"


# Column widths of the command line's table (the Markdown table's columns).
_WIDTHS = (9, 17, 8, 9, 8, 10, 10, 8, 0)


def format_table(report: CatalogReport) -> str:
    """The command line's summary: the Markdown table's figures, aligned."""
    machine = report.machine
    lines = [f"Machine: {machine.cpu_model or 'unknown CPU'} · {machine.architecture} · load "
             + ", ".join(str(x) for x in machine.load_average or ())]
    headers = ("movies", "variant", "MB", "load ms", "RSS MB", "rank µs", "floor µs", "÷ floor", f"top-{report.k}")
    lines.append(_aligned(headers))
    for record in report.records:
        cells = _cells(record)
        lines.append(_aligned(cells) if record.ok else f"{_aligned(cells[:2])} failed: {record.error}")
    lines.append(goal_sentence(report))
    lines += [f"note: {warning}" for warning in report.warnings]
    return "\n".join(lines)


def goal_sentence(report: CatalogReport) -> str:
    """Issue 12's goal and whether this run met it."""
    goal = report.goal()
    verdict = {True: "met", False: "NOT met", None: "not measured at every size"}[goal["met"]]
    ratios = ", ".join(f"{int(items):,}: {ratio}" for items, ratio in goal["ratios"].items())
    return (f"Goal (float32 top-{report.k} at most {GOAL_MAX_RATIO:g}x numpy's floor at every size): "
            f"{verdict} ({ratios})")


def _headers(k: int) -> tuple[str, ...]:
    return ("movies", "variant", ".tflite MB", "load ms", "peak RSS MB", "rank µs", "numpy floor µs", "rank ÷ floor",
            f"top-{k} = numpy")


def _cells(r: CatalogRecord) -> list[str]:
    """One model's figures as text, in `_headers` order (the first three only for a failed record)."""
    cells = [f"{r.items:,}", r.variant, _mb(r.model_bytes)]
    if not r.ok:
        return cells
    return cells + [_number(r.load_ms), f"{r.rss_mb:,.0f}", _number(r.rank_us), _number(r.floor_us), f"{r.ratio:.2f}",
                    _top(r)]


def _aligned(cells) -> str:
    return "".join(
        f"{cell:<{width}}  " if index == 1 else (f"{cell:>{width}}  " if width else str(cell))
        for index, (cell, width) in enumerate(zip(cells, _WIDTHS))
    ).rstrip()


def write_csv(report: CatalogReport, path) -> None:
    """One row per record, plus the CPU, architecture and emulated flag."""
    machine = {"cpu_model": report.machine.cpu_model, "architecture": report.machine.architecture,
               "emulated": report.machine.emulated}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RECORD_FIELDS) + list(machine), lineterminator="\n")
    writer.writeheader()
    for record in report.records:
        row = {**dataclasses.asdict(record), **machine}
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    write_report_file(path, buffer.getvalue().encode("utf-8"))


def write_plot(report: CatalogReport, path) -> None:
    """Latency (rank and floor) and memory (file and peak RSS) against catalog size, log-log.

    Raises:
        OutputError: matplotlib is missing, or nothing was measured.
    """
    if not matplotlib_available():
        raise OutputError('--plot needs matplotlib; install it with pip install ".[bench]"')
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    measured = [r for r in report.records if r.ok]
    if not measured:
        raise OutputError("nothing was measured, so there is nothing to plot")
    figure, (latency, memory) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120)
    for variant in dict.fromkeys(r.variant for r in measured):
        rows = sorted((r for r in measured if r.variant == variant), key=lambda r: r.items)
        sizes = [r.items for r in rows]
        line = latency.plot(sizes, [r.rank_us for r in rows], marker="o", label=f"rank · {variant}")[0]
        memory.plot(sizes, [r.rss_mb for r in rows], marker="o", color=line.get_color(), label=f"peak RSS · {variant}")
        memory.plot(sizes, [r.model_bytes / MIB for r in rows], "--", marker="s", color=line.get_color(),
                    label=f".tflite · {variant}")
    floor = sorted((r for r in measured if r.variant == GOAL_VARIANT) or measured, key=lambda r: r.items)
    latency.plot([r.items for r in floor], [r.floor_us for r in floor], "k--", marker="x", label="numpy floor")
    latency.set_ylabel(f"median top-{report.k} latency (µs)")
    memory.set_ylabel("MiB")
    sizes = sorted({r.items for r in measured})
    for axes in (latency, memory):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(sizes, [f"{size:,}" for size in sizes])
        axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axes.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_axis_number))
        axes.set_xlabel("movies in the catalog")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    machine = report.machine
    title = f"{machine.cpu_model or 'unknown CPU'} ({machine.architecture}), {report.settings.threads} thread(s)"
    if machine.emulated:
        title += " — EMULATED, not real latency"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_report_file(path, buffer.getvalue())


def _axis_number(value: float, _position=None) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _sizes(records) -> str:
    sizes = sorted({r.items for r in records})
    return " to ".join(f"{size:,}" for size in (sizes[0], sizes[-1])) if len(sizes) > 1 else f"{sizes[0]:,}"


def _number(value: float) -> str:
    """Whole units from 100 up, one decimal below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _mb(size: Optional[int]) -> str:
    return "" if size is None else f"{size / MIB:,.1f}"


def _top(record: CatalogRecord) -> str:
    if record.top_k_identical:
        return "yes"
    overlap = "" if record.top_k_overlap is None or math.isnan(record.top_k_overlap) else f"{record.top_k_overlap:.0%}"
    return f"no ({overlap} shared)"


def _cell(text: Optional[str]) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")

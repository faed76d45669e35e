"""The preset evaluation as Markdown: the command and machine, the main table, the anchors, per seed, notes."""

from __future__ import annotations

from typing import Optional

from device_runtime.errors import one_line
from evaluation.aggregate import Aggregate, PresetSummary, summarize
from evaluation.provenance import busy, produced_by
from evaluation.records import ANCHORS, Evaluation
from evaluation.settings import (
    LATENCY_BACKEND,
    LATENCY_RUNS,
    LATENCY_THREADS,
    LATENCY_USER,
    LATENCY_WARMUP,
    VARIANT_LABELS,
)

# Size spreads below this share of the mean are not shown (a few bytes of manifest text).
VISIBLE_SIZE_SPREAD = 0.001
# The longest failure reason shown in the notes (results.json keeps all of it).
MAX_REASON_CHARS = 300
KIB = 1024
MIB = 1024 * 1024


def format_markdown(evaluation: Evaluation, command: str) -> str:
    """The evaluation as Markdown.

    Args:
        evaluation: what was measured.
        command: the command line that produced it, shown above the table.
    """
    settings = evaluation.settings
    summaries = [summarize(p, evaluation.runs_of(p), settings.variants) for p in settings.presets]
    candidates = sorted({v.latency.candidates for r in evaluation.runs for v in r.variants if v.latency})
    lines = ["## Presets on MovieLens 100K (the tutorial's seed-42 80,000/20,000 split)", ""]
    lines += produced_by(command, evaluation.machine, evaluation.started_at, _software(evaluation)) + [""]
    lines.append(f"Mean ± sample standard deviation over training seeds {', '.join(map(str, settings.seeds))} "
                 f"(n = {len(settings.seeds)}).")
    if settings.max_train_rows is not None:
        lines.append(f"Trained on the first {settings.max_train_rows:,} training rows only: a quick check, "
                     "not the presets' figures.")
    footnotes: list[str] = []
    lines += ["", *_main_table(summaries, "/".join(f"{c:,}" for c in candidates) or "all", footnotes)]
    lines += ["", "Published anchors, all MovieLens 100K (other protocols are not directly comparable):", ""]
    lines += ["| Anchor | Test RMSE | Protocol |", "|---|---|---|"]
    lines += [f"| {a.name} | {'~' if a.approximate else ''}{a.rmse:g} | {a.protocol} |" for a in ANCHORS]
    lines += ["", "Per seed (test RMSE; latency in ms, all movies):", "", *_per_seed_table(evaluation)]
    lines += ["", "Notes:", ""]
    lines += [f"- {note}" for note in _notes(evaluation)]
    lines += [f"- [{number}] {text}" for number, text in enumerate(footnotes, start=1)]
    return "\n".join(lines) + "\n"


def _main_table(summaries: list[PresetSummary], candidates: str, footnotes: list[str]) -> list[str]:
    lines = [
        f"| Preset | Model | Test RMSE | NDCG@10 | Size | Rank all {candidates} movies (ms) | Training time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for summary in summaries:
        seeds = len(summary.seeds)
        lines.append(
            f"| {summary.preset} | Keras SavedModel | {mean_std(summary.test_rmse, 4)} "
            f"| {mean_std(summary.test_ndcg_at_10, 4)} | {size_cell(summary.saved_model_bytes)} (folder) | — "
            f"| fit {mean_std(summary.fit_seconds, 1)}; whole run {mean_std(summary.train_wall_seconds, 1)} |"
        )
        for variant in summary.variants:
            rmse = mean_std(variant.test_rmse, 4) if variant.accepted else "failed"
            if variant.failed:
                rejected = ", ".join(f"{value:.4f}" for value in variant.rejected_test_rmse)
                footnotes.append(
                    f"{summary.preset} {variant.label}: failed on {variant.failed} of {seeds} seeds: "
                    f"{one_line(variant.failures[0], MAX_REASON_CHARS)}"
                    + (f"; the rejected file's test RMSE: {rejected}" if rejected else "")
                )
                rmse += f" [{len(footnotes)}]" + (f" ({variant.accepted}/{seeds} ok)" if variant.accepted else "")
            latency = mean_std(_scaled(variant.latency_median_us, 1e-3), 3)
            if variant.latency_errors:
                footnotes.append(f"{summary.preset} {variant.label} latency: "
                                 f"{one_line(variant.latency_errors[0], MAX_REASON_CHARS)}")
                latency += f" [{len(footnotes)}]"
            lines.append(f"| {summary.preset} | .tflite {variant.label} | {rmse} | — "
                         f"| {size_cell(variant.size_bytes)} | {latency} | — |")
    return lines


def _per_seed_table(evaluation: Evaluation) -> list[str]:
    labels = [VARIANT_LABELS[q] for q in evaluation.settings.variants]
    header = ["Preset", "Seed", "Keras RMSE", "NDCG@10", *(f"{label} RMSE" for label in labels),
              *(f"{label} ms" for label in labels), "fit s", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in evaluation.runs:
        variants = [run.variant(q) for q in evaluation.settings.variants]
        cells = [run.preset, str(run.seed), f"{run.test_rmse:.4f}", _maybe(run.test_ndcg_at_10, "{:.4f}")]
        cells += [f"{v.rmse_tflite:.4f}" if v.accepted else "failed" for v in variants]
        cells += [_maybe(v.latency.median_us / 1000 if v.latency else None, "{:.3f}") for v in variants]
        cells += [f"{run.fit_seconds:.1f}", f"{run.train_wall_seconds:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _notes(evaluation: Evaluation) -> list[str]:
    latencies = [v.latency for r in evaluation.runs for v in r.variants if v.latency]
    notes = [
        "Test RMSE: the Keras row is the SavedModel as trained (metrics.json); the .tflite rows are the "
        "converted files on all 20,000 test pairs (the converter's parity report). NDCG@10 is over each test "
        "user's rated movies, scored by the Keras model.",
        "Size: the .tflite file with its embedded manifest (vocabularies included); KiB = 1,024 bytes.",
        "Training time: `fit` is the model fitting, `whole run` the whole `train_and_export` call (data, "
        "fitting, evaluation, export; the first run in the process also imports TensorFlow).",
        f"Latency: `python -m benchmarks latency --candidates all --threads {LATENCY_THREADS} --runs {LATENCY_RUNS} "
        f"--warmup {LATENCY_WARMUP} --user {LATENCY_USER} --backend {LATENCY_BACKEND} --methods rank "
        "--no-saved-model`, all variants of a seed in one interleaved run: median of the timed "
        f"`Ranker.rank(user {LATENCY_USER}, every movie, k=10)` calls per seed, then mean ± std of those medians "
        "over the seeds.",
    ]
    if latencies:
        counts = "/".join(f"{c:,}" for c in sorted({latency.candidates for latency in latencies}))
        no_delegate = sorted({f"{r.preset} {VARIANT_LABELS[q]}" for r in evaluation.runs
                              for q in evaluation.settings.variants
                              if r.variant(q).latency and r.variant(q).latency.delegate == "none"})
        notes.append(
            f"All movies: every title in the model's vocabulary ({counts}); titles are the model's movie ids, and "
            "MovieLens 100K's 1,682 movie ids carry 1,664 distinct titles."
        )
        backends = ", ".join(sorted({f"{latency.backend} {latency.backend_version}" for latency in latencies}))
        notes.append(
            f"Latency backend: {backends}, {LATENCY_THREADS} thread, default delegates (XNNPACK)"
            + (f" except {', '.join(no_delegate)}, which ran without them (XNNPACK could not prepare it)"
               if no_delegate else "") + "."
        )
    loads = [latency.load_average for latency in latencies if latency.load_average is not None]
    if loads and busy(max(loads), evaluation.machine):
        spread = f"{min(loads):.1f}" + ("" if min(loads) == max(loads) else f" to {max(loads):.1f}")
        notes.append(
            f"The machine was shared: 1-minute load average (this evaluation included) {spread} just before the "
            "latency runs, so latencies and training times are slower and noisier than on a quiet machine."
        )
    notes.append(f"Whole evaluation: {evaluation.wall_seconds / 60:.1f} min.")
    return notes


def _software(evaluation: Evaluation) -> dict:
    """The training stack's versions, as the first run's metrics.json recorded them."""
    return dict(evaluation.runs[0].versions) if evaluation.runs else {}


def mean_std(aggregate: Aggregate, digits: int) -> str:
    """An aggregate as "mean ± std", as "mean (n=1)" for one value, and as "—" for none."""
    if aggregate.mean is None:
        return "—"
    if aggregate.std is None:
        return f"{aggregate.mean:.{digits}f} (n={len(aggregate.values)})"
    return f"{aggregate.mean:.{digits}f} ± {aggregate.std:.{digits}f}"


def size_cell(aggregate: Aggregate) -> str:
    """A size in KiB or MiB; the spread over seeds only when it is visible (manifests differ by a few bytes)."""
    if aggregate.mean is None:
        return "—"
    text = size_text(aggregate.mean)
    if aggregate.std and aggregate.std >= VISIBLE_SIZE_SPREAD * aggregate.mean:
        return f"{text} ± {size_text(aggregate.std)}"
    return text


def size_text(size: float) -> str:
    """Bytes as KiB, or MiB from one MiB up."""
    return f"{size / MIB:.2f} MiB" if size >= MIB else f"{size / KIB:.1f} KiB"


def _scaled(aggregate: Aggregate, factor: float) -> Aggregate:
    return Aggregate(
        tuple(value * factor for value in aggregate.values),
        None if aggregate.mean is None else aggregate.mean * factor,
        None if aggregate.std is None else aggregate.std * factor,
    )


def _maybe(value: Optional[float], pattern: str) -> str:
    return "—" if value is None else pattern.format(value)

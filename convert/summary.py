"""Human-readable views of conversion reports: the CLI summary and the README tables.

`python -m convert --summary-markdown A.parity.json [B.parity.json ...]` prints
`markdown_tables` of the reports that `python -m convert` wrote, so the
README's figures come from the tool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

KB = 1024
# What `markdown_tables` reads from each report's "parity" figures, and its other fields.
PARITY_FIGURES = (
    "pairs", "max_abs_diff", "mean_abs_diff", "rmse_saved_model", "rmse_tflite", "rmse_diff",
    "ranking_users", "ranking_movies", "top10_overlap", "top10_overlap_min", "kendall_tau", "kendall_tau_min",
)
REPORT_FIELDS = {"quantization": str, "size_bytes": int, "accepted": bool, "tolerances": dict, "runtimes": list,
                 "failures": list}
RUNTIME_FIELDS = ("runtime", "version", "loads", "load_error", "candidates")


def report_problem(report) -> Optional[str]:
    """What keeps `report` from being tabulated (a missing or malformed field), or None when it can be."""
    if not isinstance(report, dict):
        return f"it holds a JSON {type(report).__name__}, not an object"
    parity = report.get("parity")
    if not isinstance(parity, dict):
        return "it has no parity figures"
    missing = [name for name in PARITY_FIGURES if not _is_number(parity.get(name))]
    if missing:
        return f"its parity figures lack {', '.join(missing)}"
    wrong = [name for name, kind in REPORT_FIELDS.items() if not isinstance(report.get(name), kind)]
    if wrong:
        return f"it lacks {', '.join(wrong)}"
    for field, keys in (("runtimes", RUNTIME_FIELDS), ("failures", ("check",))):
        if not all(isinstance(entry, dict) and all(key in entry for key in keys) for entry in report[field]):
            return f"an entry of its {field} lacks one of {', '.join(keys)}"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe(report: dict) -> list[str]:
    """The short summary the CLI prints after a conversion."""
    parity = report["parity"]
    signature = report["signature"]
    vocab = report["vocabulary_sizes"]
    status = "accepted" if report["accepted"] else "REJECTED"
    lines = [
        f"{status}: {report['tflite']} ({report['quantization']}, {report['size_bytes'] / KB:.1f} KB, "
        f"manifest {report['manifest_bytes'] / KB:.1f} KB; SavedModel {report['saved_model_bytes'] / KB:.1f} KB)",
        "ops: " + ", ".join(f"{op['name']} v{op['version']}" for op in report["ops"]) + " (builtin only)",
        f"signature: {signature['signature_key']} ({signature['user_input']}, {signature['item_input']}) -> "
        f"{signature['output']} {signature['output_shape']}",
        f"manifest: {vocab['users']} users, {vocab['movies']} movies from {report['vocabulary_source']}",
        f"parity on {parity['pairs']:,} test pairs ({parity['interpreter']}): max |diff| {parity['max_abs_diff']:.2e}, "
        f"mean {parity['mean_abs_diff']:.2e}, RMSE {parity['rmse_saved_model']:.4f} -> {parity['rmse_tflite']:.4f} "
        f"(diff {parity['rmse_diff']:.2e})",
        f"ranking {parity['ranking_users']} users x {parity['ranking_movies']:,} movies: top-10 overlap "
        f"{parity['top10_overlap']:.3f} (min {parity['top10_overlap_min']:.2f}), Kendall's tau "
        f"{parity['kendall_tau']:.4f} (min {parity['kendall_tau_min']:.4f})",
    ]
    for runtime in report["runtimes"]:
        lines.append(f"runtime {runtime['runtime']} {runtime['version']}: {_runtime_cell(runtime)}")
    for target in report["targets"]:
        verdict = "ok" if target["passed"] else "FAILED"
        lines.append(f"target {target['target']}: {verdict}" + (f" ({'; '.join(target['notes'])})" if target["notes"] else ""))
    for failure in report["failures"]:
        lines.append(f"failed {failure['check']}: {failure['message']}")
    lines.append(f"report: {Path(report['tflite']).with_name(Path(report['tflite']).stem + '.parity.json')}")
    return lines


def _runtime_cell(runtime: dict) -> str:
    if not runtime["loads"]:
        return f"does not load ({runtime['load_error']})"
    parts = []
    for key, label in (("with_default_delegates", "XNNPACK"), ("without_default_delegates", "builtin")):
        run = runtime.get(key)
        if run is None:
            parts.append(f"{label} not loaded")
        elif run["runs"]:
            parts.append(f"{label} {run['latency_ms']:.2f} ms")
        else:
            parts.append(f"{label} fails")
    return ", ".join(parts)


def markdown_tables(reports: Sequence[dict]) -> str:
    """Markdown tables comparing conversions: size and parity, the bounds held, then runtimes."""
    lines = [
        "| Mode | Size | Max abs diff | Mean abs diff | RMSE SavedModel | RMSE .tflite | RMSE diff "
        "| Top-10 overlap (min) | Kendall's tau (min) | Accepted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for report in reports:
        p = report["parity"]
        lines.append(
            f"| {report['quantization']} | {report['size_bytes'] / KB:.0f} KB | {p['max_abs_diff']:.1e} "
            f"| {p['mean_abs_diff']:.1e} | {p['rmse_saved_model']:.4f} | {p['rmse_tflite']:.4f} | {p['rmse_diff']:.1e} "
            f"| {p['top10_overlap']:.3f} ({p['top10_overlap_min']:.1f}) | {p['kendall_tau']:.4f} ({p['kendall_tau_min']:.4f}) "
            f"| {'yes' if report['accepted'] else 'no: ' + '; '.join(f['check'] for f in report['failures'])} |"
        )
    first = reports[0]["parity"] if reports else {}
    lines.append("")
    lines.append(
        f"Parity on all {first.get('pairs', 0):,} test pairs; rankings of {first.get('ranking_users', 0)} users "
        f"x {first.get('ranking_movies', 0):,} movies."
    )
    lines += ["", "| Mode | max abs diff <= | RMSE diff <= | top-10 overlap >= | Kendall's tau >= |", "|---|---:|---:|---:|---:|"]
    for report in reports:
        bounds = report["tolerances"]
        cells = [_bound(bounds.get(name)) for name in ("max_abs_diff", "rmse_diff", "top10_overlap", "kendall_tau")]
        lines.append(f"| {report['quantization']} | " + " | ".join(cells) + " |")
    runtime_labels = []
    for report in reports:
        for runtime in report["runtimes"]:
            label = f"{runtime['runtime']} {runtime['version']}"
            if label not in runtime_labels:
                runtime_labels.append(label)
    candidates = next((r["candidates"] for report in reports for r in report["runtimes"]), 0)
    lines += ["", "| Mode | " + " | ".join(runtime_labels) + " |", "|---|" + "---|" * len(runtime_labels)]
    for report in reports:
        cells = []
        for label in runtime_labels:
            runtime = next((r for r in report["runtimes"] if f"{r['runtime']} {r['version']}" == label), None)
            cells.append("not tried" if runtime is None else _runtime_cell(runtime))
        lines.append(f"| {report['quantization']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Median latency of one call ranking {candidates:,} candidates, single thread; "
        "XNNPACK = the runtime's default delegates, builtin = BUILTIN_WITHOUT_DEFAULT_DELEGATES."
    )
    return "\n".join(lines) + "\n"


def _bound(value) -> str:
    return "not checked" if value is None else f"{value:g}"

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
    "pairs",
    "max_abs_diff",
    "mean_abs_diff",
    "rmse_saved_model",
    "rmse_tflite",
    "rmse_diff",
    "ranking_users",
    "ranking_movies",
    "top10_overlap",
    "top10_overlap_min",
    "kendall_tau",
    "kendall_tau_min",
    "ranking_max_abs_diff",
)
REPORT_FIELDS = {
    "quantization": str,
    "size_bytes": int,
    "accepted": bool,
    "tolerances": dict,
    "runtimes": list,
    "failures": list,
    "signature_parity": dict,
}
# What the tables read from a top-k signature's figures (the other signatures' are PARITY_FIGURES).
TOP_K_FIGURES = (
    "users",
    "top10_identical",
    "top10_exact",
    "top10_overlap",
    "top10_overlap_min",
    "top100_identical",
    "top100_exact",
    "top100_overlap",
    "top100_overlap_min",
    "max_abs_diff",
)
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
    for key, figures in report["signature_parity"].items():
        names = TOP_K_FIGURES if _is_top_k(figures) else PARITY_FIGURES
        if not isinstance(figures, dict) or any(not _is_number(figures.get(name)) for name in names):
            return f"the figures of its signature {key} lack one of {', '.join(names)}"
    for field, keys in (("runtimes", RUNTIME_FIELDS), ("failures", ("check",))):
        if not all(isinstance(entry, dict) and all(key in entry for key in keys) for entry in report[field]):
            return f"an entry of its {field} lacks one of {', '.join(keys)}"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_top_k(figures) -> bool:
    return isinstance(figures, dict) and "top10_identical" in figures


def _other_signatures(report: dict) -> list[tuple[str, dict]]:
    """Every signature's figures but the strings signature's (which `parity` holds), in the report's order."""
    strings = report.get("signature", {}).get("signature_key")
    return [(key, figures) for key, figures in report["signature_parity"].items() if key != strings]


def _signature_line(key: str, figures: dict) -> str:
    if _is_top_k(figures):
        return (
            f"parity {key}: {figures['users']} users, identical top-10 {figures['top10_identical']:.1%} (exactly "
            f"{figures['top10_exact']:.1%}), top-100 {figures['top100_identical']:.1%} (exactly "
            f"{figures['top100_exact']:.1%}); overlap top-10 {figures['top10_overlap']:.3f} (min "
            f"{figures['top10_overlap_min']:.2f}), top-100 {figures['top100_overlap']:.3f} (min "
            f"{figures['top100_overlap_min']:.2f}); max |score diff| {figures['max_abs_diff']:.2e}"
        )
    state = figures.get("state_max_abs_diff")
    return (
        f"parity {key}: "
        + (f"state max |diff| {state:.2e}, its scores: " if state is not None else "")
        + f"{figures['pairs']:,} test pairs max |diff| {figures['max_abs_diff']:.2e}, "
        f"RMSE diff {figures['rmse_diff']:.2e}; {figures['ranking_users']} users x {figures['ranking_movies']:,} "
        f"movies max |diff| {figures['ranking_max_abs_diff']:.2e}, top-10 overlap {figures['top10_overlap']:.3f} (min "
        f"{figures['top10_overlap_min']:.2f}), Kendall's tau {figures['kendall_tau']:.4f} "
        f"(min {figures['kendall_tau_min']:.4f})"
    )


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
        "signatures: "
        + ", ".join(report["signature_keys"])
        + (f" (state dimension {report['state_dimension']})" if report.get("state_dimension") is not None else ""),
        f"manifest: {vocab['users']} users, {vocab['movies']} movies from {report['vocabulary_source']}",
        f"parity on {parity['pairs']:,} test pairs ({parity['interpreter']}): max |diff| {parity['max_abs_diff']:.2e}, "
        f"mean {parity['mean_abs_diff']:.2e}, RMSE {parity['rmse_saved_model']:.4f} -> {parity['rmse_tflite']:.4f} "
        f"(diff {parity['rmse_diff']:.2e})",
        f"ranking {parity['ranking_users']} users x {parity['ranking_movies']:,} movies: top-10 overlap "
        f"{parity['top10_overlap']:.3f} (min {parity['top10_overlap_min']:.2f}), Kendall's tau "
        f"{parity['kendall_tau']:.4f} (min {parity['kendall_tau_min']:.4f})",
    ]
    lines += [_signature_line(key, figures) for key, figures in _other_signatures(report)]
    for runtime in report["runtimes"]:
        lines.append(f"runtime {runtime['runtime']} {runtime['version']}: {_runtime_cell(runtime)}")
        if runtime["loads"] and len(report["signature_keys"]) > 1:
            lines.append(
                "  per signature (XNNPACK / builtin): "
                + ", ".join(
                    f"{key} {_latency(runtime, 'with_default_delegates', key)}/"
                    f"{_latency(runtime, 'without_default_delegates', key)}"
                    for key in report["signature_keys"]
                )
                + " ms"
            )
    for target in report["targets"]:
        verdict = "ok" if target["passed"] else "FAILED"
        lines.append(
            f"target {target['target']}: {verdict}" + (f" ({'; '.join(target['notes'])})" if target["notes"] else "")
        )
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


def _latency(runtime: dict, delegates: str, key: str) -> str:
    """One signature's median latency in ms on one way of running, or why there is none."""
    run = runtime.get(delegates)
    call = (run or {}).get("signatures", {}).get(key) if run else None
    if call is None:
        return "-"
    return f"{call['latency_ms']:.3f}" if call["runs"] else "fails"


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
            f"| {p['top10_overlap']:.3f} ({p['top10_overlap_min']:.1f}) "
            f"| {p['kendall_tau']:.4f} ({p['kendall_tau_min']:.4f}) "
            f"| {'yes' if report['accepted'] else 'no: ' + '; '.join(f['check'] for f in report['failures'])} |"
        )
    first = reports[0]["parity"] if reports else {}
    lines.append("")
    lines.append(
        f"The strings signature: parity on all {first.get('pairs', 0):,} test pairs; rankings of "
        f"{first.get('ranking_users', 0)} users x {first.get('ranking_movies', 0):,} movies."
    )
    lines += _signature_table(reports)
    bound_names = ("max_abs_diff", "rmse_diff", "top10_overlap", "kendall_tau", "top10_identical")
    lines += [
        "",
        "| Mode | max abs diff <= | RMSE diff <= | top-10 overlap >= | Kendall's tau >= | top-10 identical >= |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        bounds = report["tolerances"]
        lines.append(
            f"| {report['quantization']} | " + " | ".join(_bound(bounds.get(name)) for name in bound_names) + " |"
        )
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
        f"Median latency of one call of the strings signature ranking {candidates:,} candidates, single thread; "
        "XNNPACK = the runtime's default delegates, builtin = BUILTIN_WITHOUT_DEFAULT_DELEGATES."
    )
    lines += _latency_table(reports, runtime_labels)
    return "\n".join(lines) + "\n"


def _signature_table(reports: Sequence[dict]) -> list[str]:
    """Parity of every other signature, one row per (mode, signature)."""
    rows = [(report, key, figures) for report in reports for key, figures in _other_signatures(report)]
    if not rows:
        return []
    lines = [
        "",
        "| Mode | Signature | Max abs diff | RMSE diff | Top-10 overlap (min) | Kendall's tau (min) "
        "| Identical top-10 / top-100 (exactly) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for report, key, f in rows:
        if _is_top_k(f):
            cells = [
                f"{f['max_abs_diff']:.1e}",
                "-",
                f"{f['top10_overlap']:.3f} ({f['top10_overlap_min']:.1f})",
                "-",
                f"{f['top10_identical']:.1%} / {f['top100_identical']:.1%} "
                f"({f['top10_exact']:.1%} / {f['top100_exact']:.1%})",
            ]
        else:
            cells = [
                f"{max(f['max_abs_diff'], f['ranking_max_abs_diff']):.1e}",
                f"{f['rmse_diff']:.1e}",
                f"{f['top10_overlap']:.3f} ({f['top10_overlap_min']:.1f})",
                f"{f['kendall_tau']:.4f} ({f['kendall_tau_min']:.4f})",
                "-",
            ]
        lines.append(f"| {report['quantization']} | {key} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Every other signature against the SavedModel: `score_rows` given rows from the embedded vocabularies, "
        "against the strings scores (every test pair, and the ranked users x every movie); the top-k signatures for "
        "the ranked users with k = 10 and 100; the personalized ones over real histories of those users (0, 1, 5, "
        "20, 50 and all of their training rows, in turn), scoring every movie and their test rows. Max abs diff "
        "covers every score compared; `user_state` is judged by the scores its state gives. A top-k list is "
        "identical when it is the SavedModel's up to near-ties (rows whose scores differ by at most 1e-5 may come "
        "in either order); exactly, when every row is in the same place.",
    ]
    return lines


def _latency_table(reports: Sequence[dict], runtime_labels: Sequence[str]) -> list[str]:
    """Median latency of every signature on every runtime (XNNPACK / builtin), one row per (mode, signature)."""
    if not any(len(report.get("signature_keys", ())) > 1 for report in reports):
        return []
    lines = [
        "",
        "| Mode | Signature | " + " | ".join(runtime_labels) + " |",
        "|---|---|" + "---:|" * len(runtime_labels),
    ]
    for report in reports:
        for key in report.get("signature_keys", ()):
            cells = []
            for label in runtime_labels:
                runtime = next((r for r in report["runtimes"] if f"{r['runtime']} {r['version']}" == label), None)
                if runtime is None or not runtime["loads"]:
                    cells.append("not tried" if runtime is None else "does not load")
                    continue
                cells.append(
                    f"{_latency(runtime, 'with_default_delegates', key)} / "
                    f"{_latency(runtime, 'without_default_delegates', key)}"
                )
            lines.append(f"| {report['quantization']} | {key} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Median ms of one call per signature (XNNPACK / builtin kernels), single thread, as the converter's runtime "
        "probe made it: every movie for `score_rows`, `score_history` and `score_rows_for_state`, k = 10 for the "
        "top-k signatures, a 50-rating history for the personalized ones.",
    ]
    return lines


def _bound(value) -> str:
    return "not checked" if value is None else f"{value:g}"

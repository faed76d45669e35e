"""The outputs: JSON against the schema documented in docs/benchmarks.md, CSV, plot, table."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

from benchmarks import LatencySettings, Method, OutputError, run_latency
from benchmarks import report as report_module
from benchmarks.report import format_table, write_csv, write_json, write_plot

README = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
JSON_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "object": dict}


def documented_schema() -> dict[str, dict[str, tuple[type, bool]]]:
    """Parses the README's schema tables: section -> field -> (type, nullable)."""
    text = README.read_text(encoding="utf-8")
    schema_part = text.split("## JSON schema", 1)[1]
    sections: dict[str, dict[str, tuple[type, bool]]] = {}
    current = None
    for line in schema_part.splitlines():
        heading = re.match(r"### (.+)", line)
        if heading:
            current = heading.group(1).strip()
            sections[current] = {}
            continue
        row = re.match(r"\| (\w+) \| (\w+)(\??) \|", line)
        if row and current and row.group(1) != "field":
            sections[current][row.group(1)] = (JSON_TYPES[row.group(2)], row.group(3) == "?")
    return sections


def check(obj: dict, fields: dict[str, tuple[type, bool]], where: str) -> None:
    assert set(obj) == set(fields), f"{where}: written {sorted(obj)} vs documented {sorted(fields)}"
    for name, (kind, nullable) in fields.items():
        value = obj[name]
        if value is None:
            assert nullable, f"{where}.{name} is null but not documented as nullable"
            continue
        if kind is float:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}.{name}={value!r}"
        elif kind is int:
            assert isinstance(value, int) and not isinstance(value, bool), f"{where}.{name}={value!r}"
        else:
            assert isinstance(value, kind), f"{where}.{name}={value!r} is not {kind.__name__}"


@pytest.fixture(scope="module")
def report(fixtures_dir, kit_model, device_backend):
    from tests.device_runtime import make_fixtures

    settings = LatencySettings(
        models=(kit_model, fixtures_dir / make_fixtures.INT8),
        candidates=(1, 4, "all"),
        backends=(device_backend,),
        methods=(Method.RANK, Method.LOOP),
        loop_max_candidates=4,
        runs=4,
        warmup=1,
        min_seconds=0,
        block=2,
        use_saved_model=False,
    )
    return run_latency(settings)


def test_readme_documents_every_section():
    sections = documented_schema()
    assert set(sections) == {"Top level", "machine", "settings", "measurement", "records[]"}
    assert "schema_version" in sections["Top level"] and "median_us" in sections["records[]"]


def test_json_matches_the_documented_schema(report, tmp_path):
    path = tmp_path / "results.json"
    write_json(report, path)
    data = json.loads(path.read_text(encoding="utf-8"))  # strict JSON: no NaN (allow_nan=False on write)
    schema = documented_schema()
    check(data, schema["Top level"], "top level")
    assert data["schema_version"] == 1
    check(data["machine"], schema["machine"], "machine")
    check(data["settings"], schema["settings"], "settings")
    check(data["measurement"], schema["measurement"], "measurement")
    assert data["measurement"]["rounds"] == 2 and data["measurement"]["block"] == 2
    assert len(data["records"]) == len(report.records) > 0
    for index, record in enumerate(data["records"]):
        check(record, schema["records[]"], f"records[{index}]")
        if record["status"] == "ok":
            assert record["runs"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user writes, not the temporary's 0600


def test_csv_has_one_row_per_record(report, tmp_path):
    path = tmp_path / "results.csv"
    write_csv(report, path)
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    documented = list(documented_schema()["records[]"])
    assert list(rows[0]) == documented + ["cpu_model", "architecture", "emulated"]
    assert len(rows) == len(report.records)
    for row, record in zip(rows, report.records):
        assert row["method"] == record.method and int(row["candidates"]) == record.candidates
        assert row["error"] == (record.error or "")


def table_blocks(lines: list[str], models) -> dict[str, tuple[str, list[list[str]]]]:
    """Model path -> (its heading line, the words of each row below it), read as a person reads the table."""
    blocks: dict[str, tuple[str, list[list[str]]]] = {}
    current = None
    for line in lines:
        if line.split(" · ")[0] in models:
            current = blocks.setdefault(line.split(" · ")[0], (line, []))[1]
        elif current is not None and line.strip() and not line.startswith(("backend", "x rank", "*", "note")):
            current.append(line.split())
    return blocks


def test_table_shows_every_configuration(report, kit_model, fixtures_dir):
    from tests.device_runtime import make_fixtures

    lines = format_table(report).splitlines()
    assert lines[0].startswith("Machine: ")
    models = {str(kit_model): "none", str(fixtures_dir / make_fixtures.INT8): "dynamic-int8"}
    blocks = table_blocks(lines, models)
    assert set(blocks) == set(models)
    for model, quantization in models.items():
        heading = blocks[model][0]
        assert heading == f"{model} · {Path(model).stat().st_size / 1024:,.0f} KB · {quantization}", heading
    for record in report.records:
        threads = "-" if record.threads is None else str(record.threads)
        key = [record.backend, threads, record.method, str(record.candidates)]
        (row,) = [row for row in blocks[record.model][1] if row[:4] == key]
        if not record.ok:
            assert row[4:] == ["failed", "(reason", "in", "the", "notes", "below)"]
            continue
        median = record.median_us  # columns: init ms, first, warm-up, min, median, p90, p99
        assert row[8] == (f"{median:,.0f}" if median >= 100 else f"{median:,.1f}"), (row, median)
        assert row[10].endswith("*") is (record.p99_stable is False), row
    assert any(line.startswith("* p99 from fewer than 100 runs") for line in lines)


@pytest.mark.plot
def test_plot_is_a_png(report, tmp_path):
    path = tmp_path / "latency.png"
    write_plot(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(report, tmp_path, monkeypatch):
    monkeypatch.setattr(report_module, "matplotlib_available", lambda: False)
    with pytest.raises(OutputError, match=r"pip install \"\.\[bench\]\""):
        write_plot(report, tmp_path / "latency.png")
    assert not (tmp_path / "latency.png").exists()


def test_unwritable_output(report, tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        write_json(report, tmp_path / "missing" / "results.json")

"""python -m benchmarks catalog: the numpy references by hand, tiny catalogs built and timed, every mistake in one line.

Building needs TensorFlow (marked); the timing half runs in child processes
that must never import it, which one test enforces with a stand-in package
that fails on import. No timing figure is asserted.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.__main__ import main
from benchmarks.catalog import INDEX_FILE, CatalogSettings
from benchmarks.config import parse_positive_ints
from benchmarks.catalog_timing import _Floor, check_top, reference_top, synthetic_title
from benchmarks.errors import SettingsError

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "benchmarks.md"
JSON_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "object": dict}
SIZES = (150, 400)
K = 10
QUICK = ["--runs", "3", "--min-seconds", "0", "--block", "1", "-q"]


# --- the references, by hand --------------------------------------------------------------------


def hand_tables() -> dict:
    """3 users, 5 movies, 2-d; user 1's raw scores are 3.5 + 0.5 + bias + dot (worked out below)."""
    return {
        "global_mean": np.float32(3.5),
        "user_bias": np.array([0.0, 0.5, 0.0, 0.0], np.float32),
        "movie_bias": np.array([0.0, 0.0, 0.25, -1.0, 0.25, 2.0], np.float32),
        "user_vectors": np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32),
        "movie_vectors": np.array([[0, 0], [0.5, 0], [0.25, 9], [-0.5, 0], [0.25, 0], [0, 0]], np.float32),
    }


def test_reference_top_by_hand():
    # user row 1 (vector [1, 0]): movie rows 1..5 raw 4.5, 4.5, 2.5, 4.5, 6.0 -> clipped 4.5, 4.5, 2.5, 4.5, 5.0
    rows, scores = reference_top(hand_tables(), user_row=1, k=4)
    assert rows.tolist() == [5, 1, 2, 4]  # 5.0 first, then the three 4.5s in row order
    assert scores.tolist() == [5.0, 4.5, 4.5, 4.5]
    rows, _ = reference_top(hand_tables(), user_row=0, k=2)  # the unknown user: 3.5 + movie bias only
    assert rows.tolist() == [5, 2]


def test_check_top_by_hand():
    reference = reference_top(hand_tables(), user_row=1, k=3)  # rows 5, 1, 2
    titles = [synthetic_title(row - 1) for row in (5, 1, 2)]
    same = check_top([(titles[0], 5.0), (titles[1], 4.5), (titles[2], 4.5)], reference)
    assert same.identical and same.overlap == 1.0 and same.max_abs_diff == 0.0
    swapped = check_top([(titles[0], 5.0), (titles[2], 4.5), (titles[1], 4.5)], reference)
    assert not swapped.identical and swapped.overlap == 1.0  # a tie in the wrong order is not numpy's
    other = check_top([(titles[0], 4.75), (synthetic_title(3), 4.5), (titles[1], 4.5)], reference)
    assert not other.identical and other.overlap == pytest.approx(2 / 3) and other.max_abs_diff == 0.25


def test_the_floor_is_argpartition_and_sort():
    tables = hand_tables()
    floor = _Floor(tables["movie_vectors"], tables["user_vectors"][2], 2)  # user [0, 1]: dots 0, 9, 0, 0, 0
    assert floor().tolist()[0] == 1  # position 1 of the catalog = row 2 (the floor skips row 0)
    assert len(floor()) == 2


def test_titles_are_numbered_from_one():
    assert synthetic_title(0) == "Synthetic movie 0000001 (1920)"
    assert synthetic_title(999_999) == "Synthetic movie 1000000 (2019)"


# --- settings and mistakes ------------------------------------------------------------------------


def test_counts_are_parsed_and_checked():
    assert parse_positive_ints("10000, 100_000,10000", "--items") == (10_000, 100_000)
    with pytest.raises(SettingsError, match="--items entry '1e6' is not an integer; give e.g. 10000"):
        parse_positive_ints("1e6", "--items", "10000,100000")
    with pytest.raises(SettingsError, match="must be at least 1"):
        parse_positive_ints("0", "--items")
    with pytest.raises(SettingsError, match="more than 2,000,000 movies"):
        CatalogSettings(items=(3_000_000,))
    with pytest.raises(SettingsError, match="--k 200 is more than the smallest catalog"):
        CatalogSettings(items=(150, 1000), k=200)
    with pytest.raises(SettingsError, match="--user '0' is not one of the synthetic users, 1 to 943"):
        CatalogSettings(user="0")


def run(capsys, argv):
    try:
        status = main(["catalog", *argv])
    except SystemExit as stop:  # argparse's own usage errors
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(capsys, argv, *fragments):
    """The command exits with 2 and one line on stderr, no traceback, holding every fragment."""
    status, _, stderr = run(capsys, argv)
    line, *more = stderr.strip().splitlines() or [""]
    assert (status, more) == (2, []) and "Traceback" not in stderr, stderr
    assert all(fragment in line for fragment in fragments), line


def test_mistakes_are_one_line_with_exit_2(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "r.json")
    one_line_error(capsys, ["--models", str(tmp_path / "nope"), "--out", out], "--models", "is not a folder")
    one_line_error(capsys, ["--models", str(empty), "--out", out], f"holds no {INDEX_FILE}", "--build-only")
    one_line_error(capsys, ["--models", str(empty)], "--out FILE.json is needed")
    one_line_error(capsys, ["--build-only", str(tmp_path / "b"), "--out", out], "--build-only writes models", "--out")
    one_line_error(capsys, ["--build-only", str(tmp_path / "no" / "b")], "does not exist", "create it first")
    one_line_error(capsys, ["--models", str(empty), "--build-only", str(empty)], "not allowed with argument")
    one_line_error(capsys, ["--models", str(empty), "--users", "10", "--out", out], "--users applies to building")
    one_line_error(capsys, ["--items", "10,x", "--out", out], "--items entry 'x' is not an integer")
    one_line_error(capsys, ["--variants", "none,full-int8", "--out", out], "full-int8")
    one_line_error(capsys, ["--threads", "0", "--out", out], "--threads must be at least 1")
    one_line_error(capsys, ["--k", "0", "--out", out], "--k must be at least 1")
    one_line_error(capsys, ["--out", str(tmp_path / "no" / "r.json")], "the folder of --out")
    one_line_error(capsys, ["--backend", "onnx", "--out", out], "unknown backend 'onnx'")
    (empty / INDEX_FILE).write_text('{"kind": "something else"}', encoding="utf-8")
    one_line_error(capsys, ["--models", str(empty), "--out", out], "is not a readable catalog index")


# --- tiny catalogs, built and timed -----------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("catalog") / "models"
    argv = ["catalog", "--build-only", str(folder), "--items", ",".join(map(str, SIZES)), "--k", str(K),
            "--users", "20", "--user", "7", "-q"]
    assert main(argv) == 0
    return folder


@pytest.mark.tensorflow
def test_the_build_writes_every_variant_with_its_check(catalog_folder):
    index = json.loads((catalog_folder / INDEX_FILE).read_text(encoding="utf-8"))
    assert [size["items"] for size in index["sizes"]] == list(SIZES)
    assert index["users"] == 20 and index["dimension"] == 64 and index["k"] == K
    for size in index["sizes"]:
        tables = np.load(catalog_folder / size["tables"])
        assert tables["movie_vectors"].shape == (size["items"] + 1, 64)
        assert tables["user_vectors"].shape == (21, 64)
        assert not tables["movie_vectors"][0].any()  # row 0: unknown movies
        assert np.array_equal(tables["movie_vectors"] * 256, np.round(tables["movie_vectors"] * 256))  # the grid
        variants = {entry["variant"]: entry for entry in size["variants"]}
        assert set(variants) == {"none", "float16", "dynamic-int8", "weight-only-int8"}
        for variant, entry in variants.items():
            assert entry["status"] == "ok", entry
            content = (catalog_folder / entry["file"]).read_bytes()
            assert len(content) == entry["bytes"]
            assert not any(op.startswith(("FlexDelegate", "Custom")) for op in entry["ops"])
        # the files that hold the tables exactly give numpy's top k; the int8 ones come close
        assert variants["none"]["top_k_identical"] and variants["float16"]["top_k_identical"]
        assert variants["weight-only-int8"]["top_k_overlap"] >= 0.8


def documented_catalog_schema() -> dict[str, dict[str, tuple[type, bool]]]:
    text = DOCS.read_text(encoding="utf-8")
    part = text.split("### The catalog report's JSON", 1)[1].split("\n## ", 1)[0]
    sections: dict[str, dict[str, tuple[type, bool]]] = {}
    current = None
    for line in part.splitlines():
        heading = re.match(r"#### (.+)", line)
        if heading:
            current = sections.setdefault(heading.group(1).strip(), {})
            continue
        row = re.match(r"\| (\w+) \| (\w+)(\??) \|", line)
        if row and current is not None and row.group(1) != "field":
            current[row.group(1)] = (JSON_TYPES[row.group(2)], row.group(3) == "?")
    return sections


def check_documented(obj: dict, fields: dict, where: str) -> None:
    assert set(obj) == set(fields), f"{where}: written {sorted(obj)} vs documented {sorted(fields)}"
    for name, (kind, nullable) in fields.items():
        value = obj[name]
        if value is None:
            assert nullable, f"{where}.{name} is null but not documented as nullable"
        elif kind is float:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}.{name}={value!r}"
        else:
            assert isinstance(value, kind) and not (kind is int and isinstance(value, bool)), f"{where}.{name}"


@pytest.mark.tensorflow
def test_timing_a_folder_writes_every_output(catalog_folder, tmp_path, capsys, device_backend):
    out, markdown, table_csv = tmp_path / "c.json", tmp_path / "c.md", tmp_path / "c.csv"
    status, stdout, _ = run(capsys, ["--models", str(catalog_folder), "--out", str(out), "--markdown", str(markdown),
                                     "--csv", str(table_csv), "--k", str(K), "--user", "7",
                                     "--backend", device_backend, *QUICK])
    assert status == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    schema = documented_catalog_schema()
    check_documented(data, schema["Top level"], "top level")
    for name in ("models", "ranking", "measurement", "goal"):
        check_documented(data[name], schema[name], name)
    records = data["records"]
    assert [(r["items"], r["variant"]) for r in records] == [
        (items, variant) for items in SIZES for variant in ("none", "float16", "dynamic-int8", "weight-only-int8")
    ]
    for record in records:
        check_documented(record, schema["records[]"], f"records {record['items']} {record['variant']}")
        if record["status"] != "ok":  # dynamic-int8 on tflite-runtime 2.14: FULLY_CONNECTED v12
            assert record["variant"] == "dynamic-int8" and "FULLY_CONNECTED" in record["error"]
            continue
        assert record["runs"] == 3
        assert record["ratio"] == pytest.approx(record["rank_us"] / record["floor_us"], abs=1e-3)
        assert record["rss_mb"] >= record["rss_baseline_mb"] > 0
        assert record["rank_min_us"] <= record["rank_us"] <= record["rank_p90_us"]
        if record["variant"] in ("none", "float16"):
            assert record["top_k_identical"] and record["max_abs_score_diff"] == 0.0
    assert data["ranking"] == {"user": "7", "k": K}
    assert set(data["goal"]["ratios"]) == {str(items) for items in SIZES}
    assert "| 400 | none |" in markdown.read_text(encoding="utf-8")
    assert table_csv.read_text(encoding="utf-8").count("\n") == 1 + len(records)
    assert f"Goal (float32 top-{K} at most 2x numpy's floor at every size): " in stdout


@pytest.mark.tensorflow
def test_the_timing_half_never_imports_tensorflow(catalog_folder, tmp_path, device_backend):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for package in ("tensorflow", "train", "convert"):  # importing any of them now fails, in every child too
        (blocked / f"{package}.py").write_text(f"raise ImportError('{package} must not be imported')\n")
    out = tmp_path / "c.json"
    command = [sys.executable, "-m", "benchmarks", "catalog", "--models", str(catalog_folder), "--items", "150",
               "--variants", "none", "--k", str(K), "--backend", device_backend, "--out", str(out), *QUICK]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{blocked}:{ROOT}"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [record] = json.loads(out.read_text(encoding="utf-8"))["records"]
    assert record["status"] == "ok" and record["top_k_identical"], record


@pytest.mark.tensorflow
def test_a_wrong_top_k_exits_1_and_an_unbuilt_variant_is_a_record(catalog_folder, tmp_path, capsys):
    folder = tmp_path / "models"
    shutil.copytree(catalog_folder, folder)
    index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    size = index["sizes"][0]
    tables = dict(np.load(folder / size["tables"]))
    tables["movie_bias"] = tables["movie_bias"][::-1].copy()  # the file no longer scores what numpy does
    np.savez(folder / size["tables"], **tables)
    size["variants"][1].update(status="failed", error="the converter refused it")
    (folder / INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")
    out = tmp_path / "c.json"
    status, _, stderr = run(capsys, ["--models", str(folder), "--items", str(SIZES[0]), "--variants", "none,float16",
                                     "--k", str(K), "--user", "7", "--out", str(out), *QUICK])
    assert status == 1
    assert f"check failed: {SIZES[0]} movies, none: its top {K} is not numpy's" in stderr
    records = json.loads(out.read_text(encoding="utf-8"))["records"]
    assert records[0]["status"] == "ok" and records[0]["top_k_identical"] is False
    assert records[1]["status"] == "failed" and records[1]["error"] == "not built: the converter refused it"


@pytest.mark.tensorflow
def test_without_a_folder_it_builds_then_times(tmp_path, capsys):
    out = tmp_path / "c.json"
    status, _, _ = run(capsys, ["--items", "120", "--variants", "none", "--k", "5", "--users", "10", "--user", "3",
                                "--out", str(out), *QUICK])
    assert status == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    [record] = data["records"]
    assert (record["items"], record["variant"], record["status"]) == (120, "none", "ok")
    assert record["top_k_identical"] and data["models"]["users"] == 10

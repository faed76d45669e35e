"""The harness on tiny real models: records, self-checks, failures and notes (no timing asserted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import LatencySettings, Method, SettingsError, run_latency
from tests.device_runtime import make_fixtures

FAST = dict(runs=5, warmup=1, min_seconds=0, block=1, use_saved_model=False)
KIT_TITLES = len(make_fixtures.MOVIES)  # the fixture model's vocabulary: 60 titles
ROOT = Path(__file__).resolve().parents[2]


def by_key(report):
    return {(r.method, r.candidates): r for r in report.records}


def test_every_method_and_count(kit_model, device_backend):
    settings = LatencySettings(
        models=(kit_model,),
        candidates=(1, 5, "all"),
        backends=(device_backend,),
        methods=(Method.RANK, Method.INVOKE, Method.LOOP, Method.SIGNATURE_LOOP),
        loop_max_candidates=5,
        **FAST,
    )
    report = run_latency(settings)
    records = by_key(report)
    # rank and invoke at 1, 5 and all 60; the loops only up to 5 candidates
    assert set(records) == {
        ("rank", 1), ("rank", 5), ("rank", KIT_TITLES),
        ("invoke", 1), ("invoke", 5), ("invoke", KIT_TITLES),
        ("loop", 1), ("loop", 5), ("signature_loop", 1), ("signature_loop", 5),
    }
    assert records[("rank", KIT_TITLES)].candidates_spec == "all"
    for record in report.records:
        assert record.status == "ok", record.error
        assert record.backend == device_backend
        assert record.runs == 5 and record.warmup_runs == 1
        assert record.min_us <= record.median_us <= record.p90_us <= record.p99_us
        assert record.model_size_bytes == kit_model.stat().st_size
        assert record.quantization == "none"
        assert record.parity_rmse is None  # no parity report beside the fixture
    for method, count in set(records) - {("rank", 1), ("rank", 5), ("rank", KIT_TITLES)}:
        other = records[(method, count)]
        # the same interpreter API driven by hand: the same scores as Ranker.score
        assert other.max_abs_diff_vs_rank is not None and other.max_abs_diff_vs_rank <= 1e-6, (method, count)
        assert other.slowdown_vs_rank is not None and other.slowdown_vs_rank > 0
    assert records[("rank", 5)].slowdown_vs_rank is None
    assert any("loop" in note and "5 candidates" in note for note in report.warnings)
    # 5 runs are far too few for a p99
    assert all(record.p99_stable is False for record in report.records)
    assert any("p99" in note for note in report.warnings)


def test_int8_model_runs_without_delegate_or_fails_as_a_record(fixtures_dir, kit_model, device_backend):
    int8 = fixtures_dir / make_fixtures.INT8
    settings = LatencySettings(
        models=(kit_model, int8), candidates=(3,), backends=(device_backend,),
        methods=(Method.RANK, Method.LOOP), **FAST,
    )
    report = run_latency(settings)
    kit_records = [r for r in report.records if r.model_file == kit_model.name]
    int8_records = [r for r in report.records if r.model_file == int8.name]
    assert len(kit_records) == 2 and all(r.status == "ok" for r in kit_records)
    assert len(int8_records) == 2
    if device_backend == "tflite_runtime":
        # tflite-runtime 2.14 lacks FULLY_CONNECTED v12: a failed record, the rest still measured
        assert all(r.status == "failed" and "FULLY_CONNECTED" in r.error for r in int8_records)
        assert any(int8.name in note and "failed" in note for note in report.warnings)
    else:
        # LiteRT's XNNPACK cannot prepare it; the Ranker falls back and the loop follows its choice
        assert all(r.status == "ok" and r.delegate == "none" for r in int8_records)
        assert all(r.quantization == "dynamic-int8" for r in int8_records)
        assert any("delegate off" in note for note in report.warnings)


def test_model_without_manifest_needs_a_candidates_file(fixtures_dir, device_backend, tmp_path):
    tutorial = fixtures_dir / make_fixtures.TUTORIAL
    with pytest.raises(SettingsError, match="--candidates-file"):
        run_latency(LatencySettings(models=(tutorial,), candidates=(2,), backends=(device_backend,), **FAST))

    titles = tmp_path / "titles.txt"
    titles.write_text("Speed (1994)\n\nAmélie (2001)\nNo Such Movie (2099)\n", encoding="utf-8")
    report = run_latency(
        LatencySettings(
            models=(tutorial,), candidates=("all",), candidates_file=titles, backends=(device_backend,),
            methods=(Method.RANK, Method.INVOKE, Method.LOOP, Method.SIGNATURE_LOOP), **FAST,
        )
    )
    # the blank line is skipped; the tutorial-style output [N, 1] is read in all four ways
    assert {(r.method, r.candidates, r.status) for r in report.records} == {
        ("rank", 3, "ok"), ("invoke", 3, "ok"), ("loop", 3, "ok"), ("signature_loop", 3, "ok"),
    }
    assert all(r.max_abs_diff_vs_rank <= 1e-6 for r in report.records if r.method != "rank")
    assert all(r.quantization is None for r in report.records)


def test_count_above_the_vocabulary_is_refused(kit_model, device_backend):
    with pytest.raises(SettingsError, match=f"more than the {KIT_TITLES} titles"):
        run_latency(LatencySettings(models=(kit_model,), candidates=(KIT_TITLES + 1,), backends=(device_backend,), **FAST))


def test_parity_report_beside_the_model_is_read_defensively(kit_model, device_backend, tmp_path):
    model = tmp_path / "model.tflite"
    shutil.copyfile(kit_model, model)
    settings = LatencySettings(models=(model,), candidates=(2,), backends=(device_backend,), methods=(Method.RANK,), **FAST)

    (tmp_path / "model.parity.json").write_text('{"parity": {"rmse_tflite": 0.9321}}', encoding="utf-8")
    assert run_latency(settings).records[0].parity_rmse == 0.9321

    (tmp_path / "model.parity.json").write_text('{"parity": "broken', encoding="utf-8")
    assert run_latency(settings).records[0].parity_rmse is None


def test_no_tensorflow_needed(kit_model, device_backend, tmp_path):
    """The whole command runs with `import tensorflow` made impossible (the device environment)."""
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # any import of it now fails\n"
        "from benchmarks.__main__ import main\n"
        f"status = main(['latency', '--model', {str(kit_model)!r}, '--backend', {device_backend!r}, '--candidates', '1,all',"
        " '--runs', '3', '--warmup', '0', '--min-seconds', '0', '--block', '1', '-q',"
        f" '--out', {str(tmp_path / 'r.json')!r}])\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported without --plot'\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.json").is_file()


@pytest.mark.tensorflow
def test_saved_model_reference_beside_the_model(kit_model, tmp_path):
    """A SavedModel in saved_model/ beside the .tflite is timed as the TensorFlow reference."""
    make_fixtures._save_named(tmp_path / "saved_model", "user_id", "movie_title", "rating", squeeze=True)
    model = tmp_path / "model.tflite"
    shutil.copyfile(kit_model, model)  # converted from a SavedModel built with the same seeded weights
    settings = LatencySettings(
        models=(model,), candidates=(4, "all"), backends=("ai_edge_litert",), methods=(Method.RANK,),
        runs=3, warmup=0, min_seconds=0, block=1,
    )
    report = run_latency(settings)
    references = [r for r in report.records if r.method == "saved_model"]
    assert [r.candidates for r in references] == [4, KIT_TITLES]
    for record in references:
        assert record.status == "ok", record.error
        assert record.backend == "tensorflow"
        assert record.model == str(tmp_path / "saved_model")
        assert record.max_abs_diff_vs_rank is not None and record.max_abs_diff_vs_rank < 1e-4  # float32 parity
        assert record.slowdown_vs_rank is not None

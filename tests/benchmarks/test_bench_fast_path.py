"""The latency harness's fast-path and personalization rows, on the kit's multi-signature fixtures.

What each subject computes is checked against the fixtures' independent
references (numpy over the factor tables, numpy's ridge solve of a history);
the harness's records are checked for what was planned, skipped and compared.
No timing is asserted.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import LatencySettings, Method, run_latency
from benchmarks.subjects import benchmark_history, load_interpreter, load_ranker
from tests.device_runtime import make_fixtures
from tests.device_runtime import serving_fixtures as sf
from tests.device_runtime import serving_reference
from tests.device_runtime.tolerance import PERSONALIZED_ATOL, SCORE_ATOL

FAST = dict(runs=3, warmup=1, min_seconds=0, block=1, use_saved_model=False)
CATALOG = len(make_fixtures.MOVIES)  # 60 titles
USER = "42"
RANKER_FAST_PATH = (Method.RANK_PREPARED, Method.RANK_STRINGS, Method.RANK_CATALOG)
WHOLE_CATALOG_ONLY = {"rank_catalog", "invoke_top_k", "personalize_rank", "rank_personalized"}


@pytest.fixture(scope="module")
def serving(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / make_fixtures.REFERENCE).read_text(encoding="utf-8"))["serving"]


@pytest.fixture(scope="module")
def factor_report(fixtures_dir, device_backend):
    settings = LatencySettings(
        models=(fixtures_dir / sf.FACTOR,), candidates=(5, "all"), backends=(device_backend,), **FAST
    )  # every method (the default)
    return run_latency(settings)


def test_every_method_side_by_side_on_a_factor_model(factor_report):
    records = {(r.method, r.candidates): r for r in factor_report.records}
    per_count = {"rank", "rank_prepared", "rank_strings", "invoke", "signature_loop"}
    expected = {(m, c) for m in per_count for c in (5, CATALOG)} | {(m, CATALOG) for m in WHOLE_CATALOG_ONLY}
    assert set(records) == expected
    for record in factor_report.records:
        assert record.status == "ok", (record.method, record.error)
        assert record.runs == 3
        if record.method != "rank":
            assert record.slowdown_vs_rank is not None and record.slowdown_vs_rank > 0
        if record.method in ("personalize_rank", "rank_personalized"):
            assert record.max_abs_diff_vs_rank is None  # another user's scores: nothing to compare
        elif record.method != "rank":
            # the whole catalog in the graph sums in another order than score_rows: float32 rounding
            assert record.max_abs_diff_vs_rank <= SCORE_ATOL, (record.method, record.max_abs_diff_vs_rank)
    # the tutorial's set_tensor loop cannot reach the strings signature of a model with several
    assert any(note.startswith("loop was not timed on factor.tflite") for note in factor_report.warnings)
    assert records[("rank_catalog", CATALOG)].candidates_spec == "all"


def test_methods_a_model_cannot_run_are_left_out_with_a_note(fixtures_dir, device_backend):
    settings = LatencySettings(
        models=(fixtures_dir / make_fixtures.KIT, fixtures_dir / sf.TOWER),
        candidates=(3,),  # no "all": the whole-catalog methods have nothing to run at
        backends=(device_backend,),
        methods=(Method.RANK, Method.RANK_CATALOG, Method.INVOKE_TOP_K, Method.PERSONALIZE_RANK),
        **FAST,
    )
    report = run_latency(settings)
    assert {(r.model_file, r.method) for r in report.records} == {("kit.tflite", "rank"), ("tower.tflite", "rank")}
    notes = "\n".join(report.warnings)
    assert "rank_catalog was not timed on kit.tflite: it ranks the whole catalog: add all to --candidates" in notes
    assert "invoke_top_k was not timed on kit.tflite: it needs the top_k signature" in notes
    assert "personalize_rank was not timed on tower.tflite: it needs the personalized signatures (user_state)" in notes
    assert "invoke_top_k was not timed on tower.tflite: it ranks the whole catalog: add all" in notes

    with_all = LatencySettings(
        models=(fixtures_dir / sf.TOWER,), candidates=("all",), backends=(device_backend,),
        methods=(Method.RANK, Method.RANK_CATALOG, Method.INVOKE_TOP_K), **FAST,
    )
    records = {r.method: r for r in run_latency(with_all).records}
    assert set(records) == {"rank", "rank_catalog", "invoke_top_k"}
    assert all(r.status == "ok" and r.max_abs_diff_vs_rank <= SCORE_ATOL for m, r in records.items() if m != "rank")


def test_a_candidates_file_leaves_out_the_whole_catalog_methods(fixtures_dir, device_backend, tmp_path):
    titles = tmp_path / "titles.txt"
    titles.write_text("\n".join(make_fixtures.MOVIES[:4]) + "\n", encoding="utf-8")
    settings = LatencySettings(
        models=(fixtures_dir / sf.FACTOR,), candidates=("all",), candidates_file=titles, backends=(device_backend,),
        methods=(Method.RANK_PREPARED, Method.RANK_CATALOG), **FAST,
    )
    report = run_latency(settings)
    assert [(r.method, r.candidates) for r in report.records] == [("rank_prepared", 4)]
    assert any("rank_catalog was not timed" in note and "--candidates-file" in note for note in report.warnings)


@pytest.mark.parametrize("method", RANKER_FAST_PATH + (Method.RANK,))
def test_ranker_subjects_score_like_numpy(fixtures_dir, device_backend, serving, method):
    expected = serving_reference.catalog_scores(serving, sf.FACTOR, USER)
    titles = list(make_fixtures.MOVIES)
    loaded = load_ranker(method, fixtures_dir / sf.FACTOR, device_backend, 1, USER, titles)
    loaded.subject.run()
    np.testing.assert_allclose(loaded.subject.scores(), serving_reference.as_array(expected, titles), atol=SCORE_ATOL)


def test_top_k_subject_scores_like_numpy(fixtures_dir, device_backend, serving):
    expected = serving_reference.catalog_scores(serving, sf.FACTOR, USER)
    titles = list(make_fixtures.MOVIES)
    user_row = make_fixtures.USERS.index(USER) + 1
    loaded = load_interpreter(
        Method.INVOKE_TOP_K, fixtures_dir / sf.FACTOR, device_backend, "default", 1, USER, titles, user_row=user_row
    )
    loaded.subject.run()
    np.testing.assert_allclose(loaded.subject.scores(), serving_reference.as_array(expected, titles), atol=SCORE_ATOL)


@pytest.mark.parametrize("method", (Method.PERSONALIZE_RANK, Method.RANK_PERSONALIZED))
def test_personalized_subjects_score_the_history_like_numpy(fixtures_dir, device_backend, serving, method):
    # the fixtures' "mixed" history: a repeated title, an unknown one; numpy's ridge solve of it by hand
    history = [tuple(entry) for entry in serving["histories"]["mixed"]["raw"]]
    expected = serving_reference.state_scores(serving, sf.FACTOR, "mixed")
    titles = list(make_fixtures.MOVIES)
    loaded = load_ranker(method, fixtures_dir / sf.FACTOR, device_backend, 1, USER, titles, history)
    loaded.subject.run()
    np.testing.assert_allclose(
        loaded.subject.scores(), serving_reference.as_array(expected, titles), atol=PERSONALIZED_ATOL
    )


def test_the_benchmark_history_is_spread_over_the_catalog():
    titles = [f"t{n}" for n in range(10)]
    # positions round(linspace(0, 9, 4)) = 0, 3, 6, 9; ratings 1, 2, 3, 4
    assert benchmark_history(titles, 4) == (("t0", 1.0), ("t3", 2.0), ("t6", 3.0), ("t9", 4.0))
    # longer than the catalog: every title once, ratings cycling 1..5
    assert benchmark_history(titles[:7], 50) == tuple((f"t{n}", float(1 + n % 5)) for n in range(7))
    assert benchmark_history([], 50) == ()
    assert len(benchmark_history([f"m{n}" for n in range(1664)])) == 50

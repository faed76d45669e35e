"""`python -m benchmarks soak`, run on the real hot-swap Ranker (`Ranker.reload`) with the device fixtures.

The soak must pass on the Ranker, and must catch one that breaks its promise
(a failed reload that does not raise). Its memory verdict is checked on
hand-built samples: a steady growth fails, a warm-up step then flat passes, and
too few samples are not judged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.machine import describe_machine
from benchmarks.soak import (
    BAD_CALL_EVERY,
    RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS,
    RSS_TREND_MIN_SAMPLES,
    RssSample,
    SoakReport,
    SoakSettings,
    rss_trend,
    run_soak,
)
from device_runtime import Ranker
from tests.device_runtime import make_fixtures


class SilentReloadRanker(Ranker):
    """Breaks the promise: a reload that fails keeps the old model but does not say so."""

    def reload(self, model_path):
        try:
            return super().reload(model_path)
        except Exception:  # noqa: BLE001 - the defect under test
            return None


# The factor fixtures rank in tens of microseconds and a reload takes milliseconds: the workers do not wait for the
# swapper, so a short soak needs this many calls for the swapper to act a few dozen times.
SHORT_CALLS = 20_000


@pytest.fixture(scope="session")
def two_models(fixtures_dir):
    """Two sealed factor models of the same users that rank them differently (the hot-swap fixtures)."""
    return fixtures_dir / make_fixtures.FACTOR, fixtures_dir / make_fixtures.FACTOR_B


def test_the_soak_passes_on_the_ranker(two_models, device_backend):
    settings = SoakSettings(models=two_models, calls=SHORT_CALLS, threads=4, swap_every=100, backend=device_backend)
    report = run_soak(settings, "the test")  # the real Ranker, through hot_swap_ranker
    assert report.failures == 0, report.failure_examples
    assert report.calls == SHORT_CALLS
    assert report.bad_calls == len([n for n in range(SHORT_CALLS) if n % BAD_CALL_EVERY == BAD_CALL_EVERY - 1])
    assert sum(report.results_by_model.values()) == SHORT_CALLS - report.bad_calls
    assert report.swaps >= 2 and report.refused_reloads >= 1
    assert all(count > 0 for count in report.results_by_model.values()), report.results_by_model
    assert report.passed and report.to_dict()["passed"] is True


def test_the_soak_catches_a_reload_that_fails_silently(two_models, device_backend):
    settings = SoakSettings(models=two_models, calls=SHORT_CALLS, threads=2, swap_every=100, backend=device_backend)
    report = run_soak(settings, "the test", lambda path: SilentReloadRanker(path, backend=device_backend, strict=True))
    assert not report.passed
    assert any("file did not raise" in example for example in report.failure_examples), report.failure_examples


def report_with(calls_and_mib):
    """A report of a clean run whose RSS samples are the given (calls, MiB) pairs, one a second."""
    settings = SoakSettings(models=(Path(__file__), Path(__file__)), calls=1)
    samples = tuple(RssSample(float(i), calls, int(mib * 2**20)) for i, (calls, mib) in enumerate(calls_and_mib))
    machine = describe_machine({"none": "0"})
    return SoakReport("now", "cmd", settings, machine, 1.0, samples[-1].calls, {}, 0, 0, 0, 0, (), samples)


CALLS = 1_000_000
STEP = 10_000  # calls between two samples: 101 samples, 91 of them after the 10% warm-up


def steady(kib_per_1000_calls, start_mib=60.0):
    return [(calls, start_mib + calls / 1000 * kib_per_1000_calls / 1024) for calls in range(0, CALLS + 1, STEP)]


def test_a_steady_growth_fails_even_when_the_halves_differ_by_little():
    # The leak of docs/results/soak-before-fix.md: 26 KiB per 1,000 calls, 25.4 MiB over the run. The halves' medians
    # differ by about 12.7 MiB, which the old check (16 MiB) passed.
    report = report_with(steady(26.0))
    trend = report.rss_trend
    assert trend.kib_per_1000_calls == pytest.approx(26.0)
    assert trend.projected_growth_bytes == pytest.approx(26.0 * 1000 * 1024, rel=1e-6)
    assert trend.samples == 91 and trend.warmup_calls == 100_000
    assert trend.flat is False and not report.passed and report.verdict() == "FAILED"
    rss = report.to_dict()["rss"]
    assert rss["slope_kib_per_1000_calls"] == 26.0 and rss["flat"] is False and report.to_dict()["passed"] is False
    assert "GROWING" in report.to_markdown()


def test_the_limit_separates_slopes_just_above_and_below_it():
    assert report_with(steady(RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS * 1.05)).rss_trend.flat is False
    assert report_with(steady(RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS * 0.95)).rss_trend.flat is True


def test_a_warm_up_step_then_flat_passes():
    # +20 MiB while the first 10% of calls run (interpreters, arenas, caches), then flat within +-1 MiB.
    samples = [(calls, 60.0 + 20.0 * min(calls, 80_000) / 80_000) for calls in range(0, 100_000, STEP)]
    after = range(100_000, CALLS + 1, STEP)
    samples += [(calls, 80.0 + (1.0 if index % 2 else -1.0)) for index, calls in enumerate(after)]
    report = report_with(samples)
    trend = report.rss_trend
    # By hand: 91 samples alternating -1, +1, ..., -1 are symmetric about the middle one, so the slope is 0.
    assert trend.samples == 91 and trend.kib_per_1000_calls == pytest.approx(0.0, abs=1e-9)
    assert trend.flat is True and report.passed and report.verdict() == "passed"
    # Counted in the trend, the step alone would use half the limit: the warm-up is what keeps it out.
    with_step = rss_trend(report.rss, 0).kib_per_1000_calls
    assert with_step > RSS_SLOPE_LIMIT_KIB_PER_1000_CALLS / 2, with_step


def test_too_few_samples_are_not_judged():
    few = [(calls, 60.0 + calls / 100) for calls in range(0, RSS_TREND_MIN_SAMPLES * 100, 100)]  # 9 after warm-up
    report = report_with(few)
    trend = report.rss_trend
    assert trend.samples == RSS_TREND_MIN_SAMPLES - 1
    assert trend.kib_per_1000_calls is None and trend.projected_growth_bytes is None and trend.flat is None
    assert report.verdict() == "passed (memory not judged)"
    document = report.to_dict()["rss"]
    assert document["flat"] is None and document["slope_kib_per_1000_calls"] is None
    row = "| RSS trend after the first 10% of calls | n/a: 9 samples after the warm-up, 10 needed"
    assert row in report.to_markdown()
    one_more = report_with(few + [(RSS_TREND_MIN_SAMPLES * 100, 60.0 + RSS_TREND_MIN_SAMPLES)])
    assert one_more.rss_trend.flat is False  # the same growth, judged once there are enough samples
    same_calls = report_with([(500, 60.0 + i) for i in range(20)])  # no spread in calls: no slope
    assert same_calls.rss_trend.flat is None


# --- the command line ---------------------------------------------------------------------------


def run(capsys, argv):
    try:
        status = main(["soak", *argv])
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_full_run_writes_both_reports(two_models, device_backend, tmp_path, capsys):
    out, markdown = tmp_path / "soak.json", tmp_path / "soak.md"
    status, stdout, _ = run(
        capsys,
        ["--model", str(two_models[0]), "--model", str(two_models[1]), "--calls", "400", "--threads", "2",
         "--swap-every", "50", "--backend", device_backend, "--out", str(out), "--markdown", str(markdown), "-q"],
    )
    assert status == 0, stdout
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["calls"] == 400 and document["failures"] == 0 and document["passed"] is True
    assert document["rss"]["samples"] and document["settings"]["swap_every"] == 50
    assert document["schema_version"] == 2 and document["rss"]["flat"] is None  # far too short to judge the memory
    text = markdown.read_text(encoding="utf-8")
    assert "`python -m benchmarks soak --model" in text and "Machine: " in text
    assert "| verdict | passed (memory not judged) |" in text and "passed (memory not judged)" in stdout


def one_line_error(capsys, argv, fragment):
    status, _, stderr = run(capsys, argv)
    assert status == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert fragment in lines[0], lines[0]


def test_bad_flags(two_models, tmp_path, capsys, monkeypatch):
    both = ["--model", str(two_models[0]), "--model", str(two_models[1]), "--out", str(tmp_path / "r.json")]
    one_line_error(capsys, ["--model", str(two_models[0]), "--out", str(tmp_path / "r.json")], "exactly twice")
    one_line_error(capsys, [*both, "--calls", "0"], "--calls must be a positive integer")
    one_line_error(capsys, [*both, "--threads", "0"], "--threads must be a positive integer")
    one_line_error(capsys, [*both, "--swap-every", "-5"], "--swap-every must be a positive integer")
    one_line_error(capsys, ["--model", str(tmp_path / "a.tflite"), "--model", str(two_models[1]),
                            "--out", str(tmp_path / "r.json")], "a.tflite does not exist")
    monkeypatch.setattr("device_runtime.Ranker", type("RankerWithoutReload", (), {}))
    one_line_error(capsys, both, "has no reload(path)")

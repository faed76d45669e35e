"""`python -m benchmarks soak`, run against a stand-in for the hot-swap Ranker (issue 15).

Until `Ranker.reload` exists, `HotSwapStandIn` plays it on today's Ranker: it
verifies the new file's checksum, loads it, and switches under a lock, so a
failed reload raises and leaves the old model serving. The soak must pass with
it, and must catch a stand-in that breaks those promises.
"""

from __future__ import annotations

import json
import threading

import pytest

import benchmarks.soak as soak_module
from benchmarks.__main__ import main
from benchmarks.soak import BAD_CALL_EVERY, RSS_GROWTH_LIMIT_BYTES, RssSample, SoakReport, SoakSettings, run_soak
from device_runtime import Ranker
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.integrity import verify
from tests.device_runtime import make_fixtures


class HotSwapStandIn:
    """What `Ranker.reload` promises, on today's Ranker."""

    def __init__(self, path, backend):
        self._backend = backend
        self._lock = threading.Lock()
        self._current = self._load(path)

    def _load(self, path):
        ranker = Ranker(path, backend=self._backend, strict=True)  # a missing file raises ModelLoadError
        content = open(path, "rb").read()
        verify(content, read_flatbuffer(content, str(path)), str(path))  # a corrupt one raises too
        return ranker

    def reload(self, path):
        loaded = self._load(path)
        with self._lock:
            self._current = loaded

    def rank(self, user, titles, k=10):
        return self._current.rank(user, titles, k=k)

    @property
    def manifest(self):
        return self._current.manifest

    def info(self):
        return self._current.info()


class SilentStandIn(HotSwapStandIn):
    """Breaks the promise: a reload that fails keeps the old model but does not say so."""

    def reload(self, path):
        try:
            super().reload(path)
        except Exception:  # noqa: BLE001 - the defect under test
            pass


@pytest.fixture(scope="session")
def two_models(fixtures_dir):
    return fixtures_dir / make_fixtures.KIT, fixtures_dir / make_fixtures.FLOAT16


def factory(stand_in, backend):
    return lambda path: stand_in(path, backend)


def test_the_soak_passes_on_a_ranker_that_keeps_its_promises(two_models, device_backend):
    settings = SoakSettings(models=two_models, calls=1500, threads=4, swap_every=100, backend=device_backend)
    report = run_soak(settings, "the test", factory(HotSwapStandIn, device_backend))
    assert report.failures == 0, report.failure_examples
    assert report.calls == 1500
    assert report.bad_calls == len([n for n in range(1500) if n % BAD_CALL_EVERY == BAD_CALL_EVERY - 1])
    assert sum(report.results_by_model.values()) == 1500 - report.bad_calls
    assert report.swaps >= 2 and report.refused_reloads >= 1
    assert all(count > 0 for count in report.results_by_model.values()), report.results_by_model
    assert report.passed and report.to_dict()["passed"] is True


def test_the_soak_catches_a_reload_that_fails_silently(two_models, device_backend):
    settings = SoakSettings(models=two_models, calls=1500, threads=2, swap_every=100, backend=device_backend)
    report = run_soak(settings, "the test", factory(SilentStandIn, device_backend))
    assert not report.passed
    assert any("file did not raise" in example for example in report.failure_examples), report.failure_examples


def report_with(rss_mib):
    settings = SoakSettings(models=(__file__, __file__), calls=1)
    samples = tuple(RssSample(float(i), i, int(value * 2**20)) for i, value in enumerate(rss_mib))
    return SoakReport("now", "cmd", settings, None, 1.0, 1, {}, 0, 0, 0, 0, (), samples)


def test_rss_growth_compares_the_halves_of_the_run():
    flat = report_with([100, 104, 101, 100, 103, 101])  # medians 101 and 101
    assert flat.rss_growth_bytes == 0 and flat.rss_flat and flat.passed
    growing = report_with([100, 100, 100, 100 + 17, 100 + 17, 100 + 17])
    assert growing.rss_growth_bytes == 17 * 2**20 > RSS_GROWTH_LIMIT_BYTES
    assert growing.rss_flat is False and not growing.passed
    assert report_with([100, 200]).rss_flat is None  # too few samples to judge


# --- the command line ---------------------------------------------------------------------------


def run(capsys, argv):
    try:
        status = main(["soak", *argv])
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_full_run_writes_both_reports(two_models, device_backend, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(soak_module, "hot_swap_ranker", lambda backend: factory(HotSwapStandIn, backend))
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
    text = markdown.read_text(encoding="utf-8")
    assert "`python -m benchmarks soak --model" in text and "Machine: " in text and "| verdict | passed |" in text


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

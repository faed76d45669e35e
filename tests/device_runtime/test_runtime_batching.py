"""One invocation per call, chunking above MAX_BATCH, tensors kept allocated, thread safety."""

from __future__ import annotations

import importlib
import threading

import numpy as np
import pytest

import device_runtime.model as loaded_model
from device_runtime import MAX_BATCH, Ranker
from tests.device_runtime import make_fixtures as mf
from tests.device_runtime.tolerance import SCORE_ATOL

THREADS = 8
CALLS_PER_THREAD = 500


@pytest.fixture
def interpreter_calls(monkeypatch, backend_name):
    """Counts invoke() and allocate_tensors() on the installed backend's Interpreter class."""
    interpreter_class = importlib.import_module(f"{backend_name}.interpreter").Interpreter
    calls = {"invoke": 0, "allocate_tensors": 0}
    for name in calls:
        original = getattr(interpreter_class, name)

        def counted(self, _original=original, _name=name):
            calls[_name] += 1
            return _original(self)

        monkeypatch.setattr(interpreter_class, name, counted)
    return calls


def probe_pairs_repeated(count: int, expected_scores) -> tuple[list[str], list[str], np.ndarray]:
    """`count` pairs cycling through the probe pairs, with their reference scores from reference.json."""
    users, movies = mf.probe_pairs()
    reference = np.asarray(expected_scores[mf.KIT], dtype=np.float32)
    rows = [i % len(users) for i in range(count)]
    return [users[i] for i in rows], [movies[i] for i in rows], reference[rows]


def test_one_invocation_per_call_and_allocation_only_when_the_size_changes(kit_path, interpreter_calls):
    ranker = Ranker(kit_path)
    after_load = dict(interpreter_calls)
    candidates = list(mf.MOVIES) * 16  # 960 candidates
    ranker.score("42", candidates)
    assert interpreter_calls["invoke"] - after_load["invoke"] == 1
    assert interpreter_calls["allocate_tensors"] - after_load["allocate_tensors"] == 1
    ranker.score("7", candidates[::-1])  # same size: no new allocation
    assert interpreter_calls["invoke"] - after_load["invoke"] == 2
    assert interpreter_calls["allocate_tensors"] - after_load["allocate_tensors"] == 1
    ranker.score("7", candidates[:10])  # new size: one allocation
    assert interpreter_calls["allocate_tensors"] - after_load["allocate_tensors"] == 2
    ranker.score("7", [])
    assert interpreter_calls["invoke"] - after_load["invoke"] == 3


def test_calls_above_max_batch_are_chunked_in_place(kit_path, interpreter_calls, expected_scores):
    count = 2 * MAX_BATCH + 17
    users, movies, expected = probe_pairs_repeated(count, expected_scores)
    ranker = Ranker(kit_path)
    before = interpreter_calls["invoke"]
    chunked = ranker.score_pairs(users, movies)
    assert interpreter_calls["invoke"] - before == 3
    assert len(chunked) == count
    # The probe pairs cycle with a period (60) that does not divide MAX_BATCH, so a chunk
    # written at the wrong offset would put other pairs' scores there.
    np.testing.assert_allclose(chunked, expected, rtol=0, atol=SCORE_ATOL)


def test_max_batch_is_what_splits_a_call(kit_path, interpreter_calls, expected_scores, monkeypatch):
    monkeypatch.setattr(loaded_model, "MAX_BATCH", 7)
    ranker = Ranker(kit_path)
    assert ranker.info().max_batch == 7
    users, movies, expected = probe_pairs_repeated(15, expected_scores)
    before = interpreter_calls["invoke"]
    np.testing.assert_allclose(ranker.score_pairs(users, movies), expected, rtol=0, atol=SCORE_ATOL)
    assert interpreter_calls["invoke"] - before == 3  # 7 + 7 + 1


def test_threads_get_exactly_the_serial_results(kit_path, expected_scores):
    ranker = Ranker(kit_path)
    users, movies = mf.probe_pairs()
    reference = {(u, m): s for u, m, s in zip(users, movies, expected_scores[mf.KIT])}
    probe_users = sorted(set(mf.PROBE_USERS))
    # Every thread has its own users and batch sizes, so interleaving would show.
    work = {
        thread: [
            (probe_users[(thread * 5 + call) % len(probe_users)], list(mf.PROBE_MOVIES[: 1 + (thread + call) % 10]))
            for call in range(CALLS_PER_THREAD)
        ]
        for thread in range(THREADS)
    }
    serial = {thread: [ranker.score(user, movies).tolist() for user, movies in calls] for thread, calls in work.items()}
    for thread, calls in work.items():
        for (user, titles), scores in zip(calls[:20], serial[thread][:20]):
            np.testing.assert_allclose(scores, [reference[user, t] for t in titles], rtol=0, atol=SCORE_ATOL)
    parallel: dict = {}
    errors: list = []
    start = threading.Barrier(THREADS)

    def run(thread):
        try:
            start.wait()
            parallel[thread] = [ranker.score(user, movies).tolist() for user, movies in work[thread]]
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(thread,)) for thread in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert parallel == serial


def test_signature_runner_path_gives_the_reference_scores(kit_path, expected_scores, monkeypatch):
    """Models whose serving signature is not the first subgraph are run through the signature runner."""
    monkeypatch.setattr(loaded_model, "_is_first_subgraph", lambda *args: False)
    through_runner = Ranker(kit_path)
    users, movies, expected = probe_pairs_repeated(300, expected_scores)
    np.testing.assert_allclose(through_runner.score_pairs(users, movies), expected, rtol=0, atol=SCORE_ATOL)
    assert through_runner.score("42", []).shape == (0,)
    first = probe_pairs_repeated(len(mf.PROBE_MOVIES), expected_scores)[2]  # user "42" with every probe movie
    np.testing.assert_allclose(through_runner.score("42", list(mf.PROBE_MOVIES)), first, rtol=0, atol=SCORE_ATOL)

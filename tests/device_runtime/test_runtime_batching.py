"""One invocation per call, chunking above MAX_BATCH, tensors kept allocated, thread safety."""

from __future__ import annotations

import importlib
import threading

import numpy as np
import pytest

import device_runtime.ranker as ranker_module
from device_runtime import MAX_BATCH, Ranker
from tests.device_runtime import make_fixtures as mf

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


def pairs(count: int) -> tuple[list[str], list[str]]:
    users = [mf.USERS[i % len(mf.USERS)] for i in range(count)]
    movies = [mf.MOVIES[(i * 7) % len(mf.MOVIES)] for i in range(count)]
    return users, movies


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


def test_calls_above_max_batch_are_chunked_and_equal_unchunked(kit_path, interpreter_calls, monkeypatch):
    assert MAX_BATCH == 4096
    count = 2 * MAX_BATCH + 17
    users, movies = pairs(count)
    ranker = Ranker(kit_path)
    before = interpreter_calls["invoke"]
    chunked = ranker.score_pairs(users, movies)
    assert interpreter_calls["invoke"] - before == 3
    monkeypatch.setattr(ranker_module, "MAX_BATCH", count)  # one invocation for everything
    unchunked_ranker = Ranker(kit_path)
    before = interpreter_calls["invoke"]
    unchunked = unchunked_ranker.score_pairs(users, movies)
    assert interpreter_calls["invoke"] - before == 1
    assert len(chunked) == count
    np.testing.assert_array_equal(chunked, unchunked)


def test_threads_get_exactly_the_serial_results(kit_path):
    ranker = Ranker(kit_path)
    # Every thread has its own users and batch sizes, so interleaving would show.
    work = {
        thread: [
            (mf.USERS[(thread * 5 + call) % len(mf.USERS)], list(mf.MOVIES[: 1 + (thread + call) % 12]))
            for call in range(CALLS_PER_THREAD)
        ]
        for thread in range(THREADS)
    }
    serial = {thread: [ranker.score(user, movies).tolist() for user, movies in calls] for thread, calls in work.items()}
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


def test_signature_runner_path_gives_the_same_scores(kit_path, kit_ranker, monkeypatch):
    """Models whose serving signature is not the first subgraph are run through the signature runner."""
    monkeypatch.setattr(ranker_module, "_is_first_subgraph", lambda *args: False)
    through_runner = Ranker(kit_path)
    users, movies = pairs(300)
    np.testing.assert_array_equal(through_runner.score_pairs(users, movies), kit_ranker.score_pairs(users, movies))
    assert through_runner.score("42", []).shape == (0,)
    assert (
        through_runner.score("42", list(mf.MOVIES[:5])).tolist() == kit_ranker.score("42", list(mf.MOVIES[:5])).tolist()
    )

"""Hot swap: `Ranker.reload` validates a new model off the request path, then switches atomically.

Expected results come from plain interpreter calls of each model (exact) and
from the numpy references (within SCORE_ATOL); never from the Ranker itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import threading

import numpy as np
import pytest

import device_runtime.backends as backends
import device_runtime.model as loaded_model
from device_runtime import ModelLoadError, ModelMismatchError, Ranker, SignatureError
from device_runtime.backends import Backend
from tests.device_runtime import make_fixtures as mf
from tests.device_runtime.serving_reference import as_array, catalog_scores
from tests.device_runtime.tolerance import SCORE_ATOL, assert_top_k_matches

THREADS = 8
SWAPS = 50
USERS = ("42", "1", "7", "stranger")
CANDIDATES = (mf.MOVIES[5], mf.MOVIES[0], "No Such Movie (2099)", mf.MOVIES[33], mf.MOVIES[12])


class PlainModel:
    """One model run through the installed interpreter directly, as an app without the kit would."""

    def __init__(self, path, backend_name: str, serving: dict, name: str):
        interpreter = importlib.import_module(f"{backend_name}.interpreter").Interpreter(model_path=str(path))
        self.top_k = interpreter.get_signature_runner("top_k")
        self.score_rows = interpreter.get_signature_runner("score_rows")
        reference = serving["factor"][name]
        self.users, self.movies = reference["users"], reference["movies"]
        self.name = name

    def user_row(self, user: str) -> np.ndarray:
        return np.array([self.users.index(user) + 1 if user in self.users else 0], dtype=np.int32)

    def ranked(self, user: str, k: int) -> list[tuple[str, float]]:
        result = self.top_k(user_row=self.user_row(user), k=np.array([k], dtype=np.int32))
        return [(self.movies[row - 1], float(score)) for row, score in zip(result["item_rows"], result["rating"])]

    def scores(self, user: str, titles) -> list[float]:
        rows = np.array([self.movies.index(t) + 1 if t in self.movies else 0 for t in titles], dtype=np.int32)
        return [float(x) for x in self.score_rows(user_row=self.user_row(user), item_rows=rows)["rating"]]


@pytest.fixture(scope="module")
def plain(fixtures_dir, backend_name, serving) -> dict:
    models = {name: PlainModel(fixtures_dir / name, backend_name, serving, name) for name in (mf.FACTOR, mf.FACTOR_B)}
    for name, model in models.items():  # the plain calls themselves agree with numpy
        for user in USERS:
            assert_top_k_matches(model.ranked(user, 10), catalog_scores(serving, name, user), k=10)
    return models


def checksum_of(path) -> str:
    content = path.read_bytes()
    start = content.index(b'{"file_sha256": "') + len(b'{"file_sha256": "')
    return hashlib.sha256(content[:start] + b"0" * 64 + content[start + 64 :]).hexdigest()


@pytest.fixture
def bad_files(fixtures_dir, tmp_path) -> dict:
    content = bytearray((fixtures_dir / mf.FACTOR_B).read_bytes())
    position = content.index("Amélie (2001)".encode("utf-8"))
    content[position] ^= 0x01
    (tmp_path / "corrupt.tflite").write_bytes(bytes(content))
    (tmp_path / "folder.tflite").mkdir()
    return {
        "corrupt": (tmp_path / "corrupt.tflite", ModelLoadError, "is corrupt or was modified"),
        "missing": (tmp_path / "missing.tflite", ModelLoadError, "does not exist"),
        "folder": (tmp_path / "folder.tflite", ModelLoadError, "is a folder"),
        "not a model": (fixtures_dir / mf.REFERENCE, ModelLoadError, "is not a TFLite flatbuffer"),
        "wrong signature": (fixtures_dir / mf.RENAMED, SignatureError, "must have exactly the inputs"),
    }


def test_eight_threads_rank_while_the_model_is_swapped_50_times(fixtures_dir, plain, bad_files):
    """No call fails; every result is wholly model A's or model B's; bad swaps raise and the old model serves on."""
    paths = {mf.FACTOR: fixtures_dir / mf.FACTOR, mf.FACTOR_B: fixtures_dir / mf.FACTOR_B}
    expected_ranked = {(name, user): model.ranked(user, 10) for name, model in plain.items() for user in USERS}
    expected_scores = {(name, user): model.scores(user, CANDIDATES) for name, model in plain.items() for user in USERS}
    ranker = Ranker(paths[mf.FACTOR])
    prepared = ranker.candidates(CANDIDATES)  # rows of model A; model B's vocabulary orders the movies otherwise
    stop = threading.Event()
    failures: list = []
    seen = {mf.FACTOR: 0, mf.FACTOR_B: 0}
    calls = [0] * THREADS

    def serve(thread: int):
        try:
            while not stop.is_set():
                user = USERS[(thread + calls[thread]) % len(USERS)]
                ranked = ranker.rank(user, k=10)
                owners = [name for name in paths if ranked == expected_ranked[name, user]]
                scores = ranker.score(user, prepared).tolist()
                owners_of_scores = [name for name in paths if scores == expected_scores[name, user]]
                if len(owners) != 1 or len(owners_of_scores) != 1:
                    failures.append(f"thread {thread}, user {user}: a result from neither model: {ranked} {scores}")
                    return
                seen[owners[0]] += 1
                calls[thread] += 1
        except Exception as error:  # reported below
            failures.append(f"thread {thread}: {type(error).__name__}: {error}")

    workers = [threading.Thread(target=serve, args=(thread,)) for thread in range(THREADS)]
    for worker in workers:
        worker.start()
    serving_now, refused = mf.FACTOR, []
    try:
        for swap in range(SWAPS):
            if swap % 10 == 3:
                for name, (path, error, message) in bad_files.items():
                    with pytest.raises(error, match=message):
                        ranker.reload(path)
                    refused.append(name)
                    assert ranker.info().checksum == checksum_of(paths[serving_now])  # the old model serves on
            serving_now = mf.FACTOR_B if serving_now == mf.FACTOR else mf.FACTOR
            info = ranker.reload(paths[serving_now])
            assert info.model_path == str(paths[serving_now]) and info.checksum == checksum_of(paths[serving_now])
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert failures == []
    assert len(refused) == 5 * len(bad_files)
    assert min(calls) > 0 and seen[mf.FACTOR] > 0 and seen[mf.FACTOR_B] > 0, (calls, seen)


def test_a_call_in_flight_finishes_on_the_model_it_started_on(fixtures_dir, plain, monkeypatch):
    ranker = Ranker(fixtures_dir / mf.FACTOR)
    entered, release = threading.Event(), threading.Event()
    original = loaded_model.LoadedModel.top_k

    def held(self, *args):
        if not entered.is_set():
            entered.set()
            assert release.wait(30)
        return original(self, *args)

    monkeypatch.setattr(loaded_model.LoadedModel, "top_k", held)
    result = {}
    caller = threading.Thread(target=lambda: result.update(ranked=ranker.rank("42", k=10)))
    caller.start()
    assert entered.wait(30)
    ranker.reload(fixtures_dir / mf.FACTOR_B)  # while the call is inside model A
    assert ranker.rank("42", k=10) == plain[mf.FACTOR_B].ranked("42", 10)
    release.set()
    caller.join(30)
    assert result["ranked"] == plain[mf.FACTOR].ranked("42", 10)


def test_a_failed_reload_leaves_the_old_model_serving(fixtures_dir, plain, bad_files):
    ranker = Ranker(fixtures_dir / mf.FACTOR)
    before = ranker.info()
    for path, error, message in bad_files.values():
        with pytest.raises(error, match=message):
            ranker.reload(path)
        after = ranker.info()
        assert (after.model_path, after.checksum) == (before.model_path, before.checksum)
        assert after.loaded_at == before.loaded_at
        assert ranker.rank("42", k=10) == plain[mf.FACTOR].ranked("42", 10)


def test_reload_names_the_new_model_and_checks_its_vocabularies_at_once(fixtures_dir):
    ranker = Ranker(fixtures_dir / mf.FACTOR)
    before = ranker.info()
    info = ranker.reload(fixtures_dir / mf.FACTOR_B)
    assert info == ranker.info()
    assert info.model_path == str(fixtures_dir / mf.FACTOR_B)
    assert info.checksum == checksum_of(fixtures_dir / mf.FACTOR_B)
    assert info.loaded_at >= before.loaded_at and info.checksum != before.checksum
    assert info.signatures == before.signatures and "top_k_for_state" in info.signatures
    vocabularies = (ranker.manifest.user_vocabulary, ranker.manifest.movie_vocabulary)
    assert all("rows" in vars(vocabulary) for vocabulary in vocabularies)  # parsed and checked before the swap


def test_prepared_objects_across_a_reload(fixtures_dir, serving):
    ranker = Ranker(fixtures_dir / mf.FACTOR)
    prepared = ranker.candidates(list(mf.MOVIES[:8]))
    user = ranker.personalize([(mf.MOVIES[2], 5.0), (mf.MOVIES[9], 1.0)])
    ranker.reload(fixtures_dir / mf.FACTOR_B)
    expected = as_array(catalog_scores(serving, mf.FACTOR_B, "42"), mf.MOVIES[:8])
    np.testing.assert_allclose(ranker.score("42", prepared), expected, rtol=0, atol=SCORE_ATOL)  # mapped again
    with pytest.raises(ModelMismatchError, match="personalize again from the history"):
        ranker.rank(user)
    ranker.reload(fixtures_dir / mf.FACTOR)  # the same file again: the state fits
    assert ranker.rank(user, k=3)[0][1] == 5.0


def test_each_interpreter_reads_its_signature_definitions_once(fixtures_dir, backend_name, plain, monkeypatch):
    """Every native read of the signature definitions (GetSignatureDefs) leaks its dictionaries in
    tflite-runtime 2.14: a load made ten of them, about 50 KiB kept for good at every reload (the soak's
    memory grew 26 MiB over 500 reloads). Counted here on the interpreter class, after its own constructor."""
    package = backends.import_backend(Backend(backend_name))

    class Counting(package.interpreter_class):
        instances: list = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)  # its own read, if the package makes one, is not counted
            self.reads = 0
            Counting.instances.append(self)

        def get_signature_list(self):
            self.reads = getattr(self, "reads", 0) + 1
            return super().get_signature_list()

        def _get_full_signature_list(self):
            self.reads = getattr(self, "reads", 0) + 1
            return super()._get_full_signature_list()

    counting = dataclasses.replace(package, interpreter_class=Counting)
    monkeypatch.setattr(backends, "import_backend", lambda backend: counting)
    ranker = Ranker(fixtures_dir / mf.FACTOR, backend=backend_name)
    for name in (mf.FACTOR_B, mf.FACTOR):
        ranker.reload(fixtures_dir / name)
        assert ranker.rank("42", k=10) == plain[name].ranked("42", 10)
        assert ranker.score("7", list(CANDIDATES[:2])).tolist() == plain[name].scores("7", CANDIDATES[:2])
    assert [interpreter.reads for interpreter in Counting.instances] == [1, 1, 1]
    listed = Counting.instances[-1].get_signature_list()
    listed["top_k"]["inputs"].append("changed by the caller")  # a fresh copy each time, as the package gives
    assert Counting.instances[-1].get_signature_list()["top_k"]["inputs"] == ["k", "user_row"]

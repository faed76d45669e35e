"""Backends: auto order, forced choice, load diagnostics and the delegate fallback.

Failures that only some runtimes show (numpy 2 under tflite-runtime, XNNPACK
refusing int8 models, op versions newer than the runtime) are reproduced with
an interpreter class wrapping the installed one that raises the exact messages
measured on the real runtimes; the real int8 case runs too, with whichever
backend this environment has.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging

import numpy as np
import pytest

import device_runtime.backends as backends
from device_runtime import BackendError, ModelLoadError, Ranker
from device_runtime.backends import Backend
from tests.device_runtime import make_fixtures as mf
from tests.device_runtime.tolerance import SCORE_ATOL

# Messages as the real runtimes print them (measured; see the module docstring).
XNNPACK_FAILURE = (
    "failed to create XNNPACK Value for tensor -1Node number 14 (TfLiteXNNPackDelegate) failed to prepare."
)
OP_VERSION_FAILURE = (
    "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this builtin might be "
    "supported. Are you using an old TFLite binary with a newer model?\nRegistration failed.\n"
)
NUMPY2_FAILURE = (
    "<built-in method CreateWrapperFromBuffer of PyCapsule object at 0x7f43268b07b0> returned a result with an "
    "exception set"
)


@pytest.fixture
def real_package(backend_name):
    return backends.import_backend(Backend(backend_name))


def flaky_interpreter(package, fails):
    """An interpreter class whose invoke raises the XNNPACK message while `fails(self, batch)` holds.

    Interpreters created without default delegates never fail, as on LiteRT.
    Every instance is recorded with the batch sizes it invoked.
    """
    without = package.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES

    class Flaky(package.interpreter_class):
        instances: list = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.delegates_off = kwargs.get("experimental_op_resolver_type") == without
            self.batches: list[int] = []
            self.batch = 0
            Flaky.instances.append(self)

        def resize_tensor_input(self, index, size, strict=False):
            self.batch = int(size[0])
            return super().resize_tensor_input(index, size, strict)

        def invoke(self):
            self.batches.append(self.batch)
            if not self.delegates_off and fails(self, self.batch):
                raise RuntimeError(XNNPACK_FAILURE)
            return super().invoke()

    return Flaky


def use_packages(monkeypatch, packages: dict):
    """Makes `import_backend` offer exactly `packages` (Backend -> BackendPackage); records requests."""
    requested = []

    def fake_import(backend):
        requested.append(backend)
        if backend not in packages:
            raise BackendError(f"backend {backend.value!r} is not installed; {backends.INSTALL_HINT}")
        return packages[backend]

    monkeypatch.setattr(backends, "import_backend", fake_import)
    return requested


def warnings_from_runtime(caplog):
    return [r for r in caplog.records if r.name.startswith("device_runtime") and r.levelno == logging.WARNING]


# ----------------------------------------------------------------------------- choosing a backend


def test_parse_backend_accepts_values_and_members():
    assert backends.parse_backend("tflite_runtime") is Backend.TFLITE_RUNTIME
    assert backends.parse_backend(" AI_EDGE_LITERT ") is Backend.LITERT
    assert backends.parse_backend(Backend.TENSORFLOW) is Backend.TENSORFLOW
    with pytest.raises(
        BackendError, match="unknown backend 'tflite'; choose one of: auto, ai_edge_litert, tflite_runtime, tensorflow"
    ):
        backends.parse_backend("tflite")


def test_auto_prefers_litert_then_tflite_runtime_and_never_imports_tensorflow(monkeypatch, kit_path, real_package):
    as_litert = dataclasses.replace(real_package, backend=Backend.LITERT, version="litert-fake")
    as_tflite = dataclasses.replace(real_package, backend=Backend.TFLITE_RUNTIME, version="tflite-fake")
    requested = use_packages(monkeypatch, {Backend.LITERT: as_litert, Backend.TFLITE_RUNTIME: as_tflite})
    assert Ranker(kit_path).info().backend == "ai_edge_litert"
    assert requested == [Backend.LITERT]

    requested = use_packages(monkeypatch, {Backend.TFLITE_RUNTIME: as_tflite})
    info = Ranker(kit_path).info()
    assert (info.backend, info.backend_version) == ("tflite_runtime", "tflite-fake")
    assert requested == [Backend.LITERT, Backend.TFLITE_RUNTIME]


def test_no_backend_installed(monkeypatch, kit_path):
    use_packages(monkeypatch, {})
    with pytest.raises(
        ModelLoadError,
        match=r"no interpreter package is installed; pip install ai-edge-litert .*tflite-runtime \"numpy<2\"",
    ):
        Ranker(kit_path)


@pytest.mark.parametrize("name", ["ai_edge_litert", "tflite_runtime"])
def test_forced_backend_is_used_or_reported_missing(kit_path, name):
    if importlib.util.find_spec(name) is not None:
        assert Ranker(kit_path, backend=name).info().backend == name
    else:
        with pytest.raises(BackendError, match=f"backend '{name}' is not installed; pip install ai-edge-litert"):
            Ranker(kit_path, backend=name)


# ----------------------------------------------------------------------------- load diagnostics


def test_numpy2_under_tflite_runtime_is_explained(monkeypatch, kit_path, real_package):
    """tflite-runtime <= 2.14 under numpy 2: refused before it crashes; a newer, unknown build
    is tried and its SystemError explained; under numpy 1 the crash is not blamed on numpy."""
    constructed = []

    class Numpy2Crash(real_package.interpreter_class):
        def __init__(self, *args, **kwargs):
            constructed.append(self)
            raise SystemError(NUMPY2_FAILURE)

    def offer(version):
        broken = dataclasses.replace(
            real_package, backend=Backend.TFLITE_RUNTIME, version=version, interpreter_class=Numpy2Crash
        )
        use_packages(monkeypatch, {Backend.TFLITE_RUNTIME: broken})

    monkeypatch.setattr(np, "__version__", "2.1.0")
    offer("2.14.0")
    advice = (
        r'cannot load models under numpy 2.1.0 \(it was built for numpy 1\); pin "numpy<2" or install ai-edge-litert'
    )
    with pytest.raises(ModelLoadError, match=r"tflite_runtime 2.14.0 " + advice):
        Ranker(kit_path)
    with pytest.raises(ModelLoadError, match=advice):
        Ranker(kit_path, backend="tflite_runtime")
    assert constructed == []

    offer("2.99.0")
    with pytest.raises(ModelLoadError, match=r"tflite_runtime 2.99.0 " + advice):
        Ranker(kit_path)
    assert len(constructed) == 1

    monkeypatch.setattr(np, "__version__", "1.26.4")
    offer("2.14.0")
    with pytest.raises(ModelLoadError) as caught:
        Ranker(kit_path)
    assert "numpy<2" not in str(caught.value) and "returned a result with an exception set" in str(caught.value)


def test_auto_moves_on_when_a_backend_cannot_load_the_model(monkeypatch, kit_path, real_package, caplog):
    class Numpy2Crash(real_package.interpreter_class):
        def __init__(self, *args, **kwargs):
            raise SystemError(NUMPY2_FAILURE)

    broken = dataclasses.replace(
        real_package, backend=Backend.TFLITE_RUNTIME, version="2.14.0", interpreter_class=Numpy2Crash
    )
    last_resort = dataclasses.replace(real_package, backend=Backend.TENSORFLOW, version="tf-fake")
    use_packages(monkeypatch, {Backend.TFLITE_RUNTIME: broken, Backend.TENSORFLOW: last_resort})
    monkeypatch.setattr(np, "__version__", "2.1.0")
    with caplog.at_level(logging.WARNING):
        ranker = Ranker(kit_path)
    assert ranker.info().backend == "tensorflow"
    (warning,) = warnings_from_runtime(caplog)
    assert "cannot load models under numpy 2.1.0" in warning.getMessage()
    assert "using tensorflow tf-fake instead" in warning.getMessage()


def test_op_version_too_new_names_op_version_and_runtime(monkeypatch, fixtures_dir, real_package):
    class OldRuntime(real_package.interpreter_class):
        def __init__(self, *args, **kwargs):
            raise ValueError(OP_VERSION_FAILURE)

    old = dataclasses.replace(
        real_package, backend=Backend.TFLITE_RUNTIME, version="2.14.0", interpreter_class=OldRuntime
    )
    use_packages(monkeypatch, {Backend.TFLITE_RUNTIME: old})
    monkeypatch.setattr(np, "__version__", "1.26.4")  # as tflite-runtime 2.14 needs
    with pytest.raises(
        ModelLoadError,
        match=r"kit_int8.tflite needs FULLY_CONNECTED version 12, which tflite_runtime 2.14.0 does not support; "
        r"convert the model for that runtime .* or install ai-edge-litert",
    ):
        Ranker(fixtures_dir / mf.INT8)


def test_other_load_failures_keep_the_runtime_message(monkeypatch, kit_path, real_package):
    class Refuses(real_package.interpreter_class):
        def __init__(self, *args, **kwargs):
            raise ValueError("Model provided has model identifier 'XYZ', should be 'TFL3'\n")

    use_packages(
        monkeypatch,
        {Backend.LITERT: dataclasses.replace(real_package, backend=Backend.LITERT, interpreter_class=Refuses)},
    )
    with pytest.raises(
        ModelLoadError,
        match=r"ai_edge_litert .* could not load .*kit.tflite: Model provided has model identifier 'XYZ'",
    ):
        Ranker(kit_path)


def test_int8_model_on_the_installed_backend(fixtures_dir, backend_name, expected_scores, caplog):
    """LiteRT: falls back from XNNPACK with one warning. tflite-runtime 2.14: FULLY_CONNECTED v12 is refused."""
    path = fixtures_dir / mf.INT8
    if backend_name == "tflite_runtime":
        with pytest.raises(
            ModelLoadError, match=r"needs FULLY_CONNECTED version 12, which tflite_runtime 2.14.0 does not support"
        ):
            Ranker(path)
        return
    with caplog.at_level(logging.WARNING):
        ranker = Ranker(path)
    info = ranker.info()
    assert info.delegates == "none"
    assert "XNNPACK" in info.delegate_fallback
    (warning,) = warnings_from_runtime(caplog)
    assert "XNNPACK" in warning.getMessage() and "slower" in warning.getMessage()
    users, movies = mf.probe_pairs()
    np.testing.assert_allclose(ranker.score_pairs(users, movies), expected_scores[mf.INT8], rtol=0, atol=SCORE_ATOL)


# ----------------------------------------------------------------------------- delegate fallback


def test_delegate_failure_at_load_falls_back_once(monkeypatch, kit_path, real_package, reference, caplog):
    Flaky = flaky_interpreter(real_package, fails=lambda interpreter, batch: True)
    use_packages(monkeypatch, {real_package.backend: dataclasses.replace(real_package, interpreter_class=Flaky)})
    with caplog.at_level(logging.WARNING):
        ranker = Ranker(kit_path)
        users, movies = mf.probe_pairs()
        scores = ranker.score_pairs(users, movies)
        ranker.score("42", ["Speed (1994)"])
    info = ranker.info()
    assert info.delegates == "none" and info.delegate_fallback == " ".join(XNNPACK_FAILURE.split())
    assert len(warnings_from_runtime(caplog)) == 1
    first, second = Flaky.instances
    assert first.batches == [1]  # the failed warm-up; never used again
    assert not first.delegates_off and second.delegates_off
    np.testing.assert_allclose(scores, reference["litert_builtin_scores"][mf.KIT], rtol=0, atol=SCORE_ATOL)


def test_delegate_failure_at_a_later_batch_size_recovers(monkeypatch, kit_path, real_package, reference, caplog):
    Flaky = flaky_interpreter(real_package, fails=lambda interpreter, batch: batch > 1)
    use_packages(monkeypatch, {real_package.backend: dataclasses.replace(real_package, interpreter_class=Flaky)})
    with caplog.at_level(logging.WARNING):
        ranker = Ranker(kit_path)
        assert ranker.info().delegates == "default"
        users, movies = mf.probe_pairs()
        scores = ranker.score_pairs(users, movies)
        again = ranker.score_pairs(users, movies)
    assert scores.tolist() == again.tolist()  # same interpreter, same batch: deterministic
    np.testing.assert_allclose(scores, reference["litert_builtin_scores"][mf.KIT], rtol=0, atol=SCORE_ATOL)
    info = ranker.info()
    assert info.delegates == "none" and "XNNPACK" in info.delegate_fallback
    assert len(warnings_from_runtime(caplog)) == 1
    assert Flaky.instances[0].batches == [1, len(users)]
    assert all(instance.delegates_off for instance in Flaky.instances[1:])


def test_when_the_fallback_fails_too_nothing_is_returned(monkeypatch, kit_path, real_package):
    class Broken(real_package.interpreter_class):
        def invoke(self):
            raise RuntimeError("Node number 3 (FULLY_CONNECTED) failed to invoke. delegate or not")

    use_packages(monkeypatch, {real_package.backend: dataclasses.replace(real_package, interpreter_class=Broken)})
    with pytest.raises(
        ModelLoadError, match=r"could not run .*kit.tflite: Node number 3 \(FULLY_CONNECTED\) failed to invoke"
    ):
        Ranker(kit_path)


def test_a_runtime_failure_during_a_call_is_a_backend_error(monkeypatch, kit_path, real_package, expected_scores):
    class FailsAtFive(real_package.interpreter_class):
        def resize_tensor_input(self, index, size, strict=False):
            self.batch = int(size[0])
            return super().resize_tensor_input(index, size, strict)

        def invoke(self):
            if getattr(self, "batch", 0) == 5:
                raise RuntimeError("tensor allocation failed")
            return super().invoke()

    use_packages(monkeypatch, {real_package.backend: dataclasses.replace(real_package, interpreter_class=FailsAtFive)})
    ranker = Ranker(kit_path)
    with pytest.raises(BackendError, match=r"failed to score 5 pairs with .*kit.tflite: tensor allocation failed"):
        ranker.score("42", mf.MOVIES[:5])
    # The Ranker stays usable for other calls.
    users, movies = mf.probe_pairs()
    expected = [score for user, movie, score in zip(users, movies, expected_scores[mf.KIT]) if user == "42"][:3]
    assert movies[:3] == list(mf.MOVIES[:3])
    np.testing.assert_allclose(ranker.score("42", mf.MOVIES[:3]), expected, rtol=0, atol=SCORE_ATOL)

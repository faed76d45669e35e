"""Scoring helpers that use TensorFlow and LiteRT directly, independent of the converter.

`independent_figures` recomputes a converted file's parity figures here, from
TensorFlow's and LiteRT's own scores and the textbook definitions (not the
converter's `convert.parity`), so a test can hold the file itself to a bound.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

TOP_K = 10


def _serving(saved_model: str):
    return _loaded(saved_model).signatures["serving_default"]


def saved_model_scores(saved_model: Path, users, items, user_input="user_id", item_input="movie_title") -> np.ndarray:
    """Scores with TensorFlow directly, as the tutorial does after loading."""
    import tensorflow as tf

    outputs = _serving(str(saved_model))(**{user_input: tf.constant(list(users)), item_input: tf.constant(list(items))})
    (scores,) = outputs.values()
    return scores.numpy().reshape(-1)


def litert_scores(
    model_path: Path, users, items, user_input="user_id", item_input="movie_title", delegates=True
) -> np.ndarray:
    """Scores with LiteRT through the signature runner, inputs by name."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runner = Interpreter(model_path=str(model_path), experimental_op_resolver_type=resolver).get_signature_runner(
        "serving_default"
    )
    outputs = runner(
        **{
            user_input: np.array([u.encode("utf-8") for u in users], dtype=object),
            item_input: np.array([i.encode("utf-8") for i in items], dtype=object),
        }
    )
    (scores,) = outputs.values()
    return np.asarray(scores).reshape(-1)


def kendall_tau_b_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b over all pairs i < j, straight from its definition (O(n^2) memory)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    upper = np.triu_indices(len(x), k=1)
    sign_x = np.sign(x[:, None] - x[None, :])[upper]
    sign_y = np.sign(y[:, None] - y[None, :])[upper]
    return float(np.sum(sign_x * sign_y) / np.sqrt(np.sum(sign_x != 0) * np.sum(sign_y != 0)))


def independent_figures(export: Path, tflite_path: Path, test_split, ranking_users: int = 8, delegates=True) -> dict:
    """A .tflite's parity figures against its SavedModel, computed here.

    Args:
        export: a `python -m train` export folder (saved_model/ and vocab/movies.txt).
        tflite_path: the converted file.
        test_split: the tutorial's test rows (user_id, movie_title, user_rating).
        ranking_users: how many test users (the first, in sorted order) rank every movie.
        delegates: run LiteRT with its default delegates (XNNPACK) or builtin kernels only.

    Returns:
        max_abs_diff and rmse_diff over every test pair; the mean top-10 overlap
        and Kendall's tau-b of the ranked users.
    """
    saved_model = export / "saved_model"
    users, items = list(test_split.user_id), list(test_split.movie_title)
    truth = np.asarray(test_split.user_rating, np.float64)
    reference = saved_model_scores(saved_model, users, items).astype(np.float64)
    candidate = litert_scores(tflite_path, users, items, delegates=delegates).astype(np.float64)
    rmse_reference = np.sqrt(np.mean((reference - truth) ** 2))
    rmse_candidate = np.sqrt(np.mean((candidate - truth) ** 2))

    movies = (export / "vocab" / "movies.txt").read_text(encoding="utf-8").splitlines()
    overlaps, taus = [], []
    for user in sorted(set(users))[:ranking_users]:
        expected = saved_model_scores(saved_model, [user] * len(movies), movies)
        actual = litert_scores(tflite_path, [user] * len(movies), movies, delegates=delegates)
        best_expected = set(np.argsort(-expected, kind="stable")[:TOP_K].tolist())
        best_actual = set(np.argsort(-actual, kind="stable")[:TOP_K].tolist())
        overlaps.append(len(best_expected & best_actual) / TOP_K)
        taus.append(kendall_tau_b_by_definition(expected, actual))
    return {
        "max_abs_diff": float(np.max(np.abs(candidate - reference))),
        "rmse_diff": float(abs(rmse_candidate - rmse_reference)),
        "top10_overlap": float(np.mean(overlaps)),
        "kendall_tau": float(np.mean(taus)),
    }


def rows(*values) -> np.ndarray:
    """Table rows (or k) as the index-space signatures take them: int32."""
    return np.asarray(values, np.int32)


def litert_signature(model_path: Path, key: str, delegates=True, **inputs) -> dict:
    """Calls one signature of a .tflite with LiteRT, inputs by name (strings as UTF-8 bytes)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runner = Interpreter(model_path=str(model_path), experimental_op_resolver_type=resolver).get_signature_runner(key)
    return {name: np.asarray(value) for name, value in runner(**_utf8(inputs)).items()}


def tensorflow_lite_signature(model_path: Path, key: str, **inputs) -> dict:
    """The same call with TensorFlow's own tf.lite interpreter: another runtime, for cross-checks."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = tf.lite.Interpreter(model_path=str(model_path)).get_signature_runner(key)
    return {name: np.asarray(value) for name, value in runner(**_utf8(inputs)).items()}


def saved_model_signature(saved_model: Path, key: str, **inputs) -> dict:
    """Calls one signature of a SavedModel with TensorFlow directly."""
    import tensorflow as tf

    function = _loaded(str(saved_model)).signatures[key]
    return {name: value.numpy() for name, value in function(**{n: tf.constant(v) for n, v in inputs.items()}).items()}


@functools.lru_cache(maxsize=4)
def _loaded(saved_model: str):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    return tf.saved_model.load(saved_model)


def _utf8(inputs: dict) -> dict:
    """String inputs as arrays of UTF-8 bytes, as the interpreters take them; other inputs unchanged."""
    return {
        name: np.array([v.encode("utf-8") for v in value], dtype=object)
        if np.asarray(value).dtype.kind in "OU"
        else value
        for name, value in inputs.items()
    }


def buffers_and_readers(path):
    """Buffer index -> (its bytes, [(subgraph, tensor type, scales)] of every tensor reading it), via TF's schema."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(path.read_bytes()))
    readers = {}
    for index, subgraph in enumerate(model.subgraphs):
        for tensor in subgraph.tensors:
            data = model.buffers[tensor.buffer].data if tensor.buffer else None
            if data is not None and len(data):
                scales = (
                    tuple(tensor.quantization.scale)
                    if tensor.quantization and tensor.quantization.scale is not None
                    else ()
                )
                readers.setdefault(tensor.buffer, (bytes(np.asarray(data, np.uint8)), []))[1].append(
                    (index, tensor.type, scales)
                )
    return readers

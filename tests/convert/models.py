"""Small SavedModels and flatbuffers that the converter must accept or refuse.

Each builder needs TensorFlow; call them only from tests marked
`@pytest.mark.tensorflow`.
"""

from __future__ import annotations

import os
from pathlib import Path


def _tf():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    return tf


def _string_spec(tf, name):
    return tf.TensorSpec([None], tf.string, name=name)


def renamed_inputs_saved_model(source_saved_model: Path, path: Path) -> Path:
    """Wraps a kit SavedModel so its inputs are `uid` and `title` and its output `score`."""
    tf = _tf()
    inner = tf.saved_model.load(str(source_saved_model))
    serving = inner.signatures["serving_default"]

    class Renamed(tf.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[_string_spec(tf, "uid"), _string_spec(tf, "title")])
        def serve(self, uid, title):
            return {"score": serving(user_id=uid, movie_title=title)["rating"]}

    module = Renamed()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


def _constant_model(tf, input_signature, signature_key: str, path: Path) -> Path:
    class Constant(tf.Module):
        @tf.function(input_signature=input_signature)
        def serve(self, user_id, movie_title):
            return {"rating": tf.zeros_like(tf.strings.as_string(user_id), dtype=tf.float32) + 3.0}

    module = Constant()
    tf.saved_model.save(module, str(path), signatures={signature_key: module.serve})
    return Path(path)


def saved_model_without_serving_default(path: Path) -> Path:
    """Right inputs and output, but the signature is called `predict`."""
    tf = _tf()
    return _constant_model(tf, [_string_spec(tf, "user_id"), _string_spec(tf, "movie_title")], "predict", path)


def saved_model_with_integer_user_ids(path: Path) -> Path:
    """`serving_default` whose `user_id` input is int64 instead of a string."""
    tf = _tf()
    specs = [tf.TensorSpec([None], tf.int64, name="user_id"), _string_spec(tf, "movie_title")]
    return _constant_model(tf, specs, "serving_default", path)


def flex_saved_model(path: Path) -> Path:
    """The contract's signature, computed with string ops TFLite has no builtin for."""
    tf = _tf()

    class NeedsFlex(tf.Module):
        @tf.function(input_signature=[_string_spec(tf, "user_id"), _string_spec(tf, "movie_title")])
        def serve(self, user_id, movie_title):
            digits_removed = tf.strings.regex_replace(movie_title, "[0-9]", "")
            length = tf.strings.length(digits_removed) + tf.strings.length(user_id)
            return {"rating": tf.cast(length, tf.float32)}

    module = NeedsFlex()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


def flex_flatbuffer(saved_model: Path) -> bytes:
    """Converts `flex_saved_model` allowing SELECT_TF_OPS, as the converter must not."""
    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return bytes(converter.convert())


def write_grouplens_folder(folder: Path, first_user: int = 9001, users: int = 100, movies: int = 50) -> Path:
    """An ml-100k-style folder (u.data, u.item, u.user) with 100,000 ratings of ids no kit model knows."""
    folder.mkdir(parents=True, exist_ok=True)
    user_ids = [str(first_user + i) for i in range(users)]
    (folder / "u.user").write_text("".join(f"{u}|30|M|other|00000\n" for u in user_ids), encoding="utf-8")
    (folder / "u.item").write_text(
        "".join(f"{i}|Synthetic Film {i} (2001)|01-Jan-2001||http://example.invalid\n" for i in range(1, movies + 1)),
        encoding="latin-1",
    )
    rows = [f"{user_ids[n % users]}\t{1 + (n * 7) % movies}\t{1 + n % 5}\t{880000000 + n}\n" for n in range(100_000)]
    (folder / "u.data").write_text("".join(rows), encoding="utf-8")
    return folder


# What `defective_factor_saved_model` can break, each a mistake the converter must name in one line.
SIGNATURE_DEFECTS = (
    "partial personalized set",
    "partial index set",
    "renamed index input",
    "wrong index dtype",
    "missing personalized output",
    "serve endpoint",
)


def defective_factor_saved_model(path: Path, defect: str) -> Path:
    """A tiny `FactorServing` export with one of `SIGNATURE_DEFECTS`; its strings signature is sound."""
    tf = _tf()
    import numpy as np

    from device_runtime import contract
    from train.serving import FactorServing, FactorTables, FoldIn

    def table(*shape):
        values = np.full(shape, 0.1, np.float32)
        values[0] = 0.0
        return values

    tables = FactorTables(3.5, table(4), table(5), table(4, 2), table(5, 2), ("1", "2", "3"), ("A", "B", "C", "D"))
    module = FactorServing(tables, FoldIn(1.0, 1.0))
    signatures = module.signatures()
    int32 = tf.TensorSpec([None], tf.int32, name="rows")
    user_row = tf.TensorSpec([1], tf.int32, name=contract.USER_ROW)
    if defect == "partial personalized set":
        del signatures[contract.SCORE_ROWS_FOR_STATE], signatures[contract.TOP_K_FOR_STATE]
    elif defect == "partial index set":
        del signatures[contract.TOP_K]
    elif defect == "renamed index input":
        signatures[contract.SCORE_ROWS] = tf.function(
            lambda user_row, rows: module.score_rows(user_row, rows), input_signature=[user_row, int32]
        )
    elif defect == "wrong index dtype":
        k64 = tf.TensorSpec([1], tf.int64, name=contract.K)
        signatures[contract.TOP_K] = tf.function(
            lambda user_row, k: module.top_k(user_row, tf.cast(k, tf.int32)), input_signature=[user_row, k64]
        )
    elif defect == "missing personalized output":
        titles = tf.TensorSpec([None], tf.string, name=contract.HISTORY_TITLES)
        ratings = tf.TensorSpec([None], tf.float32, name=contract.HISTORY_RATINGS)
        signatures[contract.USER_STATE] = tf.function(
            lambda history_titles, history_ratings: {
                contract.USER_VECTOR: module.user_state(history_titles, history_ratings)[contract.USER_VECTOR]
            },
            input_signature=[titles, ratings],
        )
    elif defect == "serve endpoint":
        module.serve = module.score_strings  # what a Keras `model.export` artifact has
    else:
        raise ValueError(f"unknown defect {defect!r}; choose from {SIGNATURE_DEFECTS}")
    tf.saved_model.save(module, str(path), signatures=signatures)
    return Path(path)

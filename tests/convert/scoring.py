"""Scoring helpers that use TensorFlow and LiteRT directly, independent of the converter."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def saved_model_scores(saved_model: Path, users, items, user_input="user_id", item_input="movie_title") -> np.ndarray:
    """Scores with TensorFlow directly, as the tutorial does after loading."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    serving = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    outputs = serving(**{user_input: tf.constant(list(users)), item_input: tf.constant(list(items))})
    (scores,) = outputs.values()
    return scores.numpy().reshape(-1)


def litert_scores(model_path: Path, users, items, user_input="user_id", item_input="movie_title", delegates=True) -> np.ndarray:
    """Scores with LiteRT through the signature runner, inputs by name."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runner = Interpreter(model_path=str(model_path), experimental_op_resolver_type=resolver).get_signature_runner()
    outputs = runner(
        **{
            user_input: np.array([u.encode("utf-8") for u in users], dtype=object),
            item_input: np.array([i.encode("utf-8") for i in items], dtype=object),
        }
    )
    (scores,) = outputs.values()
    return np.asarray(scores).reshape(-1)

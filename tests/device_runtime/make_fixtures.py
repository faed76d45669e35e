"""Builds the .tflite files the device runtime tests need (main environment only).

The device environment has no TensorFlow, so CI runs this first, in the main
environment, and hands the folder over through `KIT_DEVICE_FIXTURES`:

    python -m tests.device_runtime.make_fixtures DIR
    KIT_DEVICE_FIXTURES=DIR .venv-device/bin/python -m pytest tests/device_runtime -m "not tensorflow"

The models are tiny but real: StringLookup -> 32-d Embedding -> Dense 256/64/1,
the tutorial's architecture, with random (seeded) weights over a small
vocabulary. Besides the models, `reference.json` stores the vocabularies, a
fixed probe set and the scores TensorFlow's own interpreter and LiteRT gave on
it, so the device environment can compare tflite-runtime against them.

The kit's multi-signature models (factor and tower, `train.serving`) and their
independent references (under "serving") come from `serving_fixtures.py`.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

# TFRS-era Keras 2 layers; must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tests.device_runtime import serving_fixtures  # noqa: E402  (after the Keras switch)

KIT = "kit.tflite"  # kit signature, manifest with vocabularies embedded
FLOAT16 = "kit_float16.tflite"  # same model, float16 weights, manifest
INT8 = "kit_int8.tflite"  # same model, dynamic-range int8, manifest
TUTORIAL = "tutorial.tflite"  # exported like the tutorial: output_1 [N, 1], no manifest
RENAMED = "renamed.tflite"  # inputs uid/title, output score [N], no manifest
WRONG_SIGNATURE = "wrong_signature.tflite"  # one string input, not a ranking model
BAD_MANIFEST = "bad_manifest.tflite"  # kit model whose embedded manifest is not JSON
REFERENCE = "reference.json"
# Models with every contract signature (strings, index space, personalized): see serving_fixtures.py.
FACTOR, FACTOR_B, FACTOR_FLOAT16, TOWER, TOWER_FLOAT16 = serving_fixtures.SERVING_MODELS
ALL_MODELS = (KIT, FLOAT16, INT8, TUTORIAL, RENAMED, WRONG_SIGNATURE, BAD_MANIFEST) + serving_fixtures.SERVING_MODELS

USERS = tuple(str(n) for n in range(1, 41)) + ("42", "user é", "ユーザー")
MOVIES = (
    "Speed (1994)",
    "M*A*S*H (1970)",
    "Dances with Wolves (1990)",
    "One Flew Over the Cuckoo's Nest (1975)",
    "Amélie (2001)",
    "千と千尋の神隠し (2001)",
) + tuple(f"Movie {n} (19{n % 100:02d})" for n in range(1, 55))
EMBEDDING_DIMENSION = 32
SEED = 7

# Pairs scored for the reference: known, unknown, unicode and empty ids.
PROBE_USERS = ("42", "1", "user é", "ユーザー", "no-such-user", "42")
PROBE_MOVIES = MOVIES[:8] + ("No Such Movie (2099)", "")


def probe_pairs() -> tuple[list[str], list[str]]:
    """Every probe user with every probe movie, in a fixed order."""
    users = [u for u in PROBE_USERS for _ in PROBE_MOVIES]
    movies = [m for _ in PROBE_USERS for m in PROBE_MOVIES]
    return users, movies


def _tower(tf_keras, vocabulary, seed):
    return tf_keras.Sequential(
        [
            tf_keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None),
            tf_keras.layers.Embedding(
                len(vocabulary) + 1,
                EMBEDDING_DIMENSION,
                embeddings_initializer=tf_keras.initializers.RandomNormal(stddev=0.5, seed=seed),
            ),
        ]
    )


def _build_towers(seed: int = SEED):
    import tensorflow as tf
    import tf_keras

    tf.random.set_seed(seed)
    users = _tower(tf_keras, USERS, seed)
    movies = _tower(tf_keras, MOVIES, seed + 1)
    init = tf_keras.initializers.GlorotUniform
    ratings = tf_keras.Sequential(
        [
            tf_keras.layers.Dense(256, activation="relu", kernel_initializer=init(seed + 2)),
            tf_keras.layers.Dense(64, activation="relu", kernel_initializer=init(seed + 3)),
            tf_keras.layers.Dense(
                1, kernel_initializer=init(seed + 4), bias_initializer=tf_keras.initializers.Constant(3.5)
            ),
        ]
    )
    return users, movies, ratings


def _save_named(path: Path, user_name: str, item_name: str, output_name: str, squeeze: bool) -> None:
    """Saves a tf.Module whose serving_default uses the given tensor names."""
    import tensorflow as tf

    user_tower, movie_tower, ratings = _build_towers()

    class Ranking(tf.Module):
        def __init__(self):
            super().__init__()
            self.user_tower, self.movie_tower, self.ratings = user_tower, movie_tower, ratings

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name=user_name),
                tf.TensorSpec([None], tf.string, name=item_name),
            ]
        )
        def serve(self, user, item):
            scores = self.ratings(tf.concat([self.user_tower(user), self.movie_tower(item)], axis=1))
            return {output_name: tf.squeeze(scores, axis=1) if squeeze else scores}

    module = Ranking()
    # Argument names become the signature's input names.
    function = module.serve.get_concrete_function()
    tf.saved_model.save(module, str(path), signatures={"serving_default": function})


def _save_wrong_signature(path: Path) -> None:
    import tensorflow as tf
    import tf_keras

    class Query(tf.Module):
        def __init__(self):
            super().__init__()
            self.lookup = tf_keras.layers.StringLookup(vocabulary=list(MOVIES), mask_token=None)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="query")])
        def serve(self, query):
            return {"score": tf.cast(self.lookup(query), tf.float32)}

    module = Query()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve.get_concrete_function()})


def save_tutorial_style(path: Path) -> None:
    """Exports a tf_keras model the way the tutorial does: `tf.saved_model.save(model, path)`.

    The model takes a dict {"user_id", "movie_title"} and returns [N, 1], so the
    serving signature's only output is `output_1` of shape [N, 1].
    """
    import tensorflow as tf
    import tf_keras

    user_tower, movie_tower, ratings = _build_towers()

    class TutorialRanking(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.user_embeddings, self.movie_embeddings, self.ratings = user_tower, movie_tower, ratings

        def call(self, features):
            user = self.user_embeddings(features["user_id"])
            movie = self.movie_embeddings(features["movie_title"])
            return self.ratings(tf.concat([user, movie], axis=1))

    model = TutorialRanking()
    model({"user_id": tf.constant(["42", "1"]), "movie_title": tf.constant(["Speed (1994)", "x"])})
    tf.saved_model.save(model, str(path))


def _convert(saved_model: Path, quantization: str = "none") -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _with_manifest(tflite: bytes, quantization: str) -> bytes:
    import tensorflow as tf

    from convert.manifest_embedding import embed_manifest
    from device_runtime.manifest import Manifest
    from device_runtime.signature import ITEM_INPUT, OUTPUT, SIGNATURE_KEY, USER_INPUT, SignatureMapping

    manifest = Manifest.create(
        users=USERS,
        movies=MOVIES,
        model_name="device-runtime-fixture",
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorflow_version=tf.__version__,
        quantization=quantization,
        signature=SignatureMapping(SIGNATURE_KEY, USER_INPUT, ITEM_INPUT, OUTPUT, (-1,)),
        signatures=(SIGNATURE_KEY,),
        state_dimension=None,
        training_metrics={"test_rmse": None, "note": "random weights, test fixture"},
    )
    return embed_manifest(tflite, manifest)


class _MalformedManifest:
    """Stands in for a Manifest whose JSON is cut off (sealed with a valid checksum, so only the JSON is wrong)."""

    from device_runtime.manifest import CHECKSUM_PLACEHOLDER as file_sha256

    def to_json_bytes(self) -> bytes:
        from device_runtime.manifest import CHECKSUM_PREFIX

        return CHECKSUM_PREFIX + self.file_sha256.encode("ascii") + b'", "model_name": "cut off'

    @staticmethod
    def vocabulary_bytes() -> dict:
        return {}


def _scores(interpreter_class, path: Path, users, movies, names, **options) -> list[float]:
    """Scores pairs with a plain interpreter, written independently of the Ranker."""
    import numpy as np

    user_name, item_name, output_name = names
    interpreter = interpreter_class(model_path=str(path), **options)
    runner = interpreter.get_signature_runner("serving_default")
    result = runner(**{user_name: np.array(users, dtype=object), item_name: np.array(movies, dtype=object)})
    return [float(x) for x in np.asarray(result[output_name], dtype=np.float32).reshape(-1)]


def build_fixtures(out_dir: Path) -> Path:
    """Writes every fixture model and reference.json into `out_dir`.

    Args:
        out_dir: the folder to fill (created if missing).

    Returns:
        out_dir.
    """
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
    from ai_edge_litert.interpreter import OpResolverType

    from device_runtime.files import write_atomically

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kit_names = ("user_id", "movie_title", "rating")
    renamed_names = ("uid", "title", "score")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        _save_named(scratch / "kit", *kit_names, squeeze=True)
        _save_named(scratch / "renamed", *renamed_names, squeeze=True)
        save_tutorial_style(scratch / "tutorial")
        _save_wrong_signature(scratch / "wrong")
        from convert.manifest_embedding import embed_manifest

        plain_kit = _convert(scratch / "kit")
        files = {
            KIT: _with_manifest(plain_kit, "none"),
            BAD_MANIFEST: embed_manifest(plain_kit, _MalformedManifest()),
            FLOAT16: _with_manifest(_convert(scratch / "kit", "float16"), "float16"),
            INT8: _with_manifest(_convert(scratch / "kit", "dynamic-int8"), "dynamic-int8"),
            TUTORIAL: _convert(scratch / "tutorial"),
            RENAMED: _convert(scratch / "renamed"),
            WRONG_SIGNATURE: _convert(scratch / "wrong"),
        }
    for name, content in files.items():
        write_atomically(out_dir / name, content)

    users, movies = probe_pairs()
    names = {
        KIT: kit_names,
        FLOAT16: kit_names,
        INT8: kit_names,
        TUTORIAL: ("user_id", "movie_title", "output_1"),
        RENAMED: renamed_names,
    }
    no_delegates = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    reference = {
        "tensorflow_version": tf.__version__,
        "users": list(USERS),
        "movies": list(MOVIES),
        "probe_users": users,
        "probe_movies": movies,
        # LiteRT's default (XNNPACK) cannot run the int8 model, so it is scored without delegates.
        "litert_scores": {
            name: _scores(LiteRTInterpreter, out_dir / name, users, movies, n, **(no_delegates if name == INT8 else {}))
            for name, n in names.items()
        },
        "litert_builtin_scores": {
            name: _scores(LiteRTInterpreter, out_dir / name, users, movies, n, **no_delegates)
            for name, n in names.items()
        },
    }
    reference["serving"] = serving_fixtures.build_serving_fixtures(out_dir)
    write_atomically(out_dir / REFERENCE, json.dumps(reference, ensure_ascii=False, indent=1).encode("utf-8"))
    return out_dir


def missing_fixtures(folder: Path) -> list[str]:
    """The files `build_fixtures` writes that `folder` lacks (all of them when it does not exist)."""
    return [name for name in ALL_MODELS + (REFERENCE,) if not (Path(folder) / name).is_file()]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.device_runtime.make_fixtures DIR", file=sys.stderr)
        return 2
    folder = build_fixtures(Path(argv[0]))
    print(f"wrote device runtime fixtures to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

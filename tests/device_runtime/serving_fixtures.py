"""Small real kit models that answer every contract signature, and their independent references.

Built by `make_fixtures.build_fixtures` in the main environment (TensorFlow):

- `factor.tflite`: `train.serving.FactorServing` over seeded random `FactorTables`
  (the fixtures' 43 users and 60 movies, D = 8), all seven signatures.
- `factor_b.tflite`: another factor model (other tables, the movies in another
  row order), for hot swaps and for candidate sets that must be re-mapped.
- `factor_float16.tflite`: `factor.tflite` with float16 weights.
- `tower.tflite` / `tower_float16.tflite`: `train.serving.TowerServing` over the
  tutorial's tower (strings + index space, no personalization).

Each is converted with `TFLiteConverter.from_saved_model(dir, signature_keys=[...])`
(builtin ops only) and sealed with `embed_manifest` and a `Manifest` listing its
signatures. The references stored in reference.json never come from the runtime:
factor scores from numpy over the tables (`FactorTables.ratings`), user states from
a numpy ridge solve of hand-cleaned histories, tower scores from plain interpreter
calls of the strings signature.
"""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import numpy as np

FACTOR = "factor.tflite"
FACTOR_B = "factor_b.tflite"
FACTOR_FLOAT16 = "factor_float16.tflite"
TOWER = "tower.tflite"
TOWER_FLOAT16 = "tower_float16.tflite"
SERVING_MODELS = (FACTOR, FACTOR_B, FACTOR_FLOAT16, TOWER, TOWER_FLOAT16)
FACTOR_MODELS = (FACTOR, FACTOR_B, FACTOR_FLOAT16)

DIMENSION = 8
VECTOR_RIDGE = 1.5
BIAS_RIDGE = 4.0
GLOBAL_MEAN = 3.5
SEED_A, SEED_B = 11, 23
# Movies (positions in make_fixtures.MOVIES) whose bias pins every score to 5 or to 1:
# exact ties on every runtime, to check the documented tie order.
TOP_TIED = (6, 30)
BOTTOM_TIED = (11, 49)
TIE_BIAS = 10.0
UNKNOWN_TITLE = "No Such Movie (2099)"
TRUNCATED_MAX_HISTORY = 3  # the limit the "truncated" history is cleaned under


def _movies():
    from tests.device_runtime.make_fixtures import MOVIES

    return MOVIES


def movies_of_b() -> tuple[str, ...]:
    """Model B's movie vocabulary: the same titles in another (seeded) order."""
    movies = _movies()
    order = np.random.default_rng(SEED_B).permutation(len(movies))
    return tuple(movies[i] for i in order)


def _histories() -> dict:
    """Named raw histories, each with the cleaned history the Ranker must send (written out by hand)."""
    m = _movies()
    mixed = [(m[1], 4.0), (UNKNOWN_TITLE, 5.0), (m[2], 1.0), (m[1], 2.0), (m[3], 3.5), (m[5], 5), (m[8], 4.5)]
    return {
        "empty": {"raw": [], "cleaned": [], "unknown": []},
        "one": {"raw": [(m[0], 5.0)], "cleaned": [(m[0], 5.0)], "unknown": []},
        # m[1] is rated twice (its last rating, 2.0, counts); one unknown title is skipped.
        "mixed": {
            "raw": mixed,
            "cleaned": [(m[2], 1.0), (m[1], 2.0), (m[3], 3.5), (m[5], 5.0), (m[8], 4.5)],
            "unknown": [UNKNOWN_TITLE],
        },
        # 30 titles, none of the tied rows (their bias of 10 would make the solve ill-conditioned).
        "long": {"raw": _long(m), "cleaned": _long(m), "unknown": []},
        # Under MAX_HISTORY = TRUNCATED_MAX_HISTORY: 5 distinct known titles (m[14] rated twice),
        # the 3 most recent kept.
        "truncated": {
            "raw": [(m[13], 2.0), (m[14], 5.0), (m[15], 4.0), ("Unknown", 4.0), (m[16], 1.0), (m[14], 3.0)]
            + [(m[17], 5.0)],
            "cleaned": [(m[16], 1.0), (m[14], 3.0), (m[17], 5.0)],
            "unknown": ["Unknown"],
        },
    }


def _long(movies) -> list:
    tied = set(TOP_TIED + BOTTOM_TIED)
    positions = [i for i in range(13, 60) if i not in tied][:30]
    return [(movies[i], float(1 + (i * 7) % 5)) for i in positions]


def factor_tables(seed: int, movies):
    """Seeded random FactorTables over the fixture users and `movies`, with tied movies (see TOP_TIED)."""
    from tests.device_runtime.make_fixtures import USERS
    from train.serving import FactorTables

    rng = np.random.default_rng(seed)
    n_users, n_movies = len(USERS) + 1, len(movies) + 1

    def table(*shape, scale):
        values = rng.normal(0.0, scale, shape).astype(np.float32)
        values[0] = 0.0  # the out-of-vocabulary row
        return values

    movie_bias = table(n_movies, scale=0.3)
    everyone = _movies()
    for positions, bias in ((TOP_TIED, TIE_BIAS), (BOTTOM_TIED, -TIE_BIAS)):
        movie_bias[[movies.index(everyone[i]) + 1 for i in positions]] = bias
    return FactorTables(
        global_mean=GLOBAL_MEAN,
        user_bias=table(n_users, scale=0.3),
        movie_bias=movie_bias,
        user_vectors=table(n_users, DIMENSION, scale=0.4),
        movie_vectors=table(n_movies, DIMENSION, scale=0.4),
        users=tuple(USERS),
        movies=tuple(movies),
    )


def ridge_state(tables, cleaned, vector_ridge: float = VECTOR_RIDGE, bias_ridge: float = BIAS_RIDGE):
    """The user state of a cleaned history by numpy's exact solve (float64); the fold-in's definition."""
    rows = {title: row for row, title in enumerate(tables.movies, start=1)}
    dimension = tables.rank
    if not cleaned:
        return np.zeros(dimension), 0.0
    history_rows = np.array([rows[title] for title, _ in cleaned])
    ratings = np.array([rating for _, rating in cleaned], dtype=np.float64)
    design = np.concatenate(
        [tables.movie_vectors[history_rows].astype(np.float64), np.ones((len(history_rows), 1))], axis=1
    )
    target = ratings - tables.global_mean - tables.movie_bias[history_rows].astype(np.float64)
    penalty = np.diag([vector_ridge] * dimension + [bias_ridge])
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ target)
    return solution[:dimension], float(solution[dimension])


def state_scores(tables, vector, bias) -> np.ndarray:
    """Scores of every catalog movie (row order) for a user state, in numpy."""
    raw = (
        tables.global_mean
        + bias
        + tables.movie_bias[1:].astype(np.float64)
        + tables.movie_vectors[1:].astype(np.float64) @ np.asarray(vector, np.float64)
    )
    return np.clip(raw, 1.0, 5.0)


def factor_reference(tables, histories: dict, vector_ridge=VECTOR_RIDGE, bias_ridge=BIAS_RIDGE) -> dict:
    """Everything the tests compare a factor model against, from numpy alone."""
    movie_rows = np.arange(1, len(tables.movies) + 1)
    matrix = [
        tables.ratings(np.full(len(movie_rows), user_row), movie_rows).tolist()
        for user_row in range(len(tables.users) + 1)  # row 0: any unknown user
    ]
    states = {}
    for name, history in histories.items():
        vector, bias = ridge_state(tables, history["cleaned"], vector_ridge, bias_ridge)
        states[name] = {
            "user_vector": [float(x) for x in vector],
            "user_bias": bias,
            "scores": state_scores(tables, vector, bias).tolist(),
        }
    user_rows = np.arange(len(tables.users) + 1)
    return {
        "users": list(tables.users),
        "movies": list(tables.movies),
        "scores": matrix,  # [user row][movie row - 1]; user row 0 = unknown users
        "unknown_movie": tables.ratings(user_rows, np.zeros_like(user_rows)).tolist(),  # [user row]
        "states": states,
    }


def _fold_in():
    from train.serving import FoldIn

    return FoldIn(vector_ridge=VECTOR_RIDGE, bias_ridge=BIAS_RIDGE)


def _tower_module(seed: int):
    from tests.device_runtime.make_fixtures import _build_towers
    from train.serving import TowerServing

    users, movies, ratings = _build_towers(seed)
    return TowerServing(users.layers[0], users.layers[1], movies.layers[0], movies.layers[1], ratings)


def _convert(saved_model: Path, signature_keys, quantization: str) -> bytes:
    """The kit's own conversion (builtin ops only; "none" or "float16")."""
    from convert.config import Quantization
    from convert.tflite import convert_saved_model_to_flatbuffer

    return convert_saved_model_to_flatbuffer(saved_model, signature_keys, Quantization(quantization))


def _sealed(tflite: bytes, *, users, movies, signatures, state_dimension, quantization: str, name: str) -> bytes:
    import tensorflow as tf

    from convert.manifest_embedding import embed_manifest
    from device_runtime import contract
    from device_runtime.manifest import Manifest
    from device_runtime.signature import SignatureMapping

    manifest = Manifest.create(
        users=users,
        movies=movies,
        model_name=name,
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorflow_version=tf.__version__,
        quantization=quantization,
        signature=SignatureMapping(contract.STRINGS, contract.USER_ID, contract.MOVIE_TITLE, contract.RATING, (-1,)),
        signatures=tuple(signatures),
        state_dimension=state_dimension,
        training_metrics={"note": "random tables, test fixture"},
    )
    return embed_manifest(tflite, manifest)


def build_factor_model(tables, out_path: Path, quantization: str = "none", name: str = "factor-fixture") -> None:
    """Exports `FactorServing(tables)`, converts every signature, seals it and writes `out_path`.

    Also used to build default-size models for measurements (`tests/device_runtime/measure.py`).
    """
    from device_runtime import contract
    from device_runtime.files import write_atomically
    from train.serving import FactorServing, export_saved_model

    with tempfile.TemporaryDirectory() as scratch:
        export_saved_model(FactorServing(tables, _fold_in()), Path(scratch) / "saved_model")
        tflite = _convert(Path(scratch) / "saved_model", contract.FACTOR_SIGNATURES, quantization)
    content = _sealed(
        tflite,
        users=tables.users,
        movies=tables.movies,
        signatures=contract.FACTOR_SIGNATURES,
        state_dimension=tables.rank,
        quantization=quantization,
        name=name,
    )
    write_atomically(out_path, content)


def _build_tower_model(out_path: Path, quantization: str) -> None:
    from device_runtime import contract
    from device_runtime.files import write_atomically
    from tests.device_runtime.make_fixtures import MOVIES, SEED, USERS
    from train.serving import export_saved_model

    with tempfile.TemporaryDirectory() as scratch:
        export_saved_model(_tower_module(SEED), Path(scratch) / "saved_model")
        tflite = _convert(Path(scratch) / "saved_model", contract.TOWER_SIGNATURES, quantization)
    content = _sealed(
        tflite,
        users=USERS,
        movies=MOVIES,
        signatures=contract.TOWER_SIGNATURES,
        state_dimension=None,
        quantization=quantization,
        name="tower-fixture",
    )
    write_atomically(out_path, content)


def _litert_runners(path: Path) -> dict:
    """Plain LiteRT interpreters of a model, with its default delegates and without them."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    without = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return {
        "litert_scores": Interpreter(model_path=str(path)),
        "litert_builtin_scores": Interpreter(model_path=str(path), **without),
    }


def _strings(values) -> np.ndarray:
    return np.array([value.encode("utf-8") for value in values], dtype=object)


def _tower_reference(path: Path) -> dict:
    """Every (user, movie) score of a tower model through plain LiteRT calls of its strings signature."""
    from tests.device_runtime.make_fixtures import MOVIES, USERS

    users = list(USERS) + ["no-such-user"]
    reference = {"users": users, "movies": list(MOVIES)}
    for key, interpreter in _litert_runners(path).items():
        runner = interpreter.get_signature_runner("serving_default")
        reference[key] = [  # [user][movie]; users[-1] is unknown
            [float(x) for x in runner(user_id=_strings([user] * len(MOVIES)), movie_title=_strings(MOVIES))["rating"]]
            for user in users
        ]
    return reference


def _interpreter_factor_reference(path: Path, tables, histories: dict) -> dict:
    """A factor model's references through plain LiteRT calls (for float16, whose constants numpy cannot mirror).

    Scores come from the strings signature; a history's state from `user_state`
    and its scores from `score_history`, both fed the hand-cleaned history.
    """
    interpreter = _litert_runners(path)["litert_scores"]
    strings = interpreter.get_signature_runner("serving_default")
    users = [""] + list(tables.users)  # row order; "" is unknown (row 0)
    movies = _strings(tables.movies)
    matrix = [
        [float(x) for x in strings(user_id=_strings([user] * len(tables.movies)), movie_title=movies)["rating"]]
        for user in users
    ]
    unknown_movie = [
        float(strings(user_id=_strings([user]), movie_title=_strings([UNKNOWN_TITLE]))["rating"][0]) for user in users
    ]
    state = interpreter.get_signature_runner("user_state")
    scored = interpreter.get_signature_runner("score_history")
    states = {}
    for name, history in histories.items():
        titles = _strings([title for title, _ in history["cleaned"]])
        ratings = np.array([rating for _, rating in history["cleaned"]], dtype=np.float32)
        result = state(history_titles=titles, history_ratings=ratings)
        scores = scored(history_titles=titles, history_ratings=ratings, movie_title=movies)["rating"]
        states[name] = {
            "user_vector": [float(x) for x in result["user_vector"]],
            "user_bias": float(result["user_bias"][0]),
            "scores": [float(x) for x in scores],
        }
    return {
        "users": list(tables.users),
        "movies": list(tables.movies),
        "scores": matrix,
        "unknown_movie": unknown_movie,
        "states": states,
    }


def build_serving_fixtures(out_dir: Path) -> dict:
    """Writes the serving models into `out_dir`; returns their references for reference.json."""
    histories = _histories()
    tables_a = factor_tables(SEED_A, _movies())
    tables_b = factor_tables(SEED_B, movies_of_b())
    build_factor_model(tables_a, out_dir / FACTOR, name="factor-fixture-a")
    build_factor_model(tables_b, out_dir / FACTOR_B, name="factor-fixture-b")
    build_factor_model(tables_a, out_dir / FACTOR_FLOAT16, "float16", name="factor-fixture-a")
    _build_tower_model(out_dir / TOWER, "none")
    _build_tower_model(out_dir / TOWER_FLOAT16, "float16")
    return {
        "histories": histories,
        "factor": {
            FACTOR: factor_reference(tables_a, histories),
            FACTOR_B: factor_reference(tables_b, histories),
            FACTOR_FLOAT16: _interpreter_factor_reference(out_dir / FACTOR_FLOAT16, tables_a, histories),
        },
        "tower": {TOWER: _tower_reference(out_dir / TOWER), TOWER_FLOAT16: _tower_reference(out_dir / TOWER_FLOAT16)},
    }

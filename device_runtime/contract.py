"""The kit's contract: every signature a model file answers, by name, shape and dtype.

`train` exports these signatures, `convert` validates each one by name, and the
`Ranker` calls them by name; this module is the only place that defines them.
A `.tflite` written by the kit holds several signatures over the same tables:

strings (`serving_default`, the tutorial's contract, any language can call it):
    user_id [N] string, movie_title [N] string -> rating [N] float32

index space (the fast path: ids are mapped to rows once, by the caller):
    score_rows: user_row [1] int32, item_rows [N] int32 -> rating [N] float32
    top_k:      user_row [1] int32, k [1] int32 -> item_rows [K] int32, rating [K] float32

personalized (a user the model never saw, described by their own history; factor models only):
    score_history: history_titles [H] string, history_ratings [H] float32, movie_title [N] string
                   -> rating [N] float32
    user_state:    history_titles [H] string, history_ratings [H] float32
                   -> user_vector [D] float32, user_bias [1] float32
    score_rows_for_state: user_vector [D] float32, user_bias [1] float32, item_rows [N] int32
                   -> rating [N] float32
    top_k_for_state: user_vector [D] float32, user_bias [1] float32, k [1] int32
                   -> item_rows [K] int32, rating [K] float32

Rows: row 0 of every table is the out-of-vocabulary (OOV) row; rows 1..n follow
the order of the vocabularies embedded in the manifest. Any row index outside
0..n reads the OOV row, inside the graph, so no input can read outside a table.
`k` is clamped to 1..n inside the graph. `top_k` ranks rows 1..n (never the OOV
row), best first; equal scores come in row order (the vocabulary's order).

History: unknown titles are ignored by the graph (and reported by the Ranker);
an empty history gives exactly the unknown-user scores. The Ranker keeps at most
`MAX_HISTORY` entries (the most recent) and validates ratings to 1..5.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

# Dtype names as `device_runtime.signature.dtype_name` reports them.
STRING = "string"
FLOAT32 = "float32"
INT32 = "int32"
DYNAMIC = -1

OOV_ROW = 0
MAX_HISTORY = 1024
MIN_RATING = 1.0
MAX_RATING = 5.0

# Signature keys.
STRINGS = "serving_default"
SCORE_ROWS = "score_rows"
TOP_K = "top_k"
SCORE_HISTORY = "score_history"
USER_STATE = "user_state"
SCORE_ROWS_FOR_STATE = "score_rows_for_state"
TOP_K_FOR_STATE = "top_k_for_state"

# Tensor names.
USER_ID = "user_id"
MOVIE_TITLE = "movie_title"
RATING = "rating"
USER_ROW = "user_row"
ITEM_ROWS = "item_rows"
K = "k"
HISTORY_TITLES = "history_titles"
HISTORY_RATINGS = "history_ratings"
USER_VECTOR = "user_vector"
USER_BIAS = "user_bias"

# `user_vector`'s length is the model's factor dimension; the manifest records it.
STATE_DIMENSION = "D"


@dataclasses.dataclass(frozen=True)
class TensorContract:
    """One named tensor of a signature: dtype and shape (-1 = any length, "D" = the state dimension)."""

    name: str
    dtype: str
    shape: tuple


@dataclasses.dataclass(frozen=True)
class SignatureContract:
    """One signature: its key, its inputs and outputs by name, and what it is for."""

    key: str
    inputs: tuple[TensorContract, ...]
    outputs: tuple[TensorContract, ...]
    purpose: str

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(tensor.name for tensor in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(tensor.name for tensor in self.outputs)


def _tensor(name: str, dtype: str, *shape) -> TensorContract:
    return TensorContract(name, dtype, tuple(shape))


_STRING_IDS = (_tensor(USER_ID, STRING, DYNAMIC), _tensor(MOVIE_TITLE, STRING, DYNAMIC))
_HISTORY = (_tensor(HISTORY_TITLES, STRING, DYNAMIC), _tensor(HISTORY_RATINGS, FLOAT32, DYNAMIC))
_STATE = (_tensor(USER_VECTOR, FLOAT32, STATE_DIMENSION), _tensor(USER_BIAS, FLOAT32, 1))
_SCORES = (_tensor(RATING, FLOAT32, DYNAMIC),)
_TOP = (_tensor(ITEM_ROWS, INT32, DYNAMIC), _tensor(RATING, FLOAT32, DYNAMIC))

SIGNATURES: Mapping[str, SignatureContract] = {
    contract.key: contract
    for contract in (
        SignatureContract(STRINGS, _STRING_IDS, _SCORES, "score (user, movie) pairs given as strings"),
        SignatureContract(
            SCORE_ROWS,
            (_tensor(USER_ROW, INT32, 1), _tensor(ITEM_ROWS, INT32, DYNAMIC)),
            _SCORES,
            "score given movie rows for one user row",
        ),
        SignatureContract(
            TOP_K, (_tensor(USER_ROW, INT32, 1), _tensor(K, INT32, 1)), _TOP, "the k best movies of the catalog"
        ),
        SignatureContract(
            SCORE_HISTORY,
            _HISTORY + (_tensor(MOVIE_TITLE, STRING, DYNAMIC),),
            _SCORES,
            "score movies for a user described by their own ratings",
        ),
        SignatureContract(USER_STATE, _HISTORY, _STATE, "a history's reusable user state"),
        SignatureContract(
            SCORE_ROWS_FOR_STATE,
            _STATE + (_tensor(ITEM_ROWS, INT32, DYNAMIC),),
            _SCORES,
            "score given movie rows for a user state",
        ),
        SignatureContract(
            TOP_K_FOR_STATE, _STATE + (_tensor(K, INT32, 1),), _TOP, "the k best movies of the catalog for a user state"
        ),
    )
}

# What each kind of model exports. Tower models (the tutorial's dense layers) have
# no factor tables to fold a history into, so they have no personalized signatures.
INDEX_SIGNATURES = (SCORE_ROWS, TOP_K)
PERSONALIZED_SIGNATURES = (SCORE_HISTORY, USER_STATE, SCORE_ROWS_FOR_STATE, TOP_K_FOR_STATE)
TOWER_SIGNATURES = (STRINGS,) + INDEX_SIGNATURES
FACTOR_SIGNATURES = TOWER_SIGNATURES + PERSONALIZED_SIGNATURES


def expected_shape(tensor: TensorContract, state_dimension: Optional[int]) -> tuple[int, ...]:
    """The tensor's shape with the state dimension filled in (-1 where it is unknown)."""
    return tuple(
        (DYNAMIC if state_dimension is None else int(state_dimension)) if dim == STATE_DIMENSION else int(dim)
        for dim in tensor.shape
    )

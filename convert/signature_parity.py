"""Parity of the index-space and personalized signatures: the .tflite against the SavedModel, per signature.

Every figure compares the converted file's signature with a SavedModel
reference on the same inputs, over the users the strings signature is ranked
for (`measure_signatures`):

- `score_rows`: every test pair and every (user, movie) of the ranked users,
  given as rows mapped from the vocabularies the manifest embeds, against the
  SavedModel's *strings* scores; so it also proves that the vocabularies' order
  is the tables' row order.
- `top_k` and `top_k_for_state`: each user's k best rows (k = 10 and 100)
  against the SavedModel's own top-k signature (identical lists, overlap), and
  every score returned against the SavedModel's score of that row.
- `score_history`, `user_state`, `score_rows_for_state`: real histories, each
  ranked user's own training rows in a seeded order cut to one of
  `HISTORY_LENGTHS`, scoring every movie and the user's test rows. The
  .tflite's user state is judged by the scores it gives through the
  SavedModel's `score_rows_for_state`; the `*_for_state` signatures are fed
  the SavedModel's state, so each signature is measured on its own.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from convert import parity
from convert.results import ParityFigures, TopKFigures
from convert.runtime_probe import encode_strings
from convert.saved_model import import_tensorflow
from convert.signatures import SignatureSet
from device_runtime import contract
from train.fold_in import rows_by_user

# History lengths of the ranked users, in turn (None: all of the user's training rows, at most MAX_HISTORY).
HISTORY_LENGTHS = (0, 1, 5, 20, 50, None)
HISTORY_SEED = 42
TOP_K_VALUES = (10, 100)
# Two rows whose SavedModel scores differ by at most this are a near-tie: float32 rounding (about 1e-7 to 1e-6
# between runtimes) may order them either way. Measured: the tutorial tower, seed 0, put its 10th and 11th best
# movies of one user 1e-7 apart, and the .tflite swapped them.
TOP_K_TIE = 1e-5

Outputs = Mapping[str, np.ndarray]
SignatureCall = Callable[..., Outputs]  # call(key, **inputs) -> outputs by name


class SavedModelSignatures:
    """Calls a loaded SavedModel's contract signatures by key, numpy in and out."""

    def __init__(self, loaded, signatures: SignatureSet):
        self._tf = import_tensorflow()
        self._functions = {key: loaded.signatures[key] for key in signatures.keys if key != contract.STRINGS}

    def __call__(self, key: str, **inputs) -> dict[str, np.ndarray]:
        feeds = {name: self._tf.constant(value) for name, value in inputs.items()}
        return {name: tensor.numpy() for name, tensor in self._functions[key](**feeds).items()}


class TfliteSignatures:
    """Calls a .tflite's contract signatures by key through one interpreter's signature runners."""

    def __init__(self, interpreter):
        self._interpreter = interpreter
        self._runners: dict = {}

    def __call__(self, key: str, **inputs) -> dict[str, np.ndarray]:
        if key not in self._runners:
            self._runners[key] = self._interpreter.get_signature_runner(key)
        feeds = {name: encode_strings(value) if value.dtype == object else value for name, value in inputs.items()}
        return {name: np.asarray(value) for name, value in self._runners[key](**feeds).items()}


@dataclasses.dataclass(frozen=True)
class ParityContext:
    """What every comparison shares.

    Attributes:
        movies: the movie vocabulary in row order (row k + 1 is movies[k]).
        user_rows / movie_rows: id -> table row, from the vocabularies the manifest embeds.
        coverage: the parity data's share of known pairs.
        interpreter: which runtime ran the .tflite.
    """

    movies: tuple[str, ...]
    user_rows: Mapping[str, int]
    movie_rows: Mapping[str, int]
    coverage: float
    interpreter: str


class ParityUsers:
    """The ranked users and what the signatures are given for them.

    Attributes:
        ids: the users' ids; rows: their table rows (0 for an unknown id).
        test_titles / test_ratings: each user's test rows.
        histories: each user's history (titles, ratings float32), or empty
            when the model has no personalized signatures.
    """

    def __init__(self, ids, user_rows: Mapping[str, int], test, train=None):
        self.ids = np.asarray(ids, dtype=object)
        self.rows = np.asarray([user_rows.get(user, contract.OOV_ROW) for user in self.ids], np.int32)
        by_user = rows_by_user(test[0])
        self.test_titles = tuple(np.asarray(test[1], dtype=object)[by_user.get(u, [])] for u in self.ids)
        self.test_ratings = tuple(np.asarray(test[2], np.float32)[by_user.get(u, [])] for u in self.ids)
        self.histories: tuple = ()
        if train is not None:
            by_user = rows_by_user(train[0])
            self.histories = tuple(
                _history(train, by_user.get(user), HISTORY_LENGTHS[i % len(HISTORY_LENGTHS)], i)
                for i, user in enumerate(self.ids)
            )


def history_of(train, user: str, length: Optional[int], position: int) -> tuple[np.ndarray, np.ndarray]:
    """A real history: `user`'s training rows in an order seeded by `position`, cut to `length` (None: all).

    Args:
        train: the training split as (users, titles, ratings) arrays.
        user: whose rows.
        length: how many rows at most (never more than `contract.MAX_HISTORY`).
        position: seeds the order, so each ranked user gets their own.

    Returns:
        (titles as an object array, ratings as float32).
    """
    return _history(train, rows_by_user(train[0]).get(user), length, position)


def _history(train, rows: Optional[np.ndarray], length: Optional[int], position: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.zeros(0, np.int64) if rows is None else rows
    rows = rows[np.random.default_rng([HISTORY_SEED, position]).permutation(len(rows))]
    rows = rows[: min(contract.MAX_HISTORY, len(rows) if length is None else length)]
    return np.asarray(train[1], dtype=object)[rows], np.asarray(train[2], np.float32)[rows]


def measure_signatures(
    signatures: SignatureSet,
    reference: SignatureCall,
    candidate: SignatureCall,
    users: ParityUsers,
    context: ParityContext,
    strings_pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    strings_matrix: np.ndarray,
) -> dict[str, object]:
    """Measures every index-space and personalized signature the model has.

    Args:
        signatures: the model's checked signatures.
        reference / candidate: the SavedModel's and the .tflite's signatures.
        users: the ranked users, their test rows and histories.
        context: the vocabularies' rows, coverage and interpreter.
        strings_pairs: the test pairs (users, titles, ratings) and the
            SavedModel's strings scores of them.
        strings_matrix: the SavedModel's strings scores of every movie (in
            vocabulary order) for each ranked user, [users, movies].

    Returns:
        signature key -> ParityFigures or TopKFigures.
    """
    figures: dict[str, object] = {}
    if contract.SCORE_ROWS in signatures.keys:
        figures[contract.SCORE_ROWS] = _score_rows(candidate, users, context, strings_pairs, strings_matrix)
        user_inputs = [{contract.USER_ROW: np.array([row], np.int32)} for row in users.rows]
        figures[contract.TOP_K] = top_k_figures(
            contract.TOP_K, reference, candidate, user_inputs, strings_matrix, context
        )
    if signatures.personalized:
        figures.update(_personalized(reference, candidate, users, context))
    return figures


def _score_rows(candidate, users: ParityUsers, context: ParityContext, strings_pairs, strings_matrix) -> ParityFigures:
    pair_users, pair_titles, ratings, reference_scores = strings_pairs
    scores = np.empty(len(pair_users), np.float32)
    for user, indices in rows_by_user(pair_users).items():
        user_row = np.array([context.user_rows.get(user, contract.OOV_ROW)], np.int32)
        item_rows = _movie_rows(context, pair_titles[indices])
        scores[indices] = _rating(candidate(contract.SCORE_ROWS, user_row=user_row, item_rows=item_rows))
    all_rows = _all_rows(context)
    matrix = np.stack(
        [
            _rating(candidate(contract.SCORE_ROWS, user_row=np.array([row], np.int32), item_rows=all_rows))
            for row in users.rows
        ]
    )
    return _figures(reference_scores, scores, ratings, strings_matrix, matrix, context)


def _movie_rows(context: ParityContext, titles) -> np.ndarray:
    return np.asarray([context.movie_rows.get(title, contract.OOV_ROW) for title in titles], np.int32)


def _all_rows(context: ParityContext) -> np.ndarray:
    return np.arange(1, len(context.movies) + 1, dtype=np.int32)


def top_k_figures(
    key: str,
    reference: SignatureCall,
    candidate: SignatureCall,
    inputs: Sequence[dict],
    reference_scores: np.ndarray,
    context: ParityContext,
) -> TopKFigures:
    """Compares a top-k signature's answers, k = 10 and 100, for each user.

    Args:
        key: the signature (`top_k` or `top_k_for_state`).
        reference / candidate: the SavedModel's and the .tflite's signatures.
        inputs: each user's inputs but `k`.
        reference_scores: the SavedModel's score of every catalog row (1..n) for each user, [users, n].
        context: names the interpreter.

    Returns:
        Identical lists (up to near-ties) and exactly identical ones, overlap per k,
        and the largest difference between a returned score and the reference
        score of the same row.
    """
    catalog = reference_scores.shape[1]
    identical, exact, overlaps, differences = {}, {}, {}, []
    for k in TOP_K_VALUES:
        wanted = min(k, catalog)
        same, same_rows, overlap = [], [], []
        for user, feeds in enumerate(inputs):
            expected = reference(key, **feeds, k=np.array([k], np.int32))
            found = candidate(key, **feeds, k=np.array([k], np.int32))
            expected_rows = np.asarray(expected[contract.ITEM_ROWS]).reshape(-1)
            found_rows = np.asarray(found[contract.ITEM_ROWS]).reshape(-1)
            overlap.append(len(np.intersect1d(found_rows, expected_rows)) / wanted)
            inside = (found_rows >= 1) & (found_rows <= catalog)
            if not inside.all() or len(found_rows) != wanted:
                same.append(False), same_rows.append(False)
                differences.append(np.inf)  # a row outside the catalog, or the wrong count: nothing to compare
                continue
            same_rows.append(np.array_equal(found_rows, expected_rows))
            # Near-ties may come in either order: the list is the same when, place by place, the rows it
            # returns have the SavedModel's own best scores (within TOP_K_TIE).
            expected_scores = np.asarray(expected[contract.RATING], np.float64).reshape(-1)
            same.append(bool(np.all(np.abs(reference_scores[user, found_rows - 1] - expected_scores) <= TOP_K_TIE)))
            returned = np.asarray(found[contract.RATING], np.float64).reshape(-1)
            differences.append(float(np.max(np.abs(returned - reference_scores[user, found_rows - 1]), initial=0.0)))
        identical[k], exact[k], overlaps[k] = float(np.mean(same)), float(np.mean(same_rows)), np.asarray(overlap)
    return TopKFigures(
        users=len(inputs),
        top10_identical=identical[10],
        top10_exact=exact[10],
        top10_overlap=float(overlaps[10].mean()),
        top10_overlap_min=float(overlaps[10].min()),
        top100_identical=identical[100],
        top100_exact=exact[100],
        top100_overlap=float(overlaps[100].mean()),
        top100_overlap_min=float(overlaps[100].min()),
        max_abs_diff=float(max(differences, default=0.0)),
        interpreter=context.interpreter,
    )


def _personalized(reference, candidate, users: ParityUsers, context: ParityContext) -> dict[str, object]:
    all_rows = _all_rows(context)
    catalog = len(all_rows)
    histories = [
        {contract.HISTORY_TITLES: titles, contract.HISTORY_RATINGS: ratings} for titles, ratings in users.histories
    ]
    test_rows = [_movie_rows(context, titles) for titles in users.test_titles]
    truth = np.concatenate(users.test_ratings)
    movies = np.asarray(context.movies, dtype=object)

    # score_history: every movie, then the user's test titles, in one call per user and side.
    sides = {"reference": ([], []), "candidate": ([], [])}
    for history, titles in zip(histories, users.test_titles):
        wanted = np.concatenate([movies, titles])
        for side, call in (("reference", reference), ("candidate", candidate)):
            scores = _rating(call(contract.SCORE_HISTORY, **history, movie_title=wanted))
            sides[side][0].append(scores[:catalog])
            sides[side][1].append(scores[catalog:])
    figures = {
        contract.SCORE_HISTORY: _figures(
            np.concatenate(sides["reference"][1]),
            np.concatenate(sides["candidate"][1]),
            truth,
            np.stack(sides["reference"][0]),
            np.stack(sides["candidate"][0]),
            context,
        )
    }

    # user_state, judged by the scores each state gives through the SavedModel's score_rows_for_state.
    reference_states = [reference(contract.USER_STATE, **history) for history in histories]
    candidate_states = [candidate(contract.USER_STATE, **history) for history in histories]
    state_difference = max(
        (
            float(np.max(np.abs(np.asarray(c[name], np.float64) - r[name])))
            for r, c in zip(reference_states, candidate_states)
            for name in (contract.USER_VECTOR, contract.USER_BIAS)
        ),
        default=0.0,
    )

    def state_scores(call, states):
        matrix, pairs = [], []
        for state, rows in zip(states, test_rows):
            feeds = {
                contract.USER_VECTOR: _state(state, contract.USER_VECTOR),
                contract.USER_BIAS: _state(state, contract.USER_BIAS),
            }
            scores = _rating(call(contract.SCORE_ROWS_FOR_STATE, **feeds, item_rows=np.concatenate([all_rows, rows])))
            matrix.append(scores[:catalog])
            pairs.append(scores[catalog:])
        return np.stack(matrix), np.concatenate(pairs)

    reference_matrix, reference_pairs = state_scores(reference, reference_states)
    from_candidate_state = state_scores(reference, candidate_states)
    figures[contract.USER_STATE] = _figures(
        reference_pairs,
        from_candidate_state[1],
        truth,
        reference_matrix,
        from_candidate_state[0],
        context,
        state_max_abs_diff=state_difference,
    )
    candidate_matrix, candidate_pairs = state_scores(candidate, reference_states)
    figures[contract.SCORE_ROWS_FOR_STATE] = _figures(
        reference_pairs, candidate_pairs, truth, reference_matrix, candidate_matrix, context
    )
    state_inputs = [
        {
            contract.USER_VECTOR: _state(state, contract.USER_VECTOR),
            contract.USER_BIAS: _state(state, contract.USER_BIAS),
        }
        for state in reference_states
    ]
    figures[contract.TOP_K_FOR_STATE] = top_k_figures(
        contract.TOP_K_FOR_STATE, reference, candidate, state_inputs, reference_matrix, context
    )
    return figures


def _state(outputs: Outputs, name: str) -> np.ndarray:
    return np.asarray(outputs[name], np.float32).reshape(-1)


def _rating(outputs: Outputs) -> np.ndarray:
    return np.asarray(outputs[contract.RATING], np.float32).reshape(-1)


def _figures(
    reference_pairs,
    candidate_pairs,
    ratings,
    reference_matrix,
    candidate_matrix,
    context: ParityContext,
    state_max_abs_diff: Optional[float] = None,
) -> ParityFigures:
    return ParityFigures(
        **parity.pair_figures(reference_pairs, candidate_pairs, ratings),
        **parity.ranking_figures(reference_matrix, candidate_matrix),
        ranking_max_abs_diff=parity.max_abs_difference(reference_matrix, candidate_matrix),
        coverage=context.coverage,
        interpreter=context.interpreter,
        state_max_abs_diff=state_max_abs_diff,
    )

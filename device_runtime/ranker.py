"""`Ranker`: scores and ranks movies for a user, or for a history, with one converted model.

A Ranker serves from one `LoadedModel` (a verified file, its interpreter and
its signatures; see `device_runtime.model`) and swaps it whole on `reload`.
Each call takes the model once and does all its work on it, so a call in
flight during a swap finishes on the model it started on and every result
comes wholly from one model.

Which signature a call uses (`device_runtime.contract`):
- a user id and no candidates: `top_k` (the whole catalog ranked in the graph);
- a user id and candidates: `score_rows`, the titles mapped to rows once
  (`Ranker.candidates`) or at the call;
- a `PersonalizedUser`: `top_k_for_state` / `score_rows_for_state`;
- a model without index signatures or vocabularies (a foreign `.tflite`, or one
  converted before them): the strings signature, `serving_default`.
All paths give the same scores (within float32 rounding) and the same order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from device_runtime import contract
from device_runtime._log import Logger
from device_runtime.backends import Backend, parse_backend
from device_runtime.errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    ManifestError,
    ModelMismatchError,
    SignatureError,
)
from device_runtime.inputs import as_list, check_k, encode_all, rows_of, to_text, unknown_ids_error, user_text
from device_runtime.model import MAX_BATCH, LoadedModel, LoadOptions, as_path
from device_runtime.prepared import CandidateSet, PersonalizedUser, read_only

if TYPE_CHECKING:
    from device_runtime.info import RankerInfo

logger = Logger(__name__)

Id = Union[str, bytes, int]
User = Union[Id, PersonalizedUser]
Candidates = Union[Sequence[Id], np.ndarray, CandidateSet]

# The training presets whose models answer the personalized signatures (factor models).
PERSONALIZED_PRESETS = ("default", "mf")
# The personalized signatures the Ranker calls.
_PERSONALIZED_CALLS = (contract.USER_STATE, contract.SCORE_ROWS_FOR_STATE, contract.TOP_K_FOR_STATE)


class Ranker:
    """Scores and ranks movies with a converted ranking model.

    A Ranker may be shared between threads: calls on one model are serialised
    on its interpreter (interpreters are not thread-safe), and `reload` swaps
    models while calls go on. For parallel throughput, give each thread its own
    Ranker.

    Example:
        ranker = Ranker("model.tflite")
        ranker.rank("42", k=10)                      # the whole catalog
        me = ranker.personalize([("Speed (1994)", 5.0), ("Heat (1995)", 4.0)])
        ranker.rank(me, k=10)
    """

    def __init__(
        self,
        model_path: Union[str, os.PathLike],
        num_threads: Optional[int] = None,
        backend: Union[str, Backend] = "auto",
        strict: bool = False,
        user_input: Optional[str] = None,
        item_input: Optional[str] = None,
        require_checksum: bool = False,
    ):
        """Loads the model, verifies it, resolves its signatures and runs each once.

        Args:
            model_path: the .tflite file.
            num_threads: interpreter threads (>= 1); None keeps the backend's default.
            backend: "auto", "ai_edge_litert", "tflite_runtime" or "tensorflow".
            strict: raise UnknownIdError for ids outside the model's vocabularies
                instead of scoring them with the out-of-vocabulary row (and for
                unknown history titles instead of skipping them); needs a model
                converted with its manifest.
            user_input: the strings signature's input holding user ids, when it
                is not the manifest's (or the kit's default `user_id`).
            item_input: the input holding movie titles, likewise.
            require_checksum: refuse a file that carries no checksum (a foreign
                .tflite); such a file otherwise loads with one warning.

        Raises:
            ArgumentTypeError / InvalidArgumentError (TypeError / ValueError): an argument has the wrong type or value.
            ModelLoadError: the file is missing, unreadable, not a TFLite model,
                corrupt or modified (checksum mismatch), without a checksum under
                require_checksum=True, or no installed backend can load it.
            BackendError: the backend is unknown or not installed.
            SignatureError: the model has no (user, item) -> score signature, or
                a signature differs from the contract.
            ManifestError: the embedded manifest is malformed, or strict=True
                for a model without vocabularies.
        """
        if num_threads is not None and (
            isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1
        ):
            raise InvalidArgumentError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        for name, flag in (("strict", strict), ("require_checksum", require_checksum)):
            if not isinstance(flag, bool):
                raise ArgumentTypeError(f"{name} must be True or False, got {flag!r}")
        for name, value in (("user_input", user_input), ("item_input", item_input)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ArgumentTypeError(f"{name} must be a non-empty signature input name or None, got {value!r}")
        self._options = LoadOptions(
            backend=parse_backend(backend),
            num_threads=None if num_threads is None else int(num_threads),
            strict=strict,
            user_input=user_input,
            item_input=item_input,
            require_checksum=require_checksum,
        )
        self._model = LoadedModel(as_path(model_path), self._options)
        self._reload_lock = threading.Lock()

    # ----------------------------------------------------------------- the model

    @property
    def manifest(self):
        """The manifest embedded by the converter in the model now serving, or None."""
        return self._model.manifest

    @property
    def signature(self):
        """The strings signature's mapping."""
        return self._model.strings_signature

    @property
    def has_vocabularies(self) -> bool:
        """True when the model carries its user and movie vocabularies."""
        return self._model.has_vocabularies

    @property
    def can_personalize(self) -> bool:
        """True when the model serving answers the personalized signatures (`personalize` works)."""
        return self._model.has(*_PERSONALIZED_CALLS)

    def reload(self, model_path: Union[str, os.PathLike]) -> RankerInfo:
        """Loads another model and, once it passed every check, serves it instead of the current one.

        The new model is verified (checksum), its signatures resolved and
        checked, each invoked once and its vocabularies parsed, all while the
        current model goes on serving; then one assignment switches. Calls in
        flight finish on the model they started on. Call it from a background
        thread to keep it off the request path.

        Args:
            model_path: the new .tflite file (the Ranker's options apply to it).

        Returns:
            The description of the model now serving.

        Raises:
            as the constructor; the current model then keeps serving.
        """
        path = as_path(model_path)
        with self._reload_lock:
            model = LoadedModel(path, self._options, check_vocabularies=True)
            previous, self._model = self._model, model
        logger.info("now serving %s (checksum %s) instead of %s", path, model.checksum, previous.path)
        return describe(model)

    def info(self) -> RankerInfo:
        """Describes the model now serving: path, checksum, load time, signatures, backend, manifest."""
        return describe(self._model)

    def __repr__(self) -> str:
        model = self._model
        return f"Ranker({str(model.path)!r}, backend={model.interpreter.backend.value!r})"

    # ----------------------------------------------------------------- preparing

    def candidates(self, titles: Sequence[Id]) -> CandidateSet:
        """Prepares candidate titles once, for many `score` and `rank` calls.

        Args:
            titles: a list, tuple or 1-D numpy array of movie titles (str, UTF-8
                bytes or int); duplicates are kept.

        Returns:
            A reusable, immutable CandidateSet: the titles mapped to the model's
            rows, and which of them the model does not know.

        Raises:
            ArgumentTypeError / InvalidArgumentError (TypeError / ValueError): a bad title (its position is named).
            UnknownIdError: strict mode and a title outside the vocabulary.
        """
        model = self._model
        values = as_list(titles, "candidates")
        if not model.has_vocabularies:
            texts, encoded = encode_all(values, "candidates")
            return CandidateSet(tuple(texts), (), None, None)
        texts, rows, unknown = self._rows_of(model, values)
        return CandidateSet(
            tuple(texts), tuple(dict.fromkeys(unknown)), model.manifest.movies_sha256, read_only(rows)
        )

    def personalize(self, history: Sequence[tuple[str, float]]) -> PersonalizedUser:
        """Folds a user's own ratings into a reusable user state, on the device.

        Args:
            history: (movie_title, rating) pairs, oldest first; titles are str,
                ratings numbers from 1 to 5. A repeated title keeps its last
                rating; titles the model does not know are skipped (and listed on
                the result); beyond `contract.MAX_HISTORY` titles the most recent
                are kept. An empty history gives the unknown user's scores.

        Returns:
            A PersonalizedUser that `score` and `rank` accept as the user.

        Raises:
            SignatureError: the model has no personalized signatures.
            HistoryError: the history or one of its entries is malformed (named by position).
            UnknownIdError: strict mode and a title outside the vocabulary.
        """
        model = self._model
        if not model.has(*_PERSONALIZED_CALLS):
            name = model.manifest.model_name if model.manifest else "a model not converted by this kit"
            raise SignatureError(
                f"{model.path} ({name}) has no personalized signature ({contract.USER_STATE}); models of the "
                f"{' and '.join(repr(p) for p in PERSONALIZED_PRESETS)} training presets export one: train with "
                "one of those and convert again"
            )
        from device_runtime.history import personalize  # imported on first use, not at start-up

        return personalize(model, history, self._options.strict)

    # ----------------------------------------------------------------- scoring

    def score(self, user: User, candidates: Candidates) -> np.ndarray:
        """Scores candidate movies for one user.

        Args:
            user: a user id (str, UTF-8 bytes or int; 42 and "42" are the same
                user) or a PersonalizedUser.
            candidates: a list, tuple or 1-D numpy array of movie titles, or a
                CandidateSet. Duplicates are scored each time.

        Returns:
            float32 array, one score per candidate, in input order.

        Raises:
            ArgumentTypeError / InvalidArgumentError (TypeError / ValueError): a bad id; the message names its position.
            UnknownIdError: strict mode and an id outside the vocabularies.
            ModelMismatchError: a PersonalizedUser computed by another model.
            BackendError: the interpreter failed.
        """
        return self._score(self._model, user, candidates)[1]

    def rank(
        self, user: User, candidates: Optional[Candidates] = None, k: Optional[int] = 10
    ) -> list[tuple[str, float]]:
        """Ranks movies for one user, best first.

        Args:
            user: as for `score`.
            candidates: as for `score`; None ranks the whole catalog (in the
                graph, through `top_k`, when the model has it).
            k: how many to return (the best k); None returns all.

        Returns:
            (movie_title, score) pairs, best first. Equal scores keep the input
            order of the candidates, and the catalog's (vocabulary) order when
            the whole catalog is ranked.

        Raises:
            as `score`; InvalidArgumentError (a ValueError) when k is not a positive integer or None;
            ManifestError when candidates are omitted for a model without a
            movie vocabulary.
        """
        check_k(k)
        model = self._model
        if candidates is None:
            return self._rank_catalog(model, user, k)
        return _ranked(*self._score(model, user, candidates), k)

    def score_pairs(self, user_ids: Sequence[Id], movie_titles: Sequence[Id]) -> np.ndarray:
        """Scores aligned (user, movie) pairs through the strings signature.

        Args:
            user_ids: a list, tuple or 1-D array of user ids.
            movie_titles: the same length of movie titles.

        Returns:
            float32 array, one score per pair, in input order.

        Raises:
            ArgumentTypeError / InvalidArgumentError (TypeError / ValueError): a bad id (named by position) or different lengths.
            UnknownIdError: strict mode and an id outside the vocabularies.
            BackendError: the interpreter failed.
        """
        model = self._model
        users = as_list(user_ids, "user_ids")
        movies = as_list(movie_titles, "movie_titles")
        if len(users) != len(movies):
            raise InvalidArgumentError(
                f"user_ids has {len(users)} elements but movie_titles has {len(movies)}; pass one movie per user"
            )
        user_texts, user_data = encode_all(users, "user_ids")
        for position, text in enumerate(user_texts):
            if not text:
                raise InvalidArgumentError(f"user_ids[{position}] is empty; pass a user id")
        movie_texts, movie_data = encode_all(movies, "movie_titles")
        if self._options.strict:
            self._check_known(user_texts, model.user_vocabulary().rows, "user ids")
            self._check_known(movie_texts, model.movie_vocabulary().rows, "movie titles")
        return model.score_strings(user_data, movie_data)

    def is_known_user(self, user_id: Id) -> bool:
        """True when the user id is in the model's vocabulary.

        Raises:
            ManifestError: the model carries no vocabularies (convert it with the kit).
        """
        return to_text(user_id, "user_id") in self._model.user_vocabulary().rows

    def is_known_movie(self, movie_title: Id) -> bool:
        """True when the movie title is in the model's vocabulary.

        Raises:
            ManifestError: the model carries no vocabularies (convert it with the kit).
        """
        return to_text(movie_title, "movie_title") in self._model.movie_vocabulary().rows

    # ----------------------------------------------------------------- internals

    def _score(self, model: LoadedModel, user: User, candidates: Candidates) -> tuple[Sequence[str], np.ndarray]:
        if isinstance(user, PersonalizedUser):
            _check_state(model, user)
            titles, rows = self._rows(model, candidates)
            return titles, model.score_rows_for_state(user.user_vector, user.user_bias, rows)
        text = user_text(user)
        if model.serves_rows:
            user_row = self._user_row(model, text)
            titles, rows = self._rows(model, candidates)
            return titles, model.score_rows(user_row, rows)
        if self._options.strict:
            self._check_known([text], model.user_vocabulary().rows, "user ids")
        if isinstance(candidates, CandidateSet):
            titles, encoded = candidates.titles, candidates.encoded
        else:
            titles, encoded = encode_all(as_list(candidates, "candidates"), "candidates")
        if self._options.strict:
            self._check_known(titles, model.movie_vocabulary().rows, "movie titles")
        users = np.empty(len(encoded), dtype=object)
        users.fill(text.encode("utf-8"))
        return titles, model.score_strings(users, encoded)

    def _rank_catalog(self, model: LoadedModel, user: User, k: Optional[int]) -> list[tuple[str, float]]:
        manifest = model.manifest
        if manifest is None or manifest.movie_vocabulary is None:
            raise ManifestError(
                f"{model.path} carries no movie vocabulary, so it cannot rank the whole catalog; pass the "
                "candidates, or convert the model with `python -m convert` to embed the vocabulary"
            )
        count = manifest.movie_count
        wanted = count if k is None else min(int(k), count)
        if isinstance(user, PersonalizedUser):
            _check_state(model, user)
            rows, scores = model.top_k_for_state(user.user_vector, user.user_bias, wanted)
        elif model.serves_rows:
            rows, scores = model.top_k(self._user_row(model, user_text(user)), wanted)
        else:  # only the strings signature: score every title of the vocabulary
            return _ranked(*self._score(model, user, model.catalog), k)
        titles = model.movie_vocabulary().ids
        return [(titles[row - 1], score) for row, score in zip(rows.tolist(), scores.tolist())]

    def _user_row(self, model: LoadedModel, text: str) -> int:
        row = model.user_vocabulary().rows.get(text)
        if row is not None:
            return row
        if self._options.strict:
            raise unknown_ids_error([text], "user ids", 1)
        return contract.OOV_ROW

    def _rows(self, model: LoadedModel, candidates: Candidates) -> tuple[Sequence[str], np.ndarray]:
        """Candidates as titles and rows of this model's movie vocabulary."""
        if isinstance(candidates, CandidateSet):
            if candidates.rows is not None and candidates.movies_sha256 == model.manifest.movies_sha256:
                if self._options.strict and candidates.unknown_titles:
                    raise unknown_ids_error(list(candidates.unknown_titles), "movie titles", len(candidates))
                return candidates.titles, candidates.rows
            values = candidates.titles  # prepared for another vocabulary: map again
        else:
            values = as_list(candidates, "candidates")
        texts, rows, _ = self._rows_of(model, values)
        return texts, rows

    def _rows_of(self, model: LoadedModel, values: Sequence) -> tuple[Sequence[str], np.ndarray, list[str]]:
        texts, rows, unknown = rows_of(values, model.movie_vocabulary().rows, "candidates")
        if unknown and self._options.strict:
            raise unknown_ids_error(unknown, "movie titles", len(values))
        return texts, rows, unknown

    @staticmethod
    def _check_known(texts: Sequence[str], known, what: str) -> None:
        unknown = [text for text in texts if text not in known]
        if unknown:
            raise unknown_ids_error(unknown, what, len(texts))


def _ranked(titles: Sequence[str], scores: np.ndarray, k: Optional[int]) -> list[tuple[str, float]]:
    return [(titles[i], float(scores[i])) for i in best_first(scores, k).tolist()]


def best_first(scores: np.ndarray, k: Optional[int]) -> np.ndarray:
    """Positions of the k best scores, best first, equal scores in input order (a stable sort, cut at k).

    For k below the count, a partition finds the k-th best score first and only
    the scores at or above it are sorted, which gives the same positions.
    """
    negated = -scores
    if k is None or k >= len(scores):
        return np.argsort(negated, kind="stable")
    kth = np.partition(negated, k - 1)[k - 1]
    contenders = np.flatnonzero(negated <= kth)  # in input order, ties at the cut included
    return contenders[np.argsort(negated[contenders], kind="stable")][:k]


def _check_state(model: LoadedModel, user: PersonalizedUser) -> None:
    if user.model_checksum != model.checksum:
        raise ModelMismatchError(
            f"this PersonalizedUser was computed by another model (checksum {user.model_checksum[:12]}...) than "
            f"the one serving, {model.path} (checksum {(model.checksum or 'none')[:12]}...), and its state means "
            "nothing to this one; personalize again from the history: ranker.personalize(user.history)"
        )


def describe(model: LoadedModel) -> RankerInfo:
    """The model's RankerInfo (its module is imported on first use, not at start-up)."""
    from device_runtime.info import describe as describe_model

    return describe_model(model)

"""What a latency benchmark measures: the settings, checked once, and the ways to rank."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Optional, Union

from benchmarks.errors import SettingsError

ALL_CANDIDATES = "all"
DEFAULT_CANDIDATES: tuple[Union[int, str], ...] = (1, 10, 100, 1000, ALL_CANDIDATES)
DEFAULT_THREADS = (1,)
DEFAULT_RUNS = 200
DEFAULT_WARMUP = 20
DEFAULT_MIN_SECONDS = 2.0
DEFAULT_USER = "42"
DEFAULT_BLOCK = 10
# The per-candidate loops cost ~3-7 us per candidate; above this count they only
# make the run long without telling anything new, so they are skipped by default.
DEFAULT_LOOP_MAX_CANDIDATES = 100
TOP_K = 10


class Method(str, enum.Enum):
    """The ways of ranking that are timed side by side.

    Through the public `device_runtime.Ranker`, k=TOP_K:
    RANK: `rank(user, titles)`, a plain list of titles (mapped to the model's
        rows at every call, or sent as strings when the model has no index signatures).
    RANK_PREPARED: `rank(user, prepared)` with `prepared = ranker.candidates(titles)`
        made once before timing (the titles mapped to rows once).
    RANK_STRINGS: `score_pairs([user] * n, titles)` and a sort: the strings
        signature through the Ranker, the path `rank` took before the index signatures.
    RANK_CATALOG: `rank(user)`, no candidates: the whole catalog ranked in the
        graph (`top_k`); timed at the "all" count only.
    PERSONALIZE_RANK: `rank(ranker.personalize(history), k)`: a HISTORY_LENGTH-rating
        history folded into a user state (`user_state`), then the whole catalog
        ranked for it (`top_k_for_state`); at "all" only.
    RANK_PERSONALIZED: `rank(me)` with `me = ranker.personalize(history)` made
        once before timing: ranking for a state already folded; at "all" only.
    On the bare interpreter (inputs prepared beforehand, no Ranker):
    INVOKE: the strings signature called once for all candidates (`set_tensor`
        x2, `invoke`, `get_tensor` on tensors allocated once).
    INVOKE_TOP_K: the `top_k` signature runner called for the user's row: the
        floor under RANK_CATALOG; at "all" only.
    LOOP: the original tutorial's loop, one invocation per candidate with inputs
        set by position (`set_tensor`/`invoke`/`get_tensor` on tensors allocated once).
    SIGNATURE_LOOP: one `SignatureRunner` call per candidate.
    SAVED_MODEL: the SavedModel's serving signature called from Python with
        TensorFlow on all candidates at once (the server-side reference).
    """

    RANK = "rank"
    RANK_PREPARED = "rank_prepared"
    RANK_STRINGS = "rank_strings"
    RANK_CATALOG = "rank_catalog"
    PERSONALIZE_RANK = "personalize_rank"
    RANK_PERSONALIZED = "rank_personalized"
    INVOKE = "invoke"
    INVOKE_TOP_K = "invoke_top_k"
    LOOP = "loop"
    SIGNATURE_LOOP = "signature_loop"
    SAVED_MODEL = "saved_model"


DEFAULT_METHODS = tuple(method for method in Method if method is not Method.SAVED_MODEL)
LOOP_METHODS = (Method.LOOP, Method.SIGNATURE_LOOP)
# Methods that drive a plain interpreter (opened like the Ranker's) instead of the Ranker.
INTERPRETER_METHODS = (Method.INVOKE, Method.INVOKE_TOP_K) + LOOP_METHODS
# Methods that rank the whole catalog whatever the candidates: timed at the "all" count only.
CATALOG_METHODS = (Method.RANK_CATALOG, Method.INVOKE_TOP_K, Method.PERSONALIZE_RANK, Method.RANK_PERSONALIZED)
# Methods that rank for a history instead of the --user (their scores are another user's).
PERSONALIZED_METHODS = (Method.PERSONALIZE_RANK, Method.RANK_PERSONALIZED)
# The history personalized by PERSONALIZED_METHODS: this many titles of the model's vocabulary.
HISTORY_LENGTH = 50


def parse_candidate_counts(text: str) -> tuple[Union[int, str], ...]:
    """Parses "1,10,100,all" into (1, 10, 100, "all").

    Raises:
        SettingsError: an entry is neither a positive integer nor "all".
    """
    counts: list[Union[int, str]] = []
    for entry in (part.strip() for part in text.split(",")):
        if entry.lower() == ALL_CANDIDATES:
            value: Union[int, str] = ALL_CANDIDATES
        else:
            try:
                value = int(entry.replace("_", ""))
            except ValueError:
                raise SettingsError(
                    f"--candidates entry {entry!r} is not a count; give positive integers or 'all', e.g. 1,10,100,all"
                ) from None
            if value < 1:
                raise SettingsError(f"--candidates entry {entry!r} must be at least 1")
        if value not in counts:
            counts.append(value)
    if not counts:
        raise SettingsError("--candidates is empty; give e.g. 1,10,100,all")
    return tuple(counts)


def parse_positive_ints(text: str, option: str, example: str = "1,2,4") -> tuple[int, ...]:
    """Parses "1,2,4" into (1, 2, 4) for options such as --threads (and "100_000" as 100000).

    Raises:
        SettingsError: an entry is not a positive integer.
    """
    values: list[int] = []
    for entry in (part.strip() for part in text.split(",")):
        try:
            value = int(entry.replace("_", ""))
        except ValueError:
            raise SettingsError(f"{option} entry {entry!r} is not an integer; give e.g. {example}") from None
        if value < 1:
            raise SettingsError(f"{option} entry {entry!r} must be at least 1")
        if value not in values:
            values.append(value)
    return tuple(values)


def parse_methods(text: str) -> tuple[Method, ...]:
    """Parses "rank,loop" into (Method.RANK, Method.LOOP).

    Raises:
        SettingsError: an unknown method name.
    """
    methods: list[Method] = []
    for entry in (part.strip() for part in text.split(",")):
        try:
            method = Method(entry)
        except ValueError:
            choices = ", ".join(m.value for m in Method)
            raise SettingsError(f"--methods entry {entry!r} is unknown; choose from {choices}") from None
        if method not in methods:
            methods.append(method)
    return tuple(methods)


@dataclasses.dataclass(frozen=True)
class LatencySettings:
    """Everything one latency benchmark run needs, validated on creation.

    Attributes:
        models: .tflite files to compare.
        candidates: candidate counts, positive ints or "all" (the whole vocabulary).
        threads: interpreter thread counts.
        backends: interpreter backends; empty means every installed one.
        methods: which ways of ranking to time (SAVED_MODEL is added on its own
            when a SavedModel is given or found and TensorFlow is installed).
        runs: minimum steady-state (timed) runs per configuration.
        warmup: runs per configuration after the first inference, discarded.
        min_seconds: minimum wall time of the interleaved measuring phase.
        user: the user id every configuration ranks for.
        candidates_file: titles to rank (one per line) instead of the manifest's vocabulary.
        saved_model: the SavedModel to time as the server-side reference; None
            looks for `saved_model/` beside the first model.
        use_saved_model: False skips the SavedModel reference altogether.
        loop_max_candidates: the per-candidate loops run only up to this count.
        user_input / item_input: the signature's input names when the model
            has no manifest and does not use the kit's names.
        block: timed calls per configuration per round.
        cold: no untimed re-warm call before each block, so the first timed
            call of a block follows another configuration (cold caches).
    """

    models: tuple[Path, ...]
    candidates: tuple[Union[int, str], ...] = DEFAULT_CANDIDATES
    threads: tuple[int, ...] = DEFAULT_THREADS
    backends: tuple[str, ...] = ()
    methods: tuple[Method, ...] = DEFAULT_METHODS
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    min_seconds: float = DEFAULT_MIN_SECONDS
    user: str = DEFAULT_USER
    candidates_file: Optional[Path] = None
    saved_model: Optional[Path] = None
    use_saved_model: bool = True
    loop_max_candidates: int = DEFAULT_LOOP_MAX_CANDIDATES
    user_input: Optional[str] = None
    item_input: Optional[str] = None
    block: int = DEFAULT_BLOCK
    cold: bool = False

    def __post_init__(self):
        if not self.models:
            raise SettingsError("no model given; pass --model M.tflite (repeat it to compare several)")
        for model in self.models:
            check_model_file(model)
        if self.candidates_file is not None and not Path(self.candidates_file).is_file():
            raise SettingsError(f"candidates file {self.candidates_file} does not exist; check --candidates-file")
        if self.saved_model is not None and not (Path(self.saved_model) / "saved_model.pb").is_file():
            raise SettingsError(f"--saved-model {self.saved_model} is not a SavedModel folder (no saved_model.pb in it)")
        if not self.candidates or any(not _valid_count(c) for c in self.candidates):
            raise SettingsError(f"candidate counts must be positive integers or 'all', got {self.candidates}")
        if not self.threads or any(t < 1 for t in self.threads):
            raise SettingsError(f"thread counts must be at least 1, got {self.threads}")
        if not self.methods:
            raise SettingsError("no method to time; give e.g. --methods rank,loop")
        if self.runs < 1:
            raise SettingsError(f"--runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise SettingsError(f"--warmup must be 0 or more, got {self.warmup}")
        if not self.min_seconds >= 0:  # also rejects NaN
            raise SettingsError(f"--min-seconds must be 0 or more, got {self.min_seconds}")
        if not self.user:
            raise SettingsError("--user must not be empty")
        if self.block < 1:
            raise SettingsError(f"--block must be at least 1, got {self.block}")
        if self.loop_max_candidates < 0:
            raise SettingsError(f"--loop-max-candidates must be 0 or more, got {self.loop_max_candidates}")

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict (the report's settings block)."""
        return {
            "models": [str(m) for m in self.models],
            "candidates": list(self.candidates),
            "threads": list(self.threads),
            "backends": list(self.backends),
            "methods": [m.value for m in self.methods],
            "runs": self.runs,
            "warmup": self.warmup,
            "min_seconds": float(self.min_seconds),
            "user": self.user,
            "top_k": TOP_K,
            "candidates_file": None if self.candidates_file is None else str(self.candidates_file),
            "saved_model": None if self.saved_model is None else str(self.saved_model),
            "use_saved_model": self.use_saved_model,
            "loop_max_candidates": self.loop_max_candidates,
            "user_input": self.user_input,
            "item_input": self.item_input,
            "block": self.block,
            "cold": self.cold,
        }


def check_model_file(model) -> None:
    """Raises SettingsError, naming --model, when `model` is not a file."""
    if not Path(model).is_file():
        raise SettingsError(f"model file {model} does not exist; check the --model path")


def _valid_count(count) -> bool:
    if count == ALL_CANDIDATES:
        return True
    return isinstance(count, int) and not isinstance(count, bool) and count >= 1

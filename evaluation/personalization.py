"""How well a converted model personalizes users it never saw: `python -m evaluation personalization`.

Protocol. The model was trained with `python -m train --holdout-users FRACTION`,
so the held-out users' rows trained nothing. For each held-out user, their own
training-split rows, in an order fixed by `--seed`, are the history: the first
k of them go to `Ranker.personalize` on the device runtime (k = 0 is the
unknown-user fallback; "all" is every one of their training rows, and a user
with fewer than k rows gives all of theirs). Their test-split rows are scored
with that state through the .tflite (`Ranker.score`), and RMSE and NDCG@10
(`train.metrics`) are taken over all held-out users' test rows. The reference
is the same users' test rows scored, by user id, by the model trained WITH them
(the same preset without `--holdout-users`).

History order: each user's training rows sorted by
`sha256(f"{seed}:{user_id}:{movie_title}".encode("utf-8")).hexdigest()`
(ties keep file order), so the histories are nested (k = 5 extends k = 3) and
the same in any language or numpy version.

It needs numpy and an interpreter package, never TensorFlow: the split comes
from `holdout_rows.tsv`, written by training beside `holdout_users.txt`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from benchmarks.machine import Machine, describe_machine, produced_by
from device_runtime.backends import parse_backend
from device_runtime.files import write_atomically
from evaluation.errors import SettingsError
from evaluation.provenance import utc_now
from train.artifacts import write_json_atomically
from train.holdout import ROWS_FILE, TEST_SPLIT, TRAIN_SPLIT, HoldoutRows, read_holdout_rows, read_holdout_users
from train.metrics import ndcg_at_k, rmse

logger = logging.getLogger(__name__)

ALL = None  # the k that stands for every training row of a user
DEFAULT_KS = (0, 1, 3, 5, 10, 20, 50, ALL)
NDCG_CUTOFF = 10
RESULTS_FILE = "personalization.json"
TABLE_FILE = "personalization.md"
RESULTS_KIND = "ranking-kit personalization evaluation"
_QUANTIZATION_NAMES = {"none": "float32"}  # the converter's --quantize none

# A history of (title, rating) pairs and candidate titles -> one score per candidate.
HistoryScorer = Callable[[Sequence[tuple[str, float]], Sequence[str]], np.ndarray]
# A known user id and candidate titles -> one score per candidate.
UserScorer = Callable[[str, Sequence[str]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class PersonalizationSettings:
    """What to evaluate and where to write it.

    Attributes:
        model: the .tflite trained without the held-out users.
        reference: the .tflite of the same preset trained with them.
        holdout_users: `holdout_users.txt` of the holdout training run.
        rows: `holdout_rows.tsv` of that run (None: the one beside `holdout_users`).
        out: the folder for personalization.json (and the table, unless `markdown`).
        seed: orders each user's training rows (see the module's docstring).
        ks: history lengths; None stands for all of a user's training rows.
        markdown: where the Markdown table goes; None means OUT/personalization.md.
        backend: the Ranker's backend ("auto", "litert", "tflite_runtime").
    """

    model: Path
    reference: Path
    holdout_users: Path
    out: Path
    rows: Optional[Path] = None
    seed: int = 0
    ks: tuple[Optional[int], ...] = DEFAULT_KS
    markdown: Optional[Path] = None
    backend: str = "auto"

    def __post_init__(self):
        if not self.ks:
            raise SettingsError("--ks is empty; give history lengths such as 0,1,5,all")
        if len(set(self.ks)) != len(self.ks):
            raise SettingsError(f"--ks lists a length twice ({', '.join(map(k_label, self.ks))}); give each once")
        if any(k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0) for k in self.ks):
            raise SettingsError("--ks entries must be whole numbers >= 0 or 'all'")
        parse_backend(self.backend)  # BackendError (one line) before any file is read
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SettingsError(f"--seed must be a whole number >= 0, got {self.seed}")
        for option, path in (("--model", self.model), ("--reference", self.reference)):
            if not Path(path).is_file():
                raise SettingsError(f"{option} {path} is not a file; give a .tflite written by `python -m convert`")
        if Path(self.model).resolve() == Path(self.reference).resolve():
            raise SettingsError("--model and --reference are the same file; the reference is the model trained "
                                "WITH the held-out users (the same preset without --holdout-users)")
        if self.out.exists() and not self.out.is_dir():
            raise SettingsError(f"--out {self.out} is a file; give a folder path")
        if self.markdown is not None:
            if self.markdown.is_dir():
                raise SettingsError(f"--markdown {self.markdown} is a folder; give a file path")
            if not self.markdown.parent.is_dir():
                raise SettingsError(f"the folder of --markdown {self.markdown} does not exist; create it first")

    @property
    def rows_path(self) -> Path:
        """The rows file: `rows`, or the one training wrote beside `holdout_users`."""
        return self.rows if self.rows is not None else Path(self.holdout_users).parent / ROWS_FILE

    @property
    def markdown_path(self) -> Path:
        return self.markdown if self.markdown is not None else self.out / TABLE_FILE


def k_label(k: Optional[int]) -> str:
    """"all" for None, else the number."""
    return "all" if k is None else str(k)


def parse_ks(text: str) -> tuple[Optional[int], ...]:
    """Parses "0,1,5,all" into (0, 1, 5, None).

    Raises:
        SettingsError: an entry is neither a whole number >= 0 nor "all".
    """
    ks = []
    for entry in (part.strip() for part in text.split(",")):
        if entry.lower() == "all":
            ks.append(ALL)
            continue
        try:
            value = int(entry)
        except ValueError:
            raise SettingsError(f"--ks entry {entry!r} is neither a whole number nor 'all'; give e.g. 0,1,5,all") \
                from None
        if value < 0:
            raise SettingsError(f"--ks entry {entry!r} is negative; history lengths are >= 0")
        ks.append(value)
    return tuple(ks)


def history_order(user_id: str, titles: Sequence[str], seed: int) -> np.ndarray:
    """The order in which a user's training rows enter their history (indices into `titles`).

    Rows are sorted by sha256(f"{seed}:{user_id}:{title}"), ties in the given order.
    """
    keys = [hashlib.sha256(f"{seed}:{user_id}:{title}".encode("utf-8")).hexdigest() for title in titles]
    return np.array(sorted(range(len(titles)), key=lambda i: keys[i]), dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Figures:
    """RMSE and NDCG@10 over the held-out users' test rows, for one way of scoring them.

    Attributes:
        k: the history length (None: all); None too for the reference.
        users: held-out users with at least one test row.
        rows: test rows scored.
        mean_history: the mean number of own ratings given per user (0 for the reference).
        rmse: over all those rows.
        ndcg_at_10: mean over users with at least two test rows (`train.metrics.ndcg_at_k`).
    """

    k: Optional[int]
    users: int
    rows: int
    mean_history: float
    rmse: float
    ndcg_at_10: float

    def to_dict(self) -> dict:
        return {
            "k": k_label(self.k),
            "users": self.users,
            "rows": self.rows,
            "mean_history": round(self.mean_history, 2),
            "rmse": round(self.rmse, 5),
            "ndcg_at_10": round(self.ndcg_at_10, 5),
        }


@dataclasses.dataclass(frozen=True)
class _UserRows:
    history: tuple[tuple[str, float], ...]  # in history order
    test_titles: tuple[str, ...]
    test_ratings: np.ndarray


def group_rows(rows: HoldoutRows, users: Sequence[str], seed: int) -> dict[str, _UserRows]:
    """Each held-out user's history (in history order) and test rows.

    Raises:
        SettingsError: the rows file and the users file disagree on who was held out.
    """
    listed, present = set(users), set(rows.user_id.tolist())
    if present - listed:
        stray = sorted(present - listed)
        raise SettingsError(f"the rows file has rows of {len(stray)} users not in --holdout-users (e.g. {stray[0]!r}); "
                            "give the holdout_users.txt and holdout_rows.tsv of the same training run")
    if listed - present:
        missing = sorted(listed - present)
        raise SettingsError(f"the rows file has no row of {len(missing)} held-out users (e.g. {missing[0]!r}); "
                            "give the holdout_users.txt and holdout_rows.tsv of the same training run")
    grouped = {}
    for user in users:
        mine = rows.user_id == user
        train = np.flatnonzero(mine & (rows.split == TRAIN_SPLIT))
        test = np.flatnonzero(mine & (rows.split == TEST_SPLIT))
        titles = [str(title) for title in rows.movie_title[train]]
        order = history_order(user, titles, seed)
        grouped[user] = _UserRows(
            history=tuple((titles[i], float(rows.user_rating[train][i])) for i in order),
            test_titles=tuple(str(title) for title in rows.movie_title[test]),
            test_ratings=rows.user_rating[test].astype(np.float64),
        )
    return grouped


def figures_by_history(grouped: dict[str, _UserRows], ks: Sequence[Optional[int]], score: HistoryScorer) -> tuple:
    """Figures for every history length: `score(first k of the history, test titles)` per user.

    Returns:
        One Figures per k, in `ks` order.
    """
    results = []
    for k in ks:
        user_ids, truths, predictions, lengths = [], [], [], []
        for user, mine in grouped.items():
            if not mine.test_titles:
                continue
            history = mine.history if k is None else mine.history[:k]
            scores = np.asarray(score(history, mine.test_titles), np.float64).reshape(-1)
            user_ids.extend([user] * len(scores))
            truths.append(mine.test_ratings)
            predictions.append(scores)
            lengths.append(len(history))
        results.append(_figures(k, user_ids, truths, predictions, lengths))
    return tuple(results)


def reference_figures(grouped: dict[str, _UserRows], score: UserScorer) -> Figures:
    """Figures of the model trained with the users: `score(user id, test titles)` per user."""
    user_ids, truths, predictions = [], [], []
    for user, mine in grouped.items():
        if mine.test_titles:
            scores = np.asarray(score(user, mine.test_titles), np.float64).reshape(-1)
            user_ids.extend([user] * len(scores))
            truths.append(mine.test_ratings)
            predictions.append(scores)
    return _figures(None, user_ids, truths, predictions, [0] * len(truths))


def _figures(k, user_ids, truths, predictions, lengths) -> Figures:
    if not truths:
        raise SettingsError("no held-out user has a test row; hold out a larger fraction of the users")
    truth, prediction = np.concatenate(truths), np.concatenate(predictions)
    return Figures(
        k=k,
        users=len(truths),
        rows=len(truth),
        mean_history=float(np.mean(lengths)),
        rmse=rmse(prediction, truth),
        ndcg_at_10=ndcg_at_k(np.array(user_ids), truth, prediction, k=NDCG_CUTOFF),
    )


@dataclasses.dataclass(frozen=True)
class PersonalizationResult:
    """Everything measured, with what it was measured on.

    Attributes:
        settings: as given.
        users: the held-out users listed.
        by_history: Figures per k (the held-out model, personalized on the device runtime).
        reference: Figures of the model trained with the users.
        models: per role ("model", "reference"): path, checksum, quantization, preset, holdout record.
        backend: the interpreter package and version that ran both models.
        unknown_history_titles: history titles the held-out model does not know (skipped), over all users.
        machine, started_at, wall_seconds: where and when.
    """

    settings: PersonalizationSettings
    users: int
    by_history: tuple[Figures, ...]
    reference: Figures
    models: dict
    backend: str
    unknown_history_titles: int
    machine: Machine
    started_at: str
    wall_seconds: float

    @property
    def fallback(self) -> Optional[Figures]:
        """The k = 0 figures (the unknown-user fallback), when 0 was evaluated."""
        return next((figures for figures in self.by_history if figures.k == 0), None)

    def to_dict(self, command: str) -> dict:
        settings = self.settings
        return {
            "kind": RESULTS_KIND,
            "command": command,
            "started_at": self.started_at,
            "wall_seconds": round(self.wall_seconds, 1),
            "machine": dataclasses.asdict(self.machine),
            "backend": self.backend,
            "settings": {
                "model": str(settings.model),
                "reference": str(settings.reference),
                "holdout_users": str(settings.holdout_users),
                "rows": str(settings.rows_path),
                "seed": settings.seed,
                "ks": [k_label(k) for k in settings.ks],
                "history_order": 'sha256(f"{seed}:{user_id}:{movie_title}"), ascending',
            },
            "models": self.models,
            "held_out_users": self.users,
            "unknown_history_titles": self.unknown_history_titles,
            "by_history": [figures.to_dict() for figures in self.by_history],
            "reference": self.reference.to_dict(),
        }


def evaluate_personalization(settings: PersonalizationSettings) -> PersonalizationResult:
    """Scores the held-out users' test rows through both models on the device runtime.

    Raises:
        SettingsError: the files disagree, the model knows a held-out user, or the reference does not.
        train.DataError: a holdout file is missing or malformed.
        device_runtime.DeviceRuntimeError: a model cannot be loaded or cannot personalize.
    """
    from device_runtime import Ranker

    started, started_at = time.perf_counter(), utc_now()
    users = read_holdout_users(settings.holdout_users)
    grouped = group_rows(read_holdout_rows(settings.rows_path), users, settings.seed)
    model = Ranker(settings.model, backend=settings.backend)
    reference = Ranker(settings.reference, backend=settings.backend)
    _check_vocabularies(model, reference, users)
    machine = describe_machine({model.info().backend: model.info().backend_version})
    logger.info("%d held-out users, %d with test rows", len(users), sum(bool(g.test_titles) for g in grouped.values()))

    unknown = set()

    def personalized(history, titles):
        user = model.personalize(history)
        unknown.update(user.unknown_titles)
        return model.score(user, titles)

    by_history = figures_by_history(grouped, settings.ks, personalized)
    reference_result = reference_figures(grouped, reference.score)
    info = model.info()
    return PersonalizationResult(
        settings=settings,
        users=len(users),
        by_history=by_history,
        reference=reference_result,
        models={"model": _described(model, settings.model), "reference": _described(reference, settings.reference)},
        backend=f"{info.backend} {info.backend_version}",
        unknown_history_titles=len(unknown),
        machine=machine,
        started_at=started_at,
        wall_seconds=time.perf_counter() - started,
    )


def _check_vocabularies(model, reference, users: Sequence[str]) -> None:
    known = [user for user in users if model.is_known_user(user)]
    if known:
        raise SettingsError(
            f"--model {model.info().model_path} knows {len(known)} of the held-out users (e.g. {known[0]!r}); "
            "give the model trained with --holdout-users (and convert it), not one trained with them"
        )
    unknown = [user for user in users if not reference.is_known_user(user)]
    if unknown:
        raise SettingsError(
            f"--reference {reference.info().model_path} does not know {len(unknown)} of the held-out users "
            f"(e.g. {unknown[0]!r}); give the model of the same preset trained without --holdout-users"
        )


def _described(ranker, path: Path) -> dict:
    manifest = ranker.manifest
    metrics = dict(manifest.training_metrics) if manifest is not None else {}
    return {
        "path": str(path),
        "checksum": ranker.info().checksum,
        "quantization": _QUANTIZATION_NAMES.get(manifest.quantization, manifest.quantization) if manifest else None,
        "preset": metrics.get("preset"),
        "training_seed": metrics.get("seed"),
        "holdout": metrics.get("holdout"),
    }


def format_markdown(result: PersonalizationResult, command: str) -> str:
    """The table of figures per history length, with the command and the machine."""
    fallback = result.fallback
    model, reference = result.models["model"], result.models["reference"]
    holdout = model.get("holdout") or {}
    lines = [
        "# Personalization of users the model never saw",
        "",
        *produced_by(command, result.machine, result.started_at),
        "",
        f"Held-out model `{Path(model['path']).name}` ({model.get('preset') or '?'} preset, "
        f"{model.get('quantization') or '?'}, trained without {result.users} users"
        + (f": {holdout.get('fraction')} of {holdout.get('of_users')}, holdout seed {holdout.get('seed')}"
           if holdout else "")
        + f"); reference `{Path(reference['path']).name}` ({reference.get('preset') or '?'} preset, "
        f"{reference.get('quantization') or '?'}, trained with them). Both run on {result.backend} "
        f"through `device_runtime.Ranker`; history order seed {result.settings.seed}.",
        "",
        "| own ratings given (k) | users | mean given | RMSE | vs fallback | NDCG@10 | vs fallback |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for figures in result.by_history:
        label = "0 (unknown-user fallback)" if figures.k == 0 else k_label(figures.k)
        lines.append(
            f"| {label} | {figures.users} | {figures.mean_history:.1f} | {figures.rmse:.4f} | "
            f"{_change(figures.rmse, fallback and fallback.rmse)} | {figures.ndcg_at_10:.4f} | "
            f"{_change(figures.ndcg_at_10, fallback and fallback.ndcg_at_10)} |"
        )
    ref = result.reference
    lines += [
        f"| trained with them (reference, by user id) | {ref.users} | - | {ref.rmse:.4f} | "
        f"{_change(ref.rmse, fallback and fallback.rmse)} | {ref.ndcg_at_10:.4f} | "
        f"{_change(ref.ndcg_at_10, fallback and fallback.ndcg_at_10)} |",
        "",
        f"{ref.rows} test rows of {ref.users} held-out users with test rows. A user with fewer than k training "
        "rows gives all of theirs (\"mean given\"). RMSE over all rows; NDCG@10 per user with at least two test "
        "rows, then averaged.",
    ]
    if result.unknown_history_titles:
        lines.append(f"{result.unknown_history_titles} history titles unknown to the model were skipped.")
    return "\n".join(lines) + "\n"


def _change(value: float, base: Optional[float]) -> str:
    return "-" if base is None else f"{value - base:+.4f}"


def write_outputs(result: PersonalizationResult, command: str) -> str:
    """Writes personalization.json and the Markdown table (each atomically); returns the table."""
    settings = result.settings
    settings.out.mkdir(parents=True, exist_ok=True)
    markdown = format_markdown(result, command)
    write_json_atomically(settings.out / RESULTS_FILE, result.to_dict(command))  # a nan figure becomes null
    write_atomically(settings.markdown_path, markdown)
    return markdown

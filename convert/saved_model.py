"""The SavedModel side: find it, load it, describe its signatures, score pairs, read its vocabularies."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from convert.errors import InputError
from device_runtime.signature import SignatureMapping, TensorSpec, dtype_name
from train.artifacts import SAVED_MODEL_DIR

logger = logging.getLogger(__name__)

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
SCORING_BATCH = 65_536
# A string no vocabulary holds: scores with it show which table feeds which input.
_UNKNOWN_ID = "\x00ranking-kit: not an id\x00"
_TABLE_PROBE_KEYS = 16


def import_tensorflow():
    """Imports TensorFlow with Keras 2 selected (the TFRS models need it) and quiet C++ logs."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def find_saved_model(path: Path) -> Path:
    """Returns the SavedModel folder for `path` (the folder itself, or an export's saved_model/).

    Raises:
        InputError: the path is missing, a file, or holds no SavedModel.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path} does not exist; pass the SavedModel folder written by `python -m train` (DIR/{SAVED_MODEL_DIR})"
        )
    if not path.is_dir():
        raise InputError(f"{path} is a file, not a SavedModel folder; pass the folder that holds saved_model.pb")
    for folder in (path, path / SAVED_MODEL_DIR):
        if any((folder / name).is_file() for name in SAVED_MODEL_FILES):
            return folder
    raise InputError(
        f"{path} is not a SavedModel (no saved_model.pb in it or in {SAVED_MODEL_DIR}/); "
        f"pass the {SAVED_MODEL_DIR}/ folder of a `python -m train` export"
    )


def load_saved_model(folder: Path) -> Any:
    """Loads a SavedModel with `tf.saved_model.load`.

    Raises:
        InputError: TensorFlow cannot load it (corrupt or incomplete folder).
    """
    tf = import_tensorflow()
    try:
        return tf.saved_model.load(str(folder))
    except Exception as error:  # noqa: BLE001 - TensorFlow raises many types for a bad folder
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{folder} cannot be loaded as a SavedModel ({first_line}); export it again") from None


def signature_specs(loaded: Any) -> dict[str, dict[str, list[TensorSpec]]]:
    """Describes every signature of a loaded SavedModel as the contract's TensorSpecs."""
    signatures = {}
    for key, function in loaded.signatures.items():
        args, kwargs = function.structured_input_signature
        inputs = [_tensor_spec(name, spec) for name, spec in sorted(kwargs.items())]
        inputs += [_tensor_spec(spec.name or f"input_{i}", spec) for i, spec in enumerate(args)]
        outputs_structure = function.structured_outputs
        if isinstance(outputs_structure, Mapping):
            outputs = [_tensor_spec(name, spec) for name, spec in sorted(outputs_structure.items())]
        else:
            outputs = [
                _tensor_spec(getattr(spec, "name", f"output_{i}"), spec) for i, spec in enumerate(outputs_structure)
            ]
        signatures[key] = {"inputs": inputs, "outputs": outputs}
    return signatures


def _tensor_spec(name: str, spec: Any) -> TensorSpec:
    shape = spec.shape
    dims = () if shape.rank is None else tuple(-1 if d is None else int(d) for d in shape.as_list())
    return TensorSpec(name=str(name), dtype=dtype_name(spec.dtype), shape=dims)


class SavedModelScorer:
    """Scores (user, item) pairs with the SavedModel's signature function, inputs by name."""

    def __init__(self, loaded: Any, mapping: SignatureMapping):
        self._tf = import_tensorflow()
        self._function = loaded.signatures[mapping.signature_key]
        self._mapping = mapping

    @property
    def function(self) -> Any:
        return self._function

    def __call__(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        users = np.asarray(users, dtype=object)
        items = np.asarray(items, dtype=object)
        scores = []
        for start in range(0, len(users), SCORING_BATCH):
            stop = start + SCORING_BATCH
            outputs = self._function(
                **{
                    self._mapping.user_input: self._tf.constant(users[start:stop], dtype=self._tf.string),
                    self._mapping.item_input: self._tf.constant(items[start:stop], dtype=self._tf.string),
                }
            )
            scores.append(outputs[self._mapping.output].numpy().reshape(-1))
        return np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32)


def vocabularies_from_tables(scorer: SavedModelScorer) -> Optional[tuple[list[str], list[str]]]:
    """Reads the user and movie vocabularies out of the model's string lookup tables.

    The tables are the signature function's captured resources that export as
    string -> int64 hash tables (Keras `StringLookup`). Which table feeds
    which input is found by behaviour: feeding a table's keys to the user input
    changes the scores compared with an unknown id only for the user table.

    Returns:
        (users, movies) in lookup-index order, or None if the model does not
        have exactly one table per input.
    """
    tf = import_tensorflow()
    tables = []
    for captured in scorer.function.captured_inputs:
        if captured.dtype != tf.resource:
            continue
        try:
            keys, values = tf.raw_ops.LookupTableExportV2(table_handle=captured, Tkeys=tf.string, Tvalues=tf.int64)
        except (tf.errors.OpError, TypeError, ValueError):
            continue  # a variable or a table of other types
        order = np.argsort(values.numpy(), kind="stable")
        tables.append([key.decode("utf-8") for key in keys.numpy()[order]])
    user_tables = [t for t in tables if t and _feeds(scorer, t, "user")]
    item_tables = [t for t in tables if t and _feeds(scorer, t, "item")]
    if len(user_tables) != 1 or len(item_tables) != 1 or user_tables[0] is item_tables[0]:
        logger.info("found %d lookup tables; cannot tell the user table from the movie table", len(tables))
        return None
    return user_tables[0], item_tables[0]


def _feeds(scorer: SavedModelScorer, keys: list[str], role: str) -> bool:
    sample = keys[:_TABLE_PROBE_KEYS]
    unknown = [_UNKNOWN_ID] * len(sample)
    if role == "user":
        known_scores, unknown_scores = scorer(sample, unknown), scorer(unknown, unknown)
    else:
        known_scores, unknown_scores = scorer(unknown, sample), scorer(unknown, unknown)
    return float(np.mean(np.abs(known_scores - unknown_scores) > 0)) >= 0.5

"""What the latency harness knows about a model before loading it: its file, manifest, candidates and SavedModel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence, Union

from benchmarks.config import ALL_CANDIDATES, LatencySettings
from benchmarks.errors import SettingsError
from benchmarks.report import finite_or_none
from device_runtime import contract
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.manifest import read_manifest
from device_runtime.signature import SIGNATURE_KEY

SAVED_MODEL_DIR = "saved_model"  # train's export layout: DIR/saved_model beside DIR/model.tflite
PARITY_SUFFIX = ".parity.json"


@dataclasses.dataclass(frozen=True)
class ModelUnderTest:
    """A .tflite file and what the benchmark knows about it before loading it.

    Attributes:
        path: the file.
        size_bytes: its size.
        quantization: from the converter's manifest, when embedded.
        parity_rmse: the .tflite's test RMSE from MODEL.parity.json, when present.
        signature_key / user_input / item_input: the signature to drive.
        pool: the titles candidate lists are taken from (first N, or all).
        saved_model: a SavedModel found for it (beside it, or named in its parity report).
        signatures: the contract signatures its manifest lists (the strings one alone without a manifest).
        catalog: True when `pool` is the model's own movie vocabulary in row order
            (the whole-catalog methods need it).
        user_row: the --user's row in the model's user vocabulary (0 = unknown or no vocabulary).
    """

    path: Path
    size_bytes: int
    quantization: Optional[str]
    parity_rmse: Optional[float]
    signature_key: str
    user_input: Optional[str]
    item_input: Optional[str]
    pool: tuple[str, ...]
    saved_model: Optional[Path]
    signatures: tuple[str, ...] = (contract.STRINGS,)
    catalog: bool = False
    user_row: int = contract.OOV_ROW


def read_candidates_file(path: Path) -> tuple[str, ...]:
    """Reads one title per line (UTF-8); blank lines are skipped.

    Raises:
        SettingsError: unreadable, not UTF-8, or no titles.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"candidates file {path} is not UTF-8 text; save it as UTF-8, one title per line") from None
    except OSError as error:
        raise SettingsError(f"cannot read candidates file {path}: {error.strerror or error}") from None
    titles = tuple(line.rstrip("\r") for line in text.split("\n") if line.strip())
    if not titles:
        raise SettingsError(f"candidates file {path} holds no titles; write one title per line")
    return titles


def read_parity_rmse(model: Path) -> tuple[Optional[float], Optional[Path]]:
    """The .tflite's test RMSE and SavedModel path from the converter's MODEL.parity.json.

    Looks for `model.parity.json` and `model.tflite.parity.json` beside the
    model. Anything missing or malformed gives None: the report stays usable
    without the converter's files.

    Returns:
        (parity["rmse_tflite"] or None, the "saved_model" folder it names if that exists, else None).
    """
    for candidate in (model.with_suffix(PARITY_SUFFIX), model.with_name(model.name + PARITY_SUFFIX)):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        parity = data.get("parity")
        rmse = parity.get("rmse_tflite") if isinstance(parity, dict) else None
        rmse = finite_or_none(rmse) if isinstance(rmse, (int, float)) and not isinstance(rmse, bool) else None
        saved = data.get("saved_model")
        saved_path = Path(saved) if isinstance(saved, str) and (Path(saved) / "saved_model.pb").is_file() else None
        return rmse, saved_path
    return None, None


def find_saved_model(model: Path, named_in_parity: Optional[Path]) -> Optional[Path]:
    """The SavedModel that a .tflite was converted from, if it can be found.

    Looked for, in order: `saved_model/` in the model's folder (train's export
    layout), then the folder named in MODEL.parity.json.
    """
    beside = model.parent / SAVED_MODEL_DIR
    if (beside / "saved_model.pb").is_file():
        return beside
    return named_in_parity


def describe_model(
    path: Path, settings: LatencySettings, titles_from_file: Optional[tuple[str, ...]]
) -> ModelUnderTest:
    """Reads what the benchmark needs from a .tflite without loading an interpreter.

    Raises:
        SettingsError: the model has no vocabulary and no --candidates-file was given.
        DeviceRuntimeError: the file is not a readable TFLite model.
    """
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise SettingsError(f"cannot read model {path}: {error.strerror or error}") from None
    manifest = read_manifest(read_flatbuffer(content, source=str(path)))
    if titles_from_file is not None:
        pool = titles_from_file
    elif manifest is not None and manifest.movies:
        pool = manifest.movies
    else:
        raise SettingsError(
            f"{path} carries no movie vocabulary (no manifest from `python -m convert`), so there is nothing to "
            "take candidates from; pass --candidates-file FILE with one title per line"
        )
    signature = manifest.signature if manifest is not None else None
    rmse, saved_in_parity = read_parity_rmse(path)
    users = manifest.users if manifest is not None else None
    user_row = users.index(settings.user) + 1 if users and settings.user in users else contract.OOV_ROW
    return ModelUnderTest(
        path=path,
        size_bytes=len(content),
        quantization=manifest.quantization if manifest is not None else None,
        parity_rmse=rmse,
        signature_key=signature.signature_key if signature else SIGNATURE_KEY,
        user_input=settings.user_input or (signature.user_input if signature else None),
        item_input=settings.item_input or (signature.item_input if signature else None),
        pool=tuple(pool),
        saved_model=find_saved_model(path, saved_in_parity),
        signatures=manifest.signatures if manifest is not None else (contract.STRINGS,),
        catalog=titles_from_file is None,
        user_row=user_row,
    )


def candidate_lists(model: ModelUnderTest, counts: Sequence[Union[int, str]]) -> list[tuple[int, str]]:
    """(count, spec) per requested count: the first N titles, or all of them.

    Raises:
        SettingsError: a count larger than the titles available.
    """
    lists: list[tuple[int, str]] = []
    for spec in counts:
        count = len(model.pool) if spec == ALL_CANDIDATES else int(spec)
        if count > len(model.pool):
            raise SettingsError(
                f"--candidates {spec} is more than the {len(model.pool)} titles available for {model.path.name}; "
                "use a smaller count or 'all'"
            )
        if count not in [existing for existing, _ in lists]:
            lists.append((count, str(spec)))
    return lists

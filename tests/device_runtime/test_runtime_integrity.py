"""Integrity at load: the file's own checksum is verified before any byte reaches an interpreter."""

from __future__ import annotations

import hashlib
import logging

import pytest

import device_runtime.backends as backends
from device_runtime import ModelLoadError, Ranker
from tests.device_runtime import make_fixtures as mf

CHECKSUM_PREFIX = b'{"file_sha256": "'  # how the manifest starts (device_runtime/manifest.py's format)


def recorded_and_actual_checksum(content: bytes) -> tuple[str, str]:
    """The checksum a file carries and the one its bytes give, computed here by hand."""
    start = content.index(CHECKSUM_PREFIX) + len(CHECKSUM_PREFIX)
    recorded = content[start : start + 64].decode("ascii")
    zeroed = content[:start] + b"0" * 64 + content[start + 64 :]
    return recorded, hashlib.sha256(zeroed).hexdigest()


@pytest.fixture
def interpreters_created(monkeypatch) -> list:
    """Records every interpreter the runtime creates."""
    created = []
    original = backends.create_interpreter

    def spy(*args, **kwargs):
        created.append(kwargs.get("model_content"))
        return original(*args, **kwargs)

    monkeypatch.setattr(backends, "create_interpreter", spy)
    return created


@pytest.mark.parametrize("model", [mf.KIT, mf.FACTOR, mf.TOWER_FLOAT16])
def test_the_verified_checksum_is_the_files_own(fixtures_dir, model):
    content = (fixtures_dir / model).read_bytes()
    recorded, actual = recorded_and_actual_checksum(content)
    assert recorded == actual
    assert Ranker(fixtures_dir / model).info().checksum == actual


def damaged(content: bytes, position: int) -> bytes:
    return content[:position] + bytes([content[position] ^ 0x01]) + content[position + 1 :]


DAMAGE_PLACES = (
    "movie vocabulary",
    "user vocabulary",
    "manifest after the checksum",
    "checksum digits",
    "model name",
    "middle of the file",
    "near the start",
)


def positions_in(content: bytes) -> dict[str, int]:
    """Places to damage that the kit's flatbuffer reader does not check: data, not structure."""
    manifest = content.index(CHECKSUM_PREFIX)
    return {
        "movie vocabulary": content.index("Amélie (2001)\n".encode("utf-8")) + 2,
        "user vocabulary": content.index(b"\nuser \xc3\xa9\n") + 3,
        "manifest after the checksum": manifest + len(CHECKSUM_PREFIX) + 64 + 10,
        "checksum digits": manifest + len(CHECKSUM_PREFIX) + 5,
        "model name": content.index(b"factor-fixture-a") + 3,
        "middle of the file": len(content) // 2,
        "near the start": 200,
    }


@pytest.mark.parametrize("where", DAMAGE_PLACES)
def test_one_flipped_bit_is_refused_before_the_interpreter(fixtures_dir, tmp_path, interpreters_created, where):
    content = (fixtures_dir / mf.FACTOR).read_bytes()
    path = tmp_path / "damaged.tflite"
    path.write_bytes(damaged(content, positions_in(content)[where]))
    with pytest.raises(ModelLoadError, match="corrupt") as caught:
        Ranker(path)
    message = str(caught.value)
    assert str(path) in message and ("download it again" in message or "convert the model again" in message)
    assert interpreters_created == []


def test_a_checksum_mismatch_says_what_happened_and_what_to_do(fixtures_dir, tmp_path):
    content = (fixtures_dir / mf.FACTOR).read_bytes()
    path = tmp_path / "damaged.tflite"
    path.write_bytes(damaged(content, positions_in(content)["movie vocabulary"]))
    recorded, actual = recorded_and_actual_checksum(path.read_bytes())
    with pytest.raises(
        ModelLoadError,
        match=rf"damaged.tflite is corrupt or was modified: its checksum says {recorded[:12]}\.\.\., its bytes give "
        rf"{actual[:12]}\.\.\.; copy or download it again, or convert it again with `python -m convert`",
    ):
        Ranker(path)


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_a_cut_off_download_is_refused_before_the_interpreter(fixtures_dir, tmp_path, interpreters_created, keep):
    content = (fixtures_dir / mf.FACTOR).read_bytes()
    path = tmp_path / "partial.tflite"
    path.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(ModelLoadError, match="corrupt"):
        Ranker(path)
    assert interpreters_created == []


def test_a_foreign_file_loads_with_one_warning(fixtures_dir, caplog, interpreters_created):
    with caplog.at_level(logging.WARNING, logger="device_runtime"):
        ranker = Ranker(fixtures_dir / mf.TUTORIAL)
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("device_runtime")]
    assert len(warnings) == 1 and "carries no checksum (it was not converted by this kit)" in warnings[0]
    assert ranker.info().checksum is None and len(interpreters_created) == 1


def test_require_checksum_refuses_a_foreign_file(fixtures_dir, interpreters_created):
    with pytest.raises(
        ModelLoadError, match=r"tutorial.tflite carries no checksum .*require_checksum=True refuses such files"
    ):
        Ranker(fixtures_dir / mf.TUTORIAL, require_checksum=True)
    assert interpreters_created == []
    assert Ranker(fixtures_dir / mf.FACTOR, require_checksum=True).info().checksum is not None
    with pytest.raises(TypeError, match="require_checksum must be True or False"):
        Ranker(fixtures_dir / mf.FACTOR, require_checksum="yes")

"""Fuzzing the first code that touches a model file's bytes: `read_flatbuffer`, `integrity.verify`, `read_manifest`.

Thousands of damaged copies of the sealed kit fixture (manifest format 2) go
through the readers as a Ranker uses them (parse, verify the checksum, read the
manifest and its vocabularies). Every case must end in a typed error (a
`DeviceRuntimeError`) or a verified load, and a verified load must be of the
original bytes (every mutation changes the file, so none may be verified):
never another exception type, and never longer than `CASE_SECONDS` (a hang
fails the test). The manifest reader is also run on the unverified bytes, so it
stays safe for a caller that reads it first.

Mutations: byte flips, zeroed runs, truncations, and the flatbuffer's own
offsets, lengths, indices and vtable entries rewritten on purpose (found by
`benchmarks.corruption.flatbuffer_fields`), including buffers addressed by
64-bit offset and size (a variant of the fixture in the layout of files over
2 GB). TensorFlow-free: runs in both environments.
"""

from __future__ import annotations

import contextlib
import json
import signal
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.corruption import Field, Role, flatbuffer_fields, hostile_values
from device_runtime.errors import DeviceRuntimeError, ManifestError, ModelLoadError
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.integrity import checksum_position, file_checksum, verify
from device_runtime.manifest import (
    CHECKSUM_HEX_DIGITS,
    MANIFEST_METADATA_NAME,
    MOVIES_METADATA_NAME,
    USERS_METADATA_NAME,
    Manifest,
    read_manifest,
)
from tests.device_runtime import make_fixtures

CASE_SECONDS = 2.0  # one case takes about a millisecond
KIT_METADATA = (MANIFEST_METADATA_NAME, USERS_METADATA_NAME, MOVIES_METADATA_NAME)
# Deterministic examples: the same cases on every run and in both environments.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class CaseTimedOut(BaseException):
    """A case ran past CASE_SECONDS (a BaseException, so no reader's handler can swallow it)."""


@contextlib.contextmanager
def time_bound(seconds: float):
    def expire(signum, frame):
        raise CaseTimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_as_a_ranker_does(data: bytes):
    """Parse, verify, read the manifest and its vocabularies; returns the Verification."""
    model = read_flatbuffer(data, "fuzzed.tflite")
    verification = verify(data, model, "fuzzed.tflite")
    manifest = read_manifest(model)
    if manifest is not None:
        manifest.users, manifest.movies  # parsed lazily: checked against their hashes here
    return verification


def read_manifest_unverified(data: bytes) -> None:
    """The manifest reader alone, on bytes nobody verified."""
    manifest = read_manifest(read_flatbuffer(data, "fuzzed.tflite"))
    if manifest is not None:
        manifest.users, manifest.movies


REFUSED = object()  # what `typed_error_or_result` returns for a typed error


def typed_error_or_result(read, what: str):
    """`read()`'s result, or REFUSED for a typed error; fails the test on any other exception or a hang."""
    try:
        with time_bound(CASE_SECONDS):
            return read()
    except DeviceRuntimeError:
        return REFUSED
    except CaseTimedOut:
        pytest.fail(f"ran longer than {CASE_SECONDS} s: {what}")
    except Exception as error:  # noqa: BLE001 - any other type is the failure under test
        pytest.fail(f"raised {type(error).__name__} ({error}): {what}")


def check_case(original: bytes, damaged: bytes, what: str) -> None:
    """Fails unless `damaged` is refused with a typed error (or is the original, verified)."""
    result = typed_error_or_result(lambda: read_as_a_ranker_does(damaged), f"read as a Ranker does, {what}")
    if result is not REFUSED:
        assert result.verified and damaged == original, f"a damaged file was accepted: {what}"
    typed_error_or_result(lambda: read_manifest_unverified(damaged), f"the manifest read unverified, {what}")


def rewritten(data: bytes, field: Field, value: int) -> bytes:
    damaged = bytearray(data)
    struct.pack_into(field.format, damaged, field.position, value)
    return bytes(damaged)


def seal(data: bytearray) -> bytes:
    """Writes the file's own checksum into it, as the converter does."""
    position = checksum_position(read_flatbuffer(bytes(data)))
    data[position : position + CHECKSUM_HEX_DIGITS] = file_checksum(bytes(data), position).encode("ascii")
    return bytes(data)


def with_external_buffers(data: bytes) -> bytes:
    """The sealed file with the kit's metadata buffers addressed by 64-bit offset and size, resealed.

    Files over 2 GB keep buffer data after the flatbuffer; each such Buffer
    table has no `data` vector but `offset` and `size` (fields 1 and 2). Here
    each kit metadata buffer gets a new Buffer table of that form, appended to
    the file, pointing at the same bytes as before.
    """
    fields = {field.name: field for field in flatbuffer_fields(data)}
    names = {}
    for field in fields.values():
        if field.name.startswith("Model.metadata[") and field.name.endswith("].name length"):
            start = field.position + 4
            names[field.name[: -len(".name length")]] = data[start : start + field.read(data)].decode()
    result = bytearray(data)
    for entry, name in names.items():
        if name not in KIT_METADATA:
            continue
        index = fields[f"{entry}.buffer"].read(data)
        slot = fields[f"Model.buffers[{index}] offset"].position
        length_field = fields[f"Model.buffers[{index}].data length"]
        result += bytes(-len(result) % 8)
        vtable = len(result)
        table = vtable + 12  # the table's 64-bit fields then sit 8-aligned
        result += struct.pack("<5H", 10, 20, 0, 4, 12) + bytes(2)
        result += struct.pack("<iQQ", table - vtable, length_field.position + 4, length_field.read(data))
        struct.pack_into("<I", result, slot, table - slot)
    return seal(result)


class Original(bytes):
    """A fixture's bytes that show as their name in a failure report (not as 150 kB of repr)."""

    def __new__(cls, content: bytes, name: str):
        instance = super().__new__(cls, content)
        instance.name = name
        return instance

    def __repr__(self) -> str:
        return f"<{self.name}, {len(self)} bytes>"


@pytest.fixture(scope="session")
def kit_bytes(fixtures_dir) -> bytes:
    return Original((fixtures_dir / make_fixtures.KIT).read_bytes(), make_fixtures.KIT)


@pytest.fixture(scope="session")
def kit_fields(kit_bytes) -> tuple[Field, ...]:
    return flatbuffer_fields(kit_bytes)


@pytest.fixture(scope="session")
def external(kit_bytes) -> bytes:
    return Original(with_external_buffers(kit_bytes), f"{make_fixtures.KIT} with external buffers")


def reader_fields(fields) -> list[Field]:
    """The fields `read_flatbuffer` itself follows (the rest only the interpreter reads)."""
    return [
        field
        for field in fields
        if field.role is Role.ROOT_OFFSET
        or field.name.startswith(("Model vtable", "Model.operator_codes", "Model.buffers", "Model.metadata["))
    ]


# --- the fixtures themselves -----------------------------------------------------------


def test_fixture_is_sealed_and_every_kind_of_field_is_found(kit_bytes, kit_fields):
    assert read_as_a_ranker_does(kit_bytes).verified
    roles = {field.role for field in kit_fields}
    assert roles >= {Role.ROOT_OFFSET, Role.VTABLE_OFFSET, Role.VTABLE_ENTRY, Role.OFFSET, Role.LENGTH, Role.INDEX}
    names = {field.name for field in kit_fields}
    # The metadata buffer indices and the buffers' data vectors are among them.
    assert {"Model.metadata[0].buffer", "Model.buffers offset", "Model.buffers length"} <= names
    assert any(name.startswith("Model.buffers[") and name.endswith("].data length") for name in names)
    assert len(reader_fields(kit_fields)) > 100


def test_external_buffer_variant_is_sealed_and_reads_the_same_metadata(kit_bytes, external):
    original, variant = read_flatbuffer(kit_bytes).metadata, read_flatbuffer(external).metadata
    assert sorted(variant) == sorted(original)
    for name in original:  # the same bytes, but for the new checksum
        assert variant[name] == original[name] or name == MANIFEST_METADATA_NAME
    start = len(b'{"file_sha256": "') + CHECKSUM_HEX_DIGITS
    assert variant[MANIFEST_METADATA_NAME][start:] == original[MANIFEST_METADATA_NAME][start:]
    assert read_as_a_ranker_does(external).verified
    extents = [field for field in flatbuffer_fields(external) if field.role is Role.EXTENT]
    assert len(extents) == 2 * len(KIT_METADATA)


def test_a_reader_that_hangs_or_raises_an_untyped_error_fails_the_case(kit_bytes, monkeypatch):
    import sys
    import time

    module = sys.modules[__name__]
    monkeypatch.setattr(module, "CASE_SECONDS", 0.05)
    monkeypatch.setattr(module, "read_flatbuffer", lambda data, source="": time.sleep(5))
    with pytest.raises(pytest.fail.Exception, match="ran longer than 0.05 s: read as a Ranker does, a hanging"):
        check_case(kit_bytes, kit_bytes[:-1], "a hanging reader")
    monkeypatch.setattr(module, "read_flatbuffer", lambda data, source="": data[len(data) + 1])
    with pytest.raises(pytest.fail.Exception, match="raised IndexError"):
        check_case(kit_bytes, kit_bytes[:-1], "a reader with a bug")


# --- random damage -----------------------------------------------------------------------


@settings(FUZZ, max_examples=1200)
@given(data=st.data())
def test_byte_flips(kit_bytes, data):
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(kit_bytes) - 1), st.integers(1, 255)), min_size=1, max_size=8,
                 unique_by=lambda flip: flip[0])
    )
    damaged = bytearray(kit_bytes)
    for position, mask in flips:
        damaged[position] ^= mask
    check_case(kit_bytes, bytes(damaged), f"flips {flips}")


@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_zeroed_runs(kit_bytes, data):
    start = data.draw(st.integers(0, len(kit_bytes) - 1))
    length = data.draw(st.integers(1, 4096))
    damaged = bytearray(kit_bytes)
    damaged[start : start + length] = bytes(len(damaged[start : start + length]))
    if bytes(damaged) != kit_bytes:
        check_case(kit_bytes, bytes(damaged), f"{length} zeroed bytes at {start}")


def test_truncations_at_every_field_and_at_random(kit_bytes, kit_fields):
    cuts = {0, 1, 4, 7, 8, len(kit_bytes) - 1}
    cuts |= {field.position + step for field in kit_fields for step in (0, 1, field.width)}
    cuts |= set(range(0, len(kit_bytes), 97))
    for size in sorted(cut for cut in cuts if cut < len(kit_bytes)):
        check_case(kit_bytes, kit_bytes[:size], f"the file cut to {size} bytes")


# --- offsets, lengths and indices pointing anywhere ----------------------------------------


def test_every_hostile_value_in_every_field_the_reader_follows(kit_bytes, kit_fields):
    cases = 0
    for field in reader_fields(kit_fields):
        for value in hostile_values(field, kit_bytes):
            check_case(kit_bytes, rewritten(kit_bytes, field, value), f"{field.name} at {field.position} = {value}")
            cases += 1
    assert cases > 1500


@settings(FUZZ, max_examples=1000)
@given(data=st.data())
def test_any_value_in_any_field(kit_bytes, kit_fields, data):
    field = data.draw(st.sampled_from(kit_fields))
    bits = 8 * field.width
    low = -(1 << (bits - 1)) if field.signed else 0
    value = data.draw(st.integers(low, low + (1 << bits) - 1).filter(lambda v: v != field.read(kit_bytes)))
    check_case(kit_bytes, rewritten(kit_bytes, field, value), f"{field.name} at {field.position} = {value}")


def test_buffer_offsets_and_sizes_outside_the_file(external):
    fields = flatbuffer_fields(external)
    for field in fields:
        if field.role is Role.EXTENT or (field.role is Role.VTABLE_ENTRY and field.position >= len(external) - 200):
            for value in hostile_values(field, external):
                check_case(external, rewritten(external, field, value), f"{field.name} = {value}")


# --- the manifest's JSON, sealed with a valid checksum -----------------------------------

# Values a parser chokes on, drawn as often as all the others together.
EDGE_VALUES = (float("inf"), float("-inf"), float("nan"), 10**40, -1, 0, True, "", [], {}, [float("inf")], ["x"])
json_values = st.recursive(
    st.sampled_from(EDGE_VALUES) | st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


class ManifestParts(tuple):
    """(the manifest's JSON document, the vocabularies' bytes), shown briefly in a failure report."""

    def __repr__(self) -> str:
        return "<the kit fixture's manifest and vocabularies>"


@pytest.fixture(scope="session")
def manifest_parts(kit_bytes) -> tuple[dict, dict]:
    metadata = read_flatbuffer(kit_bytes).metadata
    vocabularies = {name: metadata[name] for name in (USERS_METADATA_NAME, MOVIES_METADATA_NAME)}
    return ManifestParts((json.loads(metadata[MANIFEST_METADATA_NAME]), vocabularies))


@settings(FUZZ, max_examples=800)
@given(data=st.data())
def test_manifest_fields_of_any_value(manifest_parts, data):
    """What a faulty or hostile converter could seal: any field replaced, dropped or added."""
    document, vocabularies = manifest_parts
    document = dict(document)
    key = data.draw(st.sampled_from(sorted(document) + ["signature.output_shape", "signature.user_input", "extra"]))
    action = data.draw(st.sampled_from(["replace", "drop"]))
    if key.startswith("signature."):
        document["signature"] = dict(document["signature"])
        target, key = document["signature"], key.partition(".")[2]
    else:
        target = document
    if action == "drop" and key in target:
        del target[key]
    else:
        target[key] = data.draw(json_values)
    vocabularies = dict(vocabularies)
    if data.draw(st.booleans()):
        name = data.draw(st.sampled_from(sorted(vocabularies)))
        vocabularies[name] = data.draw(st.binary(max_size=64))
    payload = json.dumps(document, allow_nan=True).encode("utf-8")

    def read():
        manifest = Manifest.from_json_bytes(payload, vocabularies)
        return manifest.users, manifest.movies, manifest.summary()

    typed_error_or_result(read, f"the manifest with {key} {action}d: {target.get(key)!r}")


# --- what the fuzzing found (each fixed in the reader named) -----------------------------


def field_named(data: bytes, name: str) -> Field:
    return next(field for field in flatbuffer_fields(data) if field.name == name)


def test_a_zeroed_run_that_empties_every_vector_is_refused(kit_bytes):
    """flatbuffer.py: zeroed from the Model table's fields to the manifest's first byte, the file
    read as a model without buffers or metadata, so it passed for a foreign file without a checksum."""
    start = field_named(kit_bytes, "Model.operator_codes offset").position + 1
    end = kit_bytes.index(b'{"file_sha256"') + 1
    damaged = kit_bytes[:start] + bytes(end - start) + kit_bytes[end:]
    with pytest.raises(ModelLoadError, match="no buffers"):
        read_flatbuffer(damaged, "zeroed.tflite")
    buffers = field_named(kit_bytes, "Model.buffers length")
    with pytest.raises(ModelLoadError, match="zeroed.tflite is truncated or corrupt"):
        read_flatbuffer(rewritten(kit_bytes, buffers, 0), "zeroed.tflite")


def test_a_kit_file_whose_manifest_name_and_prefix_are_damaged_is_refused(kit_bytes):
    """integrity.py: one flip in the manifest's metadata name and one in its first bytes left no
    mark the check looked for (the vocabularies' names were not among them)."""
    damaged = bytearray(kit_bytes)
    damaged[kit_bytes.index(MANIFEST_METADATA_NAME.encode())] ^= 1
    damaged[kit_bytes.index(b'{"file_sha256"')] ^= 1
    model = read_flatbuffer(bytes(damaged), "flipped.tflite")
    assert MANIFEST_METADATA_NAME not in model.metadata
    with pytest.raises(ModelLoadError, match="flipped.tflite is corrupt: its manifest cannot be read"):
        verify(bytes(damaged), model, "flipped.tflite")


@pytest.mark.parametrize(
    "key, value",
    [
        ("movie_count", float("inf")),
        ("user_count", float("-inf")),
        ("training_metrics", None),
        ("training_metrics", [1]),
    ],
)
def test_manifest_values_that_broke_the_reader_are_refused(manifest_parts, key, value):
    """manifest.py: int(inf) raised OverflowError; a training_metrics that is not an object loaded,
    then broke `summary()` (and so `Ranker.info()`) with a TypeError."""
    document, vocabularies = manifest_parts
    payload = json.dumps({**document, key: value}).encode("utf-8")
    with pytest.raises(ManifestError, match="convert the model again"):
        Manifest.from_json_bytes(payload, vocabularies)


def test_a_deeply_nested_manifest_is_refused(manifest_parts):
    """manifest.py: JSON nested deeper than Python's recursion limit raised RecursionError."""
    document, vocabularies = manifest_parts
    payload = json.dumps(document)[:-1].encode() + b', "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ManifestError, match="malformed"):
        Manifest.from_json_bytes(payload, vocabularies)

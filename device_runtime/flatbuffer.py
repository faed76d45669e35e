"""A minimal, dependency-free reader for the parts of a .tflite file the kit needs.

The runtime must explain load failures (which op, which version) and read the
converter's manifest on boards that have neither TensorFlow nor the
`flatbuffers` package, so this reads the TFLite schema's `Model` table by hand:
operator codes, the extent of every buffer, and named metadata buffers. It is
the first code that touches a file's bytes, so every offset it follows is
checked against the file's length, and every buffer must lie inside the file:
a truncated or mangled file is a `ModelLoadError`, never an IndexError, a
crash or a hang. Nothing else of the graph is parsed.

Field numbers follow tensorflow/lite/schema/schema.fbs:
Model{version:0, operator_codes:1, subgraphs:2, description:3, buffers:4,
metadata_buffer:5, metadata:6, signature_defs:7},
OperatorCode{deprecated_builtin_code:0, custom_code:1, version:2, builtin_code:3},
Buffer{data:0, offset:1, size:2}, Metadata{name:0, buffer:1}.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Optional

from device_runtime._builtin_ops import BUILTIN_OPERATOR_NAMES
from device_runtime.errors import ModelLoadError

FILE_IDENTIFIER = b"TFL3"
CUSTOM_OPERATOR_CODE = 32  # BuiltinOperator.CUSTOM


@dataclasses.dataclass(frozen=True)
class OperatorCode:
    """One entry of the model's operator table."""

    name: str  # builtin name such as "FULLY_CONNECTED", or the custom code
    version: int
    is_custom: bool

    @property
    def is_flex(self) -> bool:
        """True for TensorFlow ops run through the Flex delegate (SELECT_TF_OPS)."""
        return self.is_custom and self.name.startswith("Flex")


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: fewer generated methods to compile at start-up
class FlatbufferModel:
    """What the kit reads from a .tflite: schema version, operators and metadata.

    Attributes:
        metadata: name -> the metadata buffer's bytes.
        metadata_offsets: name -> where that buffer starts in the file.
    """

    schema_version: int
    operator_codes: tuple[OperatorCode, ...]
    metadata: dict[str, bytes]
    metadata_offsets: dict[str, int] = dataclasses.field(default_factory=dict)


_STRUCTS = {fmt: struct.Struct(fmt) for fmt in ("<b", "<H", "<i", "<I", "<Q")}


class _Reader:
    """Bounds-checked access to flatbuffer tables, vectors and strings."""

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)

    def _unpack(self, fmt: str, pos: int):
        layout = _STRUCTS[fmt]
        if pos < 0 or pos + layout.size > self.size:
            raise ModelLoadError(f"offset {pos} is outside the file ({self.size} bytes)")
        return layout.unpack_from(self.data, pos)[0]

    def field_position(self, table: int, field: int) -> Optional[int]:
        return self.field_positions(table, field + 1)[field]

    def field_positions(self, table: int, count: int) -> list[Optional[int]]:
        """Where fields 0..count-1 of a table sit (None for an absent field), reading its vtable once."""
        vtable = table - self._unpack("<i", table)
        vtable_size = self._unpack("<H", vtable)
        present = max(0, min(count, (vtable_size - 4) // 2))
        self.check_extent(vtable + 4, 2 * present)
        offsets = struct.unpack_from(f"<{present}H", self.data, vtable + 4) if present else ()
        return [table + offset if offset else None for offset in offsets] + [None] * (count - present)

    def scalar(self, table: int, field: int, fmt: str, default: int) -> int:
        pos = self.field_position(table, field)
        return default if pos is None else self._unpack(fmt, pos)

    def indirect(self, table: int, field: int) -> Optional[int]:
        pos = self.field_position(table, field)
        return None if pos is None else pos + self._unpack("<I", pos)

    def vector(self, table: int, field: int) -> tuple[int, int]:
        """Returns (position of the first element, length); (0, 0) when absent."""
        pos = self.indirect(table, field)
        if pos is None:
            return 0, 0
        return pos + 4, self._unpack("<I", pos)

    def tables(self, table: int, field: int) -> list[int]:
        start, length = self.vector(table, field)
        self.check_extent(start, 4 * length)  # a mangled length fails here, not after a long loop
        offsets = struct.unpack_from(f"<{length}I", self.data, start) if length else ()
        return [start + 4 * i + offset for i, offset in enumerate(offsets)]

    def check_extent(self, start: int, length: int) -> None:
        if start < 0 or length < 0 or start + length > len(self.data):
            raise ModelLoadError(f"a {length}-byte block at offset {start} is outside the file")

    def bytes_at(self, start: int, length: int) -> bytes:
        self.check_extent(start, length)
        return bytes(self.data[start : start + length])

    def string(self, table: int, field: int) -> Optional[str]:
        pos = self.indirect(table, field)
        if pos is None:
            return None
        return self.bytes_at(pos + 4, self._unpack("<I", pos)).decode("utf-8", errors="replace")


def read_flatbuffer(data: bytes, source: str = "model") -> FlatbufferModel:
    """Parses the operator table and the named metadata of a .tflite file.

    Args:
        data: the whole file's bytes.
        source: how to name the file in error messages.

    Raises:
        ModelLoadError: the bytes are not a TFLite flatbuffer or are truncated.
    """
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelLoadError(
            f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier); "
            "pass the .tflite file written by `python -m convert`"
        )
    reader = _Reader(data)
    try:
        root = reader._unpack("<I", 0)
        operators = []
        for code_table in reader.tables(root, 1):
            deprecated = reader.scalar(code_table, 0, "<b", 0)
            builtin = max(deprecated, reader.scalar(code_table, 3, "<i", 0))
            version = reader.scalar(code_table, 2, "<i", 1)
            if builtin == CUSTOM_OPERATOR_CODE:
                name = reader.string(code_table, 1) or "CUSTOM"
                operators.append(OperatorCode(name=name, version=version, is_custom=True))
            else:
                name = BUILTIN_OPERATOR_NAMES.get(builtin, f"BUILTIN_{builtin}")
                operators.append(OperatorCode(name=name, version=version, is_custom=False))

        buffers = reader.tables(root, 4)
        if not buffers:  # the schema's buffer 0, the empty sentinel, is always there (a zeroed vector: none)
            raise ModelLoadError("it has no buffers, not even the empty buffer 0 every TFLite file holds")
        extents = [_buffer_extent(reader, buffer) for buffer in buffers]  # each checked to lie inside the file
        metadata, offsets = {}, {}
        for entry in reader.tables(root, 6):
            name = reader.string(entry, 0) or ""
            index = reader.scalar(entry, 1, "<I", 0)
            if index >= len(buffers):
                raise ModelLoadError(f"metadata {name!r} points at buffer {index}, which does not exist")
            start, length = extents[index]
            metadata[name] = reader.bytes_at(start, length)
            offsets[name] = start
        return FlatbufferModel(
            schema_version=reader.scalar(root, 0, "<I", 0),
            operator_codes=tuple(operators),
            metadata=metadata,
            metadata_offsets=offsets,
        )
    except ModelLoadError as error:
        raise ModelLoadError(
            f"{source} is truncated or corrupt ({error}); convert the model again"
        ) from None


def _buffer_extent(reader: _Reader, table: int) -> tuple[int, int]:
    """(start, length) of a buffer's data, checked to lie inside the file; (0, 0) when empty.

    A model has hundreds of buffers, most of them empty, so this reads a buffer's
    table with local lookups only (it is most of a load's parsing time).
    """
    data, size = reader.data, reader.size
    if table < 0 or table + 4 > size:
        raise ModelLoadError(f"a buffer table at offset {table} is outside the file")
    vtable = table - _STRUCTS["<i"].unpack_from(data, table)[0]
    if vtable < 0 or vtable + 4 > size:
        raise ModelLoadError(f"a vtable at offset {vtable} is outside the file")
    read_u16 = _STRUCTS["<H"].unpack_from
    vtable_size = read_u16(data, vtable)[0]
    reader.check_extent(vtable, vtable_size)
    data_offset = read_u16(data, vtable + 4)[0] if vtable_size > 4 else 0
    start = length = 0
    if data_offset:
        read_u32 = _STRUCTS["<I"].unpack_from
        field = table + data_offset
        reader.check_extent(field, 4)
        vector = field + read_u32(data, field)[0]
        reader.check_extent(vector, 4)
        start, length = vector + 4, read_u32(data, vector)[0]
    if not length:
        if vtable_size <= 6:  # no offset/size fields: an empty buffer
            return 0, 0
        start, length = _external_extent(reader, table)
    reader.check_extent(start, length)
    return start, length


def _external_extent(reader: _Reader, table: int) -> tuple[int, int]:
    """A buffer without inline data: models over 2 GB keep their buffers after the flatbuffer, by offset/size."""
    _, offset_field, size_field = reader.field_positions(table, 3)
    offset = 0 if offset_field is None else reader._unpack("<Q", offset_field)
    length = 0 if size_field is None else reader._unpack("<Q", size_field)
    return (offset, length) if offset > 1 else (0, 0)

"""Ways to damage a model file: the mutations of the loader fuzz test and of `python -m benchmarks mutations`.

Each mutation is drawn from a `random.Random`, so a seed and a case number name
it for good, and each always changes the file:

- `flip`: 1 to 8 bytes at random positions, each XORed with a random non-zero
  mask (bit rot, a bad sector);
- `zero`: a run of 1 to 4,096 bytes (length log-uniform) that holds at least one
  non-zero byte, set to zero (a page that was never written);
- `truncate`: the file cut at a random length from 0 to its size - 1 (a copy or
  download cut off);
- `field`: one offset, length, index or vtable entry of the flatbuffer,
  found by walking the TFLite schema (`flatbuffer_fields`), rewritten with a
  hostile value: 0, just past the end of the file, the largest values, the
  value plus or minus a little, or somewhere else in the file.

The walk knows the tables of tensorflow/lite/schema/schema.fbs that a loader
follows (Model, OperatorCode, SubGraph, Tensor, Operator, Buffer, Metadata,
SignatureDef, TensorMap) and, for any other table (an operator's options), its
vtable. It reads a well-formed file; parts it cannot read are skipped.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import struct
from typing import Optional, Sequence

MAX_FLIPPED_BYTES = 8
MAX_ZEROED_LOG2 = 12  # runs of up to 4,096 bytes
_ATTEMPTS = 100  # draws before a zeroed run that changes nothing gives way to a flip


class Kind(str, enum.Enum):
    """A kind of mutation."""

    FLIP = "flip"
    ZERO = "zero"
    TRUNCATE = "truncate"
    FIELD = "field"


# The mix of the experiment (issue 15): flips, zeroed runs and truncations.
DEFAULT_KINDS = (Kind.FLIP, Kind.ZERO, Kind.TRUNCATE)


class Role(str, enum.Enum):
    """What a flatbuffer field means to a loader."""

    ROOT_OFFSET = "root offset"
    VTABLE_OFFSET = "vtable offset"  # a table's signed offset to its vtable
    VTABLE_ENTRY = "vtable entry"  # a vtable's size, its table's size, or a field's offset in the table
    OFFSET = "offset"  # an unsigned offset to a table, vector or string
    LENGTH = "length"  # a vector's or string's element count
    INDEX = "index"  # an index into another vector (buffer, tensor, operator code, subgraph)
    DIMENSION = "dimension"  # a tensor's shape entry
    EXTENT = "extent"  # a buffer's 64-bit offset or size (files over 2 GB)


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of the file that a loader follows.

    Attributes:
        position: where its bytes start.
        width: 2, 4 or 8 bytes.
        signed: whether it is read as a signed integer.
        role: what it means.
        name: where it sits, e.g. "Model.buffers[3].data length".
    """

    position: int
    width: int
    signed: bool
    role: Role
    name: str

    @property
    def format(self) -> str:
        """The struct format that reads it."""
        code = {2: "h", 4: "i", 8: "q"}[self.width]
        return "<" + (code if self.signed else code.upper())

    def read(self, data: bytes) -> int:
        return struct.unpack_from(self.format, data, self.position)[0]


@dataclasses.dataclass(frozen=True)
class Mutation:
    """A damaged copy of a file and what was done to it."""

    kind: Kind
    detail: str
    data: bytes


# --- the flatbuffer walk -----------------------------------------------------------

# Per table: field number -> (name, what it holds). "table:T" / "tables:T" follow
# a table or a vector of tables of type T; "options" a table of unknown type.
_SCHEMA = {
    "Model": {
        1: ("operator_codes", "tables:OperatorCode"),
        2: ("subgraphs", "tables:SubGraph"),
        3: ("description", "string"),
        4: ("buffers", "tables:Buffer"),
        5: ("metadata_buffer", "indices"),
        6: ("metadata", "tables:Metadata"),
        7: ("signature_defs", "tables:SignatureDef"),
    },
    "OperatorCode": {1: ("custom_code", "string")},
    "SubGraph": {
        0: ("tensors", "tables:Tensor"),
        1: ("inputs", "indices"),
        2: ("outputs", "indices"),
        3: ("operators", "tables:Operator"),
        4: ("name", "string"),
    },
    "Tensor": {
        0: ("shape", "dimensions"),
        2: ("buffer", "index"),
        3: ("name", "string"),
        4: ("quantization", "options"),
        7: ("shape_signature", "dimensions"),
    },
    "Operator": {
        0: ("opcode_index", "index"),
        1: ("inputs", "indices"),
        2: ("outputs", "indices"),
        4: ("builtin_options", "options"),
        5: ("custom_options", "bytes"),
        8: ("intermediates", "indices"),
    },
    "Buffer": {0: ("data", "bytes"), 1: ("offset", "extent"), 2: ("size", "extent")},
    "Metadata": {0: ("name", "string"), 1: ("buffer", "index")},
    "SignatureDef": {
        0: ("inputs", "tables:TensorMap"),
        1: ("outputs", "tables:TensorMap"),
        2: ("signature_key", "string"),
        4: ("subgraph_index", "index"),
    },
    "TensorMap": {0: ("name", "string"), 1: ("tensor_index", "index")},
}


class _Walk:
    def __init__(self, data: bytes):
        self.data = data
        self.fields: list[Field] = []
        self.seen: set[int] = set()

    def u16(self, position: int) -> int:
        return struct.unpack_from("<H", self.data, position)[0]

    def u32(self, position: int) -> int:
        return struct.unpack_from("<I", self.data, position)[0]

    def add(self, position: int, width: int, role: Role, name: str, signed: bool = False) -> None:
        if 0 <= position and position + width <= len(self.data) and position not in self.seen:
            self.seen.add(position)
            self.fields.append(Field(position, width, signed, role, name))

    def table(self, table: int, type_name: Optional[str], name: str) -> None:
        """Records a table's vtable offset, its vtable entries and the fields the schema names."""
        try:
            self._table(table, type_name, name)
        except struct.error:
            pass  # a part that points outside the file is not walked further

    def _table(self, table: int, type_name: Optional[str], name: str) -> None:
        self.add(table, 4, Role.VTABLE_OFFSET, f"{name} vtable offset", signed=True)
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vtable_size = self.u16(vtable)
        for entry in range(0, vtable_size, 2):
            self.add(vtable + entry, 2, Role.VTABLE_ENTRY, f"{name} vtable entry {entry // 2}")
        for number, (field_name, holds) in _SCHEMA.get(type_name, {}).items():
            if 4 + 2 * number >= vtable_size:
                continue
            offset = self.u16(vtable + 4 + 2 * number)
            if offset:
                self.field(table + offset, holds, f"{name}.{field_name}")

    def field(self, position: int, holds: str, name: str) -> None:
        if holds == "index":
            self.add(position, 4, Role.INDEX, name)
            return
        if holds == "extent":
            self.add(position, 8, Role.EXTENT, name)
            return
        self.add(position, 4, Role.OFFSET, f"{name} offset")
        target = position + self.u32(position)
        if holds.startswith("table") and not holds.startswith("tables"):
            self.table(target, holds.partition(":")[2], name)
            return
        if holds == "options":
            self.table(target, None, name)
            return
        self.add(target, 4, Role.LENGTH, f"{name} length")
        length = self.u32(target)
        if holds.startswith("tables:"):
            element_type = holds.partition(":")[2]
            for index in range(length):
                slot = target + 4 + 4 * index
                self.add(slot, 4, Role.OFFSET, f"{name}[{index}] offset")
                self.table(slot + self.u32(slot), element_type, f"{name}[{index}]")
        elif holds in ("indices", "dimensions"):
            role = Role.INDEX if holds == "indices" else Role.DIMENSION
            for index in range(length):
                self.add(target + 4 + 4 * index, 4, role, f"{name}[{index}]", signed=True)


def flatbuffer_fields(data: bytes) -> tuple[Field, ...]:
    """Every offset, length, index and vtable entry a loader follows in a .tflite file.

    Args:
        data: a well-formed TFLite flatbuffer.

    Returns:
        The fields in file order; empty when `data` is too short to hold a root offset.
    """
    walk = _Walk(bytes(data))
    if len(data) < 8:
        return ()
    walk.add(0, 4, Role.ROOT_OFFSET, "root offset")
    walk.table(walk.u32(0), "Model", "Model")
    return tuple(sorted(walk.fields, key=lambda field: field.position))


# --- mutations -----------------------------------------------------------------------


def mutate(data: bytes, kind: Kind, rng: random.Random, fields: Sequence[Field] = ()) -> Mutation:
    """One damaged copy of `data`, different from it.

    Args:
        data: the file.
        kind: the kind of mutation.
        rng: where every choice is drawn from.
        fields: `flatbuffer_fields(data)`, needed for `Kind.FIELD`.

    Raises:
        ValueError: `data` is empty, or `Kind.FIELD` without fields.
    """
    if not data:
        raise ValueError("cannot mutate an empty file")
    kind = Kind(kind)
    if kind is Kind.TRUNCATE:
        size = rng.randrange(len(data))
        return Mutation(kind, f"cut to {size} of {len(data)} bytes", bytes(data[:size]))
    if kind is Kind.FIELD:
        if not fields:
            raise ValueError("a field mutation needs the file's flatbuffer fields (flatbuffer_fields)")
        return rewrite_field(data, rng.choice(fields), rng)
    if kind is Kind.ZERO:
        for _ in range(_ATTEMPTS):
            length = min(int(2 ** rng.uniform(0, MAX_ZEROED_LOG2)), len(data))
            start = rng.randrange(len(data) - length + 1)
            if any(data[start : start + length]):
                damaged = bytearray(data)
                damaged[start : start + length] = bytes(length)
                return Mutation(kind, f"zeroed {length} byte{'s' if length > 1 else ''} at {start}", bytes(damaged))
    damaged = bytearray(data)
    positions = sorted(rng.sample(range(len(data)), min(rng.randint(1, MAX_FLIPPED_BYTES), len(data))))
    for position in positions:
        damaged[position] ^= rng.randint(1, 255)
    return Mutation(Kind.FLIP, f"flipped bytes at {', '.join(map(str, positions))}", bytes(damaged))


def hostile_values(field: Field, data: bytes) -> tuple[int, ...]:
    """Values that a careless loader would follow outside the file, or into the wrong place."""
    size = len(data)
    current = field.read(data)
    bits = 8 * field.width
    largest = (1 << (bits - 1)) - 1 if field.signed else (1 << bits) - 1
    values = {0, 1, 2, 3, largest, current + 1, current - 1, current + 4, current - 4, current * 2}
    if field.signed:
        values |= {-1, -current, -(1 << (bits - 1)), -size}
    else:
        values |= {1 << (bits - 1), largest - 3}
    if field.role in (Role.ROOT_OFFSET, Role.OFFSET):
        # Relative to the field: exactly the end of the file, one past it, a little before it.
        values |= {size - field.position, size - field.position + 4, size - field.position - 1}
    elif field.role is Role.VTABLE_OFFSET:
        values |= {field.position, field.position - size, field.position + 2}
    elif field.role in (Role.LENGTH, Role.DIMENSION, Role.EXTENT):
        values |= {size, size // 4, size + 1, (1 << 30), (1 << 30) - 1, 1 << 32}
    elif field.role is Role.INDEX:
        values |= {current + 1000, (1 << 31) - 1}
    low = -(1 << (bits - 1)) if field.signed else 0
    return tuple(sorted(value for value in values if low <= value <= largest and value != current))


def rewrite_field(data: bytes, field: Field, rng: random.Random) -> Mutation:
    """`data` with one field rewritten: a hostile value, or (one time in four) a random one."""
    values = hostile_values(field, data)
    current = field.read(data)
    if rng.random() < 0.25 or not values:
        bits = 8 * field.width
        low = -(1 << (bits - 1)) if field.signed else 0
        value = current
        while value == current:
            value = rng.randint(low, low + (1 << bits) - 1)
    else:
        value = rng.choice(values)
    damaged = bytearray(data)
    struct.pack_into(field.format, damaged, field.position, value)
    detail = f"{field.name} ({field.role.value}) at {field.position}: {current} -> {value}"
    return Mutation(Kind.FIELD, detail, bytes(damaged))


def case_rng(seed: int, case: int) -> random.Random:
    """The generator of case `case` of a run seeded with `seed` (reproducible on any machine)."""
    return random.Random(f"ranking-kit mutation {seed} {case}")


def case_mutation(data: bytes, seed: int, case: int, kinds: Sequence[Kind], fields: Sequence[Field] = ()) -> Mutation:
    """Case `case` of a run seeded with `seed`: its kind drawn from `kinds`, then the mutation itself."""
    rng = case_rng(seed, case)
    return mutate(data, rng.choice(tuple(kinds)), rng, fields)

"""Mutated model files against the kit's own readers, the first code that touches untrusted bytes.

Every mutation (bit flips, zeroed runs, truncations, length and offset fields
pointed outside the file) must end in a typed error, or in a parse whose
checksum verifies, which only the unchanged bytes can give. Never another
exception type, a crash or a hang. Seeded, so a failure can be replayed.
"""

from __future__ import annotations

import random

import pytest

from device_runtime import DeviceRuntimeError
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.integrity import verify
from device_runtime.manifest import read_manifest
from tests.device_runtime import make_fixtures as mf

MUTATIONS = 3000  # per model


def mutate(content: bytes, rng: random.Random) -> bytes:
    data = bytearray(content)
    kind = rng.randrange(5)
    if kind == 0:  # a few bit flips
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # a zeroed run
        start = rng.randrange(len(data))
        end = min(len(data), start + rng.randint(1, 64))
        data[start:end] = bytes(end - start)
    elif kind == 2:  # cut off
        del data[rng.randrange(len(data)) :]
    elif kind == 3:  # a 32-bit field near the start (offsets, lengths) pointed anywhere
        position = rng.randrange(0, min(len(data), 4096) - 4) & ~3
        value = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, len(data), len(data) + 4, rng.getrandbits(32)])
        data[position : position + 4] = value.to_bytes(4, "little")
    else:  # a random byte anywhere
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


@pytest.mark.parametrize("model", [mf.FACTOR, mf.KIT])
def test_mutated_files_end_in_a_typed_error_or_are_unchanged(fixtures_dir, model):
    content = (fixtures_dir / model).read_bytes()
    rng = random.Random(f"fuzz {model}")
    outcomes = {"refused": 0, "unchanged": 0}
    for case in range(MUTATIONS):
        mutated = mutate(content, rng)
        try:
            parsed = read_flatbuffer(mutated, "mutated")
            verification = verify(mutated, parsed, "mutated")
            read_manifest(parsed)
        except DeviceRuntimeError:
            outcomes["refused"] += 1
            continue
        except Exception as error:  # any other type is a reader bug
            pytest.fail(f"case {case}: {type(error).__name__}: {error}")
        assert verification.checksum is not None, f"case {case}: a kit file lost its checksum and was accepted"
        assert mutated == content, f"case {case}: changed bytes passed the checksum"
        outcomes["unchanged"] += 1
    assert outcomes["refused"] > MUTATIONS * 0.9, outcomes

"""The tower family (`TowerServing`: strings and index space), as `python -m train` exports the tutorial preset,
converted once and checked against the SavedModel."""

from __future__ import annotations

import numpy as np
import pytest

from device_runtime import contract
from device_runtime.flatbuffer import read_flatbuffer
from device_runtime.manifest import read_manifest
from tests.convert.scoring import buffers_and_readers, litert_signature, rows, saved_model_scores, saved_model_signature

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def tower(conversions):
    return conversions.get("float32")  # the tiny tutorial export, as every test of the strings signature converts it


@pytest.fixture(scope="module")
def tower_saved_model(tiny_export):
    return tiny_export / "saved_model"


@pytest.fixture(scope="module")
def movies(tower):
    return list(read_manifest(read_flatbuffer(tower.tflite_path.read_bytes())).movies)


def test_strings_and_index_space_only(tower):
    assert tower.accepted, getattr(tower, "failures", tower)
    manifest = read_manifest(read_flatbuffer(tower.tflite_path.read_bytes()))
    assert manifest.signatures == contract.TOWER_SIGNATURES and manifest.state_dimension is None
    assert tuple(tower.signature_parity) == contract.TOWER_SIGNATURES
    assert tower.signature_parity[contract.TOP_K].top10_identical == 1.0


def test_score_rows_of_the_manifest_rows_are_the_saved_models_string_scores(tower, tower_saved_model, movies):
    users = list(read_manifest(read_flatbuffer(tower.tflite_path.read_bytes())).users)
    for row in (1, 250, len(users)):
        found = litert_signature(
            tower.tflite_path,
            contract.SCORE_ROWS,
            user_row=rows(row),
            item_rows=np.arange(1, len(movies) + 1, dtype=np.int32),
        )
        expected = saved_model_scores(tower_saved_model, [users[row - 1]] * len(movies), movies)
        np.testing.assert_allclose(found[contract.RATING], expected, atol=1e-5)


def test_top_k_is_the_saved_models(tower, tower_saved_model):
    for row in (2, 77, 900):
        expected = saved_model_signature(tower_saved_model, contract.TOP_K, user_row=rows(row), k=rows(20))
        found = litert_signature(tower.tflite_path, contract.TOP_K, user_row=rows(row), k=rows(20))
        np.testing.assert_array_equal(found[contract.ITEM_ROWS], expected[contract.ITEM_ROWS])
        np.testing.assert_allclose(found[contract.RATING], expected[contract.RATING], atol=1e-5)


def test_the_movie_table_is_stored_once(tower, movies):
    # The 32-wide embeddings of every movie and the unknown row; top-k must not fold a second copy of rows 1..n.
    buffers = buffers_and_readers(tower.tflite_path)
    tables = [readers for data, readers in buffers.values() if len(data) == (len(movies) + 1) * 32 * 4]
    assert len(tables) == 1 and len({subgraph for subgraph, _, _ in tables[0]}) == 3
    assert not [data for data, _ in buffers.values() if len(data) == len(movies) * 32 * 4]

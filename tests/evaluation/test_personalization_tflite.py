"""`python -m evaluation personalization` end to end on two small converted factor models, against numpy.

The models are `train.serving.FactorServing` over seeded random tables (built
and converted like the device fixtures); the held-out model lacks users 4-6,
the reference has them. The expected figures come from numpy alone: the
fold-in's exact ridge solve (`tests.device_runtime.serving_fixtures.ridge_state`)
and the tables' scores. The command itself runs in a fresh interpreter that
must never import TensorFlow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation import personalization
from train import holdout
from train.metrics import ndcg_at_k

pytestmark = pytest.mark.tensorflow

REPO = Path(__file__).resolve().parents[2]
MOVIES = tuple(f"Film {n} (19{50 + n})" for n in range(12))
KNOWN, HELD_OUT = ("1", "2", "3"), ("4", "5", "6")
# Each held-out user's (train titles, test titles), as movie positions; user 6 rates one movie in training.
RATED = {"4": (range(0, 7), range(7, 12)), "5": (range(3, 9), (0, 1, 2)), "6": ((11,), (0, 5, 6))}
KS = (0, 1, 3, 5, None)
SEED = 4


def _tables(users, seed: int):
    from train.serving import FactorTables

    rng = np.random.default_rng(seed)

    def table(*shape, scale):
        values = rng.normal(0.0, scale, shape).astype(np.float32)
        values[0] = 0.0
        return values

    return FactorTables(
        global_mean=3.5,
        user_bias=table(len(users) + 1, scale=0.2),
        movie_bias=table(len(MOVIES) + 1, scale=0.3),
        user_vectors=table(len(users) + 1, 3, scale=0.4),
        movie_vectors=table(len(MOVIES) + 1, 3, scale=0.4),
        users=tuple(users),
        movies=MOVIES,
    )


def _rating(user: str, position: int) -> float:
    return float(1 + (int(user) * 3 + position * 7) % 5)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.device_runtime.serving_fixtures import build_factor_model

    folder = tmp_path_factory.mktemp("personalization")
    held_out_tables, reference_tables = _tables(KNOWN, seed=1), _tables(KNOWN + HELD_OUT, seed=2)
    build_factor_model(held_out_tables, folder / "held_out.tflite", name="held-out-fixture")
    build_factor_model(reference_tables, folder / "reference.tflite", name="reference-fixture")
    (folder / holdout.USERS_FILE).write_text("".join(f"{user}\n" for user in HELD_OUT), encoding="utf-8")
    lines = ["\t".join(holdout.ROWS_HEADER)]
    for user, (train, test) in RATED.items():
        lines += [f"train\t{user}\t{MOVIES[i]}\t{_rating(user, i)}" for i in train]
        lines += [f"test\t{user}\t{MOVIES[i]}\t{_rating(user, i)}" for i in test]
    (folder / holdout.ROWS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, held_out_tables, reference_tables


def _expected(held_out_tables, reference_tables) -> dict:
    """Per k: (rmse, ndcg) from numpy; and the reference's."""
    from tests.device_runtime.serving_fixtures import ridge_state, state_scores

    expected = {}
    for k in KS + ("reference",):
        users, truths, scores = [], [], []
        for user, (train, test) in RATED.items():
            titles = [MOVIES[i] for i in train]
            order = personalization.history_order(user, titles, SEED)
            history = [(titles[i], _rating(user, train[i])) for i in order]
            rows = np.array(list(test)) + 1
            if k == "reference":
                user_row = reference_tables.users.index(user) + 1
                predicted = reference_tables.ratings(np.full(len(rows), user_row), rows)
            else:
                vector, bias = ridge_state(held_out_tables, history if k is None else history[:k])
                predicted = state_scores(held_out_tables, vector, bias)[rows - 1]
            users += [user] * len(rows)
            truths += [_rating(user, i) for i in test]
            scores += list(predicted)
        truth, score = np.array(truths), np.array(scores)
        expected[k] = (float(np.sqrt(np.mean((score - truth) ** 2))), ndcg_at_k(np.array(users), truth, score, 10))
    return expected


def test_the_command_matches_numpy_and_imports_no_tensorflow(setup, tmp_path):
    folder, held_out_tables, reference_tables = setup
    out = tmp_path / "out"
    argv = [
        "personalization", "--model", str(folder / "held_out.tflite"), "--reference", str(folder / "reference.tflite"),
        "--holdout-users", str(folder / holdout.USERS_FILE), "--seed", str(SEED), "--ks", "0,1,3,5,all",
        "--out", str(out), "--markdown", str(tmp_path / "table.md"),
    ]
    script = (
        "import sys\nfrom evaluation.__main__ import main\ncode = main(sys.argv[1:])\n"
        "assert 'tensorflow' not in sys.modules, 'the evaluation imported TensorFlow'\nsys.exit(code)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr

    results = json.loads((out / personalization.RESULTS_FILE).read_text())
    expected = _expected(held_out_tables, reference_tables)
    assert [row["k"] for row in results["by_history"]] == ["0", "1", "3", "5", "all"]
    for row, k in zip(results["by_history"], KS):
        assert row["rmse"] == pytest.approx(expected[k][0], abs=2e-5), k
        assert row["ndcg_at_10"] == pytest.approx(expected[k][1], abs=2e-5), k
        assert row["users"] == 3 and row["rows"] == 11
    # User 6 has one training row, so k >= 1 gives them that one.
    assert [row["mean_history"] for row in results["by_history"]] == [0.0, 1.0, 2.33, 3.67, round(14 / 3, 2)]
    assert results["reference"]["rmse"] == pytest.approx(expected["reference"][0], abs=2e-5)
    assert results["reference"]["ndcg_at_10"] == pytest.approx(expected["reference"][1], abs=2e-5)
    assert results["models"]["model"]["quantization"] == "float32" and results["held_out_users"] == 3

    table = (tmp_path / "table.md").read_text()
    assert completed.stdout == table
    assert "Produced by `python -m evaluation personalization --model" in table and "Machine: " in table
    assert f"| 0 (unknown-user fallback) | 3 | 0.0 | {expected[0][0]:.4f} | +0.0000 |" in table
    assert f"| trained with them (reference, by user id) | 3 | - | {expected['reference'][0]:.4f} |" in table


def test_the_fallback_is_the_unknown_user_and_the_models_must_not_be_swapped(setup, tmp_path):
    from device_runtime import Ranker
    from evaluation.errors import SettingsError

    folder, held_out_tables, _ = setup
    ranker = Ranker(folder / "held_out.tflite")
    fallback = np.clip(held_out_tables.global_mean + held_out_tables.movie_bias[1:], 1, 5)
    np.testing.assert_allclose(ranker.score(ranker.personalize([]), MOVIES), fallback, atol=1e-6)
    np.testing.assert_allclose(ranker.score("4", MOVIES), fallback, atol=1e-6)  # a held-out id: unknown

    def settings(model, reference):
        return personalization.PersonalizationSettings(
            model=folder / model, reference=folder / reference, holdout_users=folder / holdout.USERS_FILE,
            out=tmp_path / "out",
        )

    with pytest.raises(SettingsError, match=r"--model .*reference.tflite knows 3 of the held-out users"):
        personalization.evaluate_personalization(settings("reference.tflite", "held_out.tflite"))
    assert not (tmp_path / "out").exists()

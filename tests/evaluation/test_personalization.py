"""The personalization evaluation's protocol and math against hand computations, and its bad flags (no TensorFlow)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evaluation import personalization
from evaluation.__main__ import main
from evaluation.errors import SettingsError
from train import holdout

# The shell: printf '0:7:A (1990)' | sha256sum, and so on, sorted: 2b6f... A, 59a5... D, 5d87... B, 6634... C.
ORDER_SEED_0 = [0, 3, 1, 2]
ORDER_SEED_1 = [0, 3, 2, 1]  # 3335... A, 9e7f... D, ce13... C, fb69... B
TITLES = ["A (1990)", "B (1991)", "C (1992)", "D (1993)"]

ROWS = [  # user "9" has no test row: not scored
    ("train", "7", "A (1990)", 5.0), ("train", "7", "B (1991)", 1.0), ("train", "7", "C (1992)", 2.0),
    ("train", "7", "D (1993)", 3.0), ("test", "7", "E (1994)", 4.0), ("test", "7", "F (1995)", 2.0),
    ("test", "7", "G (1996)", 5.0), ("train", "8", "A (1990)", 2.0), ("test", "8", "E (1994)", 3.0),
    ("test", "8", "F (1995)", 1.0), ("train", "9", "B (1991)", 4.0),
]
OFFSET = {"E (1994)": 0.0, "F (1995)": 0.5, "G (1996)": -0.5}


def _rows(rows=ROWS) -> holdout.HoldoutRows:
    split, users, titles, ratings = zip(*rows)
    return holdout.HoldoutRows(np.array(split), np.array(users), np.array(titles), np.array(ratings, np.float64))


def _mean_of_history(history, titles) -> np.ndarray:
    """A stand-in model: the history's mean rating (3 without one) plus a fixed offset per title."""
    base = np.mean([rating for _, rating in history]) if history else 3.0
    return np.array([base + OFFSET[title] for title in titles])


def test_history_order_matches_the_shell():
    assert personalization.history_order("7", TITLES, seed=0).tolist() == ORDER_SEED_0
    assert personalization.history_order("7", TITLES, seed=1).tolist() == ORDER_SEED_1


def test_histories_follow_that_order_and_users_without_test_rows_are_not_scored():
    grouped = personalization.group_rows(_rows(), ["7", "8", "9"], seed=0)
    assert grouped["7"].history == (("A (1990)", 5.0), ("D (1993)", 3.0), ("B (1991)", 1.0), ("C (1992)", 2.0))
    assert grouped["7"].test_titles == ("E (1994)", "F (1995)", "G (1996)")
    assert grouped["9"].test_titles == ()


def test_figures_per_history_length_by_hand():
    grouped = personalization.group_rows(_rows(), ["7", "8", "9"], seed=0)
    figures = personalization.figures_by_history(grouped, (0, 1, 2, None), _mean_of_history)

    # User 7's test ratings 4, 2, 5 and user 8's 3, 1; each prediction is base + offset (0, +0.5, -0.5).
    # k=0: bases 3 and 3; k=1: 5 (A) and 2 (A); k=2: 4 (A, D) and 2; all: 2.75 and 2.
    squared = {
        0: (1.0 + 2.25 + 6.25) + (0.0 + 6.25),
        1: (1.0 + 12.25 + 0.25) + (1.0 + 2.25),
        2: (0.0 + 6.25 + 2.25) + (1.0 + 2.25),
        None: (1.5625 + 1.5625 + 7.5625) + (1.0 + 2.25),
    }
    # The offsets order each user's movies F, E, G whatever the base: gains 2^r - 1, discounts 1/log2(i + 2).
    ndcg_7 = (3 + 15 / math.log2(3) + 31 / 2) / (31 + 15 / math.log2(3) + 3 / 2)
    ndcg_8 = (1 + 7 / math.log2(3)) / (7 + 1 / math.log2(3))
    for result, k in zip(figures, (0, 1, 2, None)):
        assert result.k == k and result.users == 2 and result.rows == 5
        assert result.rmse == pytest.approx(math.sqrt(squared[k] / 5), abs=1e-12)
        assert result.ndcg_at_10 == pytest.approx((ndcg_7 + ndcg_8) / 2, abs=1e-12)
    assert [result.mean_history for result in figures] == [0.0, 1.0, 1.5, 2.5]


def test_reference_figures_by_hand():
    grouped = personalization.group_rows(_rows(), ["7", "8", "9"], seed=0)
    reference = personalization.reference_figures(grouped, lambda user, titles: np.full(len(titles), float(user) - 3))
    # User 7 scored 4 (errors 0, 2, -1), user 8 scored 5 (errors 2, 4).
    assert reference.rmse == pytest.approx(math.sqrt((0 + 4 + 1 + 4 + 16) / 5), abs=1e-12)
    assert (reference.users, reference.rows, reference.k) == (2, 5, None)


@pytest.mark.parametrize(
    "users, message",
    [(["7", "8"], r"rows of 1 users not in --holdout-users \(e.g. '9'\)"),
     (["7", "8", "9", "10"], r"no row of 1 held-out users \(e.g. '10'\)")],
)
def test_the_rows_and_users_files_must_agree(users, message):
    with pytest.raises(SettingsError, match=message):
        personalization.group_rows(_rows(), users, seed=0)


def test_no_test_row_at_all_is_refused():
    grouped = personalization.group_rows(_rows([("train", "9", "B (1991)", 4.0)]), ["9"], seed=0)
    with pytest.raises(SettingsError, match="no held-out user has a test row"):
        personalization.figures_by_history(grouped, (0,), _mean_of_history)


def test_ks_parse():
    assert personalization.parse_ks("0,1, 3,All") == (0, 1, 3, None)
    for text, message in (("1,x", "'x' is neither a whole number nor 'all'"), ("-1", "'-1' is negative")):
        with pytest.raises(SettingsError, match=message):
            personalization.parse_ks(text)


@pytest.fixture
def files(tmp_path) -> dict:
    model, reference = tmp_path / "a.tflite", tmp_path / "b.tflite"
    model.write_bytes(b"not a model")
    reference.write_bytes(b"not a model either")
    users = tmp_path / "holdout" / holdout.USERS_FILE
    users.parent.mkdir()
    users.write_text("7\n8\n9\n", encoding="utf-8")
    lines = ["\t".join(holdout.ROWS_HEADER)] + ["\t".join(map(str, row)) for row in ROWS]
    (users.parent / holdout.ROWS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"model": model, "reference": reference, "users": users, "out": tmp_path / "out"}


def _argv(files, *extra) -> list:
    return ["personalization", "--model", str(files["model"]), "--reference", str(files["reference"]),
            "--holdout-users", str(files["users"]), "--out", str(files["out"]), *extra]


def _exit_code(argv) -> int:
    """main's return value, or the code argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ks", "0,x"], "--ks entry 'x' is neither a whole number nor 'all'"),
        (["--ks", "5,all,5"], "--ks lists a length twice (5, all, 5); give each once"),
        (["--seed", "-1"], "--seed must be a whole number >= 0, got -1"),
        (["--seed", "one"], "argument --seed: invalid int value: 'one'"),
        (["--backend", "gpu"], "unknown backend 'gpu'"),
        (["--markdown", "/no/such/folder/table.md"], "the folder of --markdown /no/such/folder/table.md does not exist"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(files, capsys, extra, message):
    assert _exit_code(_argv(files, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not files["out"].exists()


def test_bad_files_are_one_line_and_exit_2(files, capsys, tmp_path):
    cases = [
        (_argv(files)[:2] + [str(tmp_path / "none.tflite")] + _argv(files)[3:], "--model", "is not a file"),
        (_argv({**files, "reference": files["model"]}), "--model and --reference are the same file", ""),
        (_argv({**files, "users": tmp_path / "missing.txt"}), "--holdout-users", "does not exist"),
        (_argv(files, "--rows", str(files["model"])), "does not start with the header", ""),
        (_argv(files), "is not a TFLite flatbuffer", ""),  # every file is right but the models
    ]
    for argv, first, second in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m evaluation personalization: error: ") and err.count("\n") == 1
        assert first in err and second in err, err
    assert not Path(files["out"]).exists()

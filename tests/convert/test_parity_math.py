"""The parity figures, checked against values computed by hand or by brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from convert.config import Tolerances
from convert.parity import failed_checks, kendall_tau_b, pair_figures, ranking_figures, top_k_overlap


def brute_force_tau_b(x, y) -> float:
    """Kendall's tau-b straight from its definition, one pair at a time."""
    concordant = discordant = tied_x_only = tied_y_only = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tied_x_only += 1
        elif dy == 0:
            tied_y_only += 1
        elif (dx > 0) == (dy > 0):
            concordant += 1
        else:
            discordant += 1
    denominator = math.sqrt((concordant + discordant + tied_x_only) * (concordant + discordant + tied_y_only))
    return (concordant - discordant) / denominator if denominator else math.nan


class TestKendallTau:
    def test_one_swap_in_three(self):
        # Pairs (1,2) and (1,3) agree, (2,3) is swapped: (2 - 1) / 3.
        assert kendall_tau_b([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)

    def test_identical_and_reversed(self):
        x = np.arange(50.0)
        assert kendall_tau_b(x, x) == pytest.approx(1.0)
        assert kendall_tau_b(x, -x) == pytest.approx(-1.0)

    def test_ties_by_hand(self):
        # x = [1, 1, 2], y = [1, 2, 3]: pairs (0,1) tied in x, (0,2) and (1,2) concordant.
        # tau_b = 2 / sqrt((3 - 1) * (3 - 0)) = 2 / sqrt(6).
        assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))

    def test_constant_vector_is_nan(self):
        assert math.isnan(kendall_tau_b([2, 2, 2], [1, 2, 3]))

    @pytest.mark.parametrize("seed", range(40))
    def test_matches_brute_force_with_many_ties(self, seed):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 60))
        x = rng.integers(0, 6, n).astype(float)
        y = rng.integers(0, 6, n).astype(float)
        expected = brute_force_tau_b(x, y)
        actual = kendall_tau_b(x, y)
        if math.isnan(expected):
            assert math.isnan(actual)
        else:
            assert actual == pytest.approx(expected, abs=1e-12)

    def test_matches_brute_force_on_continuous_scores(self):
        rng = np.random.default_rng(7)
        x = rng.normal(size=300)
        y = x + rng.normal(scale=0.3, size=300)
        assert kendall_tau_b(x, y) == pytest.approx(brute_force_tau_b(x, y), abs=1e-12)

    def test_length_mismatch_is_refused(self):
        with pytest.raises(ValueError, match="differ in length"):
            kendall_tau_b([1, 2], [1, 2, 3])


class TestTopK:
    def test_overlap_counts_shared_items(self):
        reference = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], float)
        candidate = reference.copy()
        candidate[[0, 9]] = candidate[[9, 0]]  # the best item drops out of the top 3
        assert top_k_overlap(reference, candidate, k=3) == pytest.approx(2 / 3)
        assert top_k_overlap(reference, reference, k=3) == 1.0

    def test_ranking_figures_average_over_users(self):
        reference = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
        candidate = np.array([[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]])  # second user fully reversed
        figures = ranking_figures(reference, candidate, k=2)
        assert figures["ranking_users"] == 2 and figures["ranking_movies"] == 4
        assert figures["top10_overlap"] == pytest.approx(0.5)
        assert figures["top10_overlap_min"] == 0.0
        assert figures["kendall_tau"] == pytest.approx(0.0)
        assert figures["kendall_tau_min"] == pytest.approx(-1.0)


class TestPairFigures:
    def test_by_hand(self):
        ratings = np.array([4.0, 2.0, 5.0])
        reference = np.array([3.0, 2.0, 4.0])  # errors -1, 0, -1: RMSE sqrt(2/3)
        candidate = np.array([3.5, 2.0, 4.0])  # errors -0.5, 0, -1: RMSE sqrt(1.25/3)
        figures = pair_figures(reference, candidate, ratings)
        assert figures["pairs"] == 3
        assert figures["max_abs_diff"] == pytest.approx(0.5)
        assert figures["mean_abs_diff"] == pytest.approx(0.5 / 3)
        assert figures["rmse_saved_model"] == pytest.approx(math.sqrt(2 / 3))
        assert figures["rmse_tflite"] == pytest.approx(math.sqrt(1.25 / 3))
        assert figures["rmse_diff"] == pytest.approx(math.sqrt(2 / 3) - math.sqrt(1.25 / 3))


class TestFailedChecks:
    FIGURES = {"max_abs_diff": 3e-4, "rmse_diff": 2e-5, "top10_overlap": 0.97, "kendall_tau": 0.99}

    def test_every_failure_is_collected_with_figure_and_bound(self):
        tolerances = Tolerances(max_abs_diff=1e-4, rmse_diff=1e-3, top10_overlap=0.99, kendall_tau=0.999)
        failures = failed_checks(self.FIGURES, tolerances)
        assert [f.check for f in failures] == ["parity.max_abs_diff", "parity.top10_overlap", "parity.kendall_tau"]
        by_check = {f.check: f for f in failures}
        assert by_check["parity.max_abs_diff"].figure == 3e-4 and by_check["parity.max_abs_diff"].bound == 1e-4
        assert "0.0003" in str(by_check["parity.max_abs_diff"]) and "<= 0.0001" in str(by_check["parity.max_abs_diff"])
        assert ">= 0.9900" in str(by_check["parity.top10_overlap"])

    def test_unset_bounds_are_not_checked(self):
        assert failed_checks(self.FIGURES, Tolerances()) == []

    def test_a_nan_figure_fails(self):
        figures = dict(self.FIGURES, kendall_tau=float("nan"))
        assert [f.check for f in failed_checks(figures, Tolerances(kendall_tau=0.5))] == ["parity.kendall_tau"]


class TestSignatureChecks:
    TOP_K = {
        "users": 3,
        "top10_identical": 2 / 3,
        "top10_exact": 1 / 3,
        "top10_overlap": 0.9,
        "top10_overlap_min": 0.7,
        "top100_identical": 0.0,
        "top100_exact": 0.0,
        "top100_overlap": 0.99,
        "top100_overlap_min": 0.98,
        "max_abs_diff": 3e-6,
    }

    def test_checks_are_named_by_signature(self):
        failures = failed_checks(
            self.TOP_K, Tolerances(max_abs_diff=1e-6, top10_identical=1.0, kendall_tau=0.9), "top_k"
        )
        # Kendall's tau is not a top-k figure, so its bound does not apply.
        assert [f.check for f in failures] == ["parity.top_k.max_abs_diff", "parity.top_k.top10_identical"]
        assert str(failures[1]).startswith(
            "parity.top_k.top10_identical: top_k: top10_identical is 0.6667, must be >= 1"
        )

    def test_the_ranking_difference_is_held_to_the_max_abs_diff_bound(self):
        figures = {"max_abs_diff": 1e-6, "ranking_max_abs_diff": 5e-4}
        failures = failed_checks(figures, Tolerances(max_abs_diff=1e-4), "score_rows")
        assert [(f.check, f.bound) for f in failures] == [("parity.score_rows.ranking_max_abs_diff", 1e-4)]


class TestTopKFigures:
    """Three users, a catalog of 120 rows; the reference and candidate answers are written out by hand."""

    def test_by_hand(self):
        from convert.signature_parity import ParityContext, top_k_figures

        scores = np.linspace(5.0, 1.0, 120)[None, :].repeat(3, axis=0)  # row r scores scores[:, r - 1]
        scores[2, 10] = scores[2, 9] - 1e-7  # user 2: rows 10 and 11 nearly tied
        best = np.arange(1, 121)

        def reference(key, user, k):
            return {"item_rows": best[: int(k[0])], "rating": scores[user, : int(k[0])]}

        def candidate(key, user, k):
            rows = best[: int(k[0])].copy()
            if user == 1:
                rows[[3, 4]] = rows[[4, 3]]  # user 1: two neighbours 0.03 apart swapped
                if k[0] == 100:
                    rows[-1] = 120  # ... and, of the top 100, the last one replaced by row 120
            if user == 2:
                rows[9] = 11  # user 2: the near-tie the other way round (row 11 tenth, row 10 eleventh)
                if k[0] == 100:
                    rows[10] = 10
            # Scores returned 1e-3 above the reference's score of each returned row.
            return {"item_rows": rows, "rating": scores[user, rows - 1] + 1e-3}

        context = ParityContext(movies=("m",) * 120, user_rows={}, movie_rows={}, coverage=1.0, interpreter="by hand")
        users = [{"user": 0}, {"user": 1}, {"user": 2}]
        figures = top_k_figures("top_k", reference, candidate, users, scores, context)
        assert figures.users == 3
        # User 0 is the same row for row, user 2 up to its near-tie, user 1 not at all.
        assert figures.top10_identical == pytest.approx(2 / 3) and figures.top10_exact == pytest.approx(1 / 3)
        assert figures.top100_identical == pytest.approx(2 / 3) and figures.top100_exact == pytest.approx(1 / 3)
        # User 2's top 10 holds row 11 instead of row 10: 9 of the reference's 10.
        assert figures.top10_overlap == pytest.approx((1.0 + 1.0 + 0.9) / 3) and figures.top10_overlap_min == 0.9
        assert figures.top100_overlap == pytest.approx((1.0 + 0.99 + 1.0) / 3)
        assert figures.top100_overlap_min == pytest.approx(0.99)
        assert figures.max_abs_diff == pytest.approx(1e-3)

    def test_a_row_outside_the_catalog_is_an_infinite_difference(self):
        from convert.signature_parity import ParityContext, top_k_figures

        scores = np.ones((1, 120))
        context = ParityContext(movies=("m",) * 120, user_rows={}, movie_rows={}, coverage=1.0, interpreter="by hand")

        def answer(key, user, k):
            return {"item_rows": np.r_[0, np.arange(2, int(k[0]) + 1)], "rating": np.ones(int(k[0]))}

        figures = top_k_figures("top_k", answer, answer, [{"user": 0}], scores, context)
        assert figures.max_abs_diff == float("inf") and figures.top10_identical == 0.0 and figures.top10_exact == 0.0
